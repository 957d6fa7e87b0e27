"""The one place that authenticates callers and turns domain errors into gRPC statuses."""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from stablequeue_coordinator.auth import principal as auth
from stablequeue_coordinator.auth.keys import KeyService
from stablequeue_coordinator.common import repeated
from stablequeue_coordinator.errors import (
    InvalidArgument,
    NotActive,
    StableQueueError,
    Unauthenticated,
)

log = logging.getLogger(__name__)
OWN_SERVICES = "/stablequeue."
STRING = FieldDescriptor.TYPE_STRING
MESSAGE = FieldDescriptor.TYPE_MESSAGE
QUIET_S = 0.0002  # see ApiInterceptor.quiet


@functools.lru_cache(maxsize=4096)
def is_loopback(peer: str) -> bool:
    """True for gRPC peer strings of this machine ("ipv4:127.0.0.1:5", "unix:", and IPv6
    as gRPC writes it: "ipv6:%5B::1%5D:5", URL-encoded). Kept per peer: a connection's
    calls all ask."""
    kind, _, rest = peer.partition(":")
    rest = urllib.parse.unquote(rest)
    if kind == "unix":
        return True
    if kind not in ("ipv4", "ipv6"):
        return False
    return is_loopback_host(rest.rsplit(":", 1)[0].strip("[]"))


def is_loopback_host(host: str | None) -> bool:
    """True for an IP address of this machine ("127.0.0.1", "::1", "::ffff:127.0.0.1")."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def bearer_token(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            scheme, _, token = str(value).partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("authorization metadata must be 'Bearer <key>'")
            return token.strip()
    return None


def nul_field(message: Message, prefix: str = "") -> str | None:
    """The first string field of `message` (nested messages, lists and maps too) that
    holds a NUL character, by its path; None when there is none. No text column takes
    one (PostgreSQL refuses it outright), and no name needs one. Every request of
    every call is walked: only string and message fields are looked into, and a path
    is spelled out only for the field found."""
    for field, value in message.ListFields():
        kind = field.type
        if kind != STRING and kind != MESSAGE:
            continue
        path = prefix + field.name
        if kind == MESSAGE and field.message_type.GetOptions().map_entry:
            for key, item in value.items():
                where = f"{path}[{key!r}]"
                if isinstance(key, str) and "\0" in key:
                    return where
                found = _nul_in(item, where)
                if found:
                    return found
        elif repeated(field):
            for i, item in enumerate(value):
                if isinstance(item, str) and "\0" not in item:
                    continue  # the common case, without spelling its path
                found = _nul_in(item, f"{path}[{i}]")
                if found:
                    return found
        else:
            found = _nul_in(value, path)
            if found:
                return found
    return None


def _nul_in(item: Any, where: str) -> str | None:
    if isinstance(item, str):
        return where if "\0" in item else None
    if isinstance(item, Message):
        return nul_field(item, where + ".")
    return None


def check_request(request: Any) -> None:
    """Rules every request of every RPC keeps, before any service reads it.

    Raises:
        InvalidArgument: naming the field.
    """
    if isinstance(request, Message):
        field = nul_field(request)
        if field is not None:
            raise InvalidArgument(field, "must not contain NUL characters")


async def checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A client stream's messages, each checked as `check_request` does."""
    async for request in requests:
        check_request(request)
        yield request


class ApiInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates and authorises every call to our services and maps errors.

    Args:
        keys: checks bearer keys.
        require_auth: when False, loopback callers without a key act as admin.
    """

    def __init__(self, keys: KeyService, require_auth: bool) -> None:
        self._keys = keys
        self._require_auth = require_auth
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}
        # Why calls are refused (a standby, or still starting); None once active.
        self.standby: str | None = None
        # Calls to our unary RPCs under way (from their handler's start to their end),
        # and when the last one ended: see `quiet`.
        self._calls = 0
        self._last_end = 0.0

    def quiet(self) -> bool:
        """Whether the call asking is the only one under way and none ended within the
        last QUIET_S: a caller making one call at a time. Under a stream of calls (16
        in flight) the next one starts within microseconds of the last one's end, its
        request read meanwhile; a lone caller's next call takes at least its own round
        trip (~0.5 ms on loopback)."""
        return self._calls <= 1 and time.monotonic() - self._last_end > QUIET_S

    def _ended(self, _context: Any) -> None:
        self._calls -= 1
        self._last_end = time.monotonic()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = details.method
        if method in self._wrapped:
            return self._wrapped[method]
        handler = await continuation(details)
        if handler is None or not method.startswith(OWN_SERVICES):
            return handler  # health, reflection: open to all
        self._wrapped[method] = self._wrap(handler, method)
        return self._wrapped[method]

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if handler.unary_unary:
            wrapped, factory = (
                self._unary(handler.unary_unary, method),
                grpc.unary_unary_rpc_method_handler,
            )
        elif handler.unary_stream:
            wrapped, factory = (
                self._streaming(handler.unary_stream, method),
                grpc.unary_stream_rpc_method_handler,
            )
        elif handler.stream_unary:
            wrapped, factory = (
                self._unary(handler.stream_unary, method),
                grpc.stream_unary_rpc_method_handler,
            )
        else:
            wrapped, factory = (
                self._streaming(handler.stream_stream, method),
                grpc.stream_stream_rpc_method_handler,
            )
        return factory(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    async def caller(self, token: str | None, loopback: bool, method: str) -> auth.Principal:
        """Who calls `method` with this bearer key (None: none sent) from this machine
        (`loopback`) or another; the HTTP gateway asks the same before it forwards.

        Raises:
            NotActive: this coordinator is a standby or still starting.
            Unauthenticated: no key where one is needed, or an unknown or revoked one.
            PermissionDenied: the key's scope may not call `method`.
        """
        if self.standby is not None:
            raise NotActive(self.standby)
        if token is not None:
            who = await self._keys.authenticate(token)
        elif not self._require_auth and loopback:
            who = auth.LOCAL
        else:
            raise Unauthenticated("an API key is required: send 'authorization: Bearer <key>'")
        auth.authorize(who, method)
        return who

    async def _authenticate(self, context: grpc.aio.ServicerContext, method: str) -> None:
        who = await self.caller(bearer_token(context), is_loopback(context.peer()), method)
        auth.set_current(who)

    def _unary(self, inner: Callable[..., Awaitable[Any]], method: str) -> Callable[..., Any]:
        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            self._calls += 1
            context.add_done_callback(self._ended)
            try:
                await self._authenticate(context, method)
                check_request(request)
                if not isinstance(request, Message):  # a client stream
                    request = checked(request)
                return await inner(request, context)
            except Exception as e:
                await _abort(context, e, method)

        return behavior

    def _streaming(
        self, inner: Callable[..., AsyncIterator[Any]], method: str
    ) -> Callable[..., Any]:
        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                await self._authenticate(context, method)
                check_request(request)
                if not isinstance(request, Message):
                    request = checked(request)
                async for response in inner(request, context):
                    yield response
            except Exception as e:
                await _abort(context, e, method)

        return behavior


async def _abort(context: grpc.aio.ServicerContext, error: Exception, method: str) -> None:
    if isinstance(error, grpc.aio.AbortError):
        raise error
    if isinstance(error, StableQueueError):
        await context.abort(error.code, error.message)
    log.exception("unexpected error in %s", method, exc_info=error)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error (see the coordinator log)")
