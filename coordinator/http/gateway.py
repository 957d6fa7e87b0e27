"""The HTTP/JSON API and the web console, served by the coordinator on `--http-listen`.

Every API route is one of our gRPC methods (see `routes`): the gateway turns the HTTP
request into the request message, calls the method through the coordinator's own gRPC
server on a private socket — the same interceptor, scopes, validation and services as
any gRPC client — and turns the answer (or the status) back into JSON. Nothing here
knows what a job is.

Starlette (the ASGI toolkit FastAPI is built on) and uvicorn serve it in the
coordinator's own event loop. The API's contract is the protobuf one, so the OpenAPI
document is built from the descriptors (`openapi`), not from Python models.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import uvicorn
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as AsgiMessage

from stablequeue_coordinator.api.interceptor import ApiInterceptor, is_loopback_host
from stablequeue_coordinator.errors import InvalidArgument, StableQueueError
from stablequeue_coordinator.http import routes as api
from stablequeue_coordinator.http.convert import from_query, parse, to_json
from stablequeue_coordinator.http.openapi import openapi_document

log = logging.getLogger(__name__)
CONSOLE = Path(__file__).with_name("console")
OPENAPI_PATH = "/api/v1/openapi.json"
FIRST_EVENT_WAIT_S = 0.3  # a stream's early error becomes the HTTP status
KEEPALIVE_S = 15.0  # a comment line on quiet event streams (proxies close idle ones)

# google.rpc's code ↔ HTTP mapping (as grpc-gateway and Google's APIs use it).
HTTP_STATUS = {
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
        b"script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    ),
]


def error_response(code: grpc.StatusCode, message: str, field: str = "") -> JSONResponse:
    """The one error shape: {"error": {"code", "status", "message", "field"?}}."""
    body: dict[str, Any] = {
        "code": code.name,
        "status": HTTP_STATUS.get(code, 500),
        "message": message,
    }
    if field:
        body["field"] = field
    headers = {"www-authenticate": "Bearer"} if code is grpc.StatusCode.UNAUTHENTICATED else None
    return JSONResponse({"error": body}, status_code=body["status"], headers=headers)


def from_error(error: Exception) -> JSONResponse:
    if isinstance(error, InvalidArgument):
        return error_response(error.code, error.message, error.field)
    if isinstance(error, StableQueueError):
        return error_response(error.code, error.message)
    if isinstance(error, grpc.aio.AioRpcError):
        details = error.details() or ""
        field = ""
        if error.code() is grpc.StatusCode.INVALID_ARGUMENT:
            head, sep, _ = details.partition(": ")
            field = head if sep and " " not in head else ""
        return error_response(error.code(), details, field)
    log.exception("unexpected error in the HTTP gateway", exc_info=error)
    return error_response(grpc.StatusCode.INTERNAL, "internal error (see the coordinator log)")


class Gateway:
    """Serves the API and the console; calls the coordinator over `target`.

    Args:
        target: the coordinator's private gRPC address ("unix:/…").
        interceptor: the gRPC server's own, asked who each caller is before a call.
        cors_origins: origins other pages may call the API from; none by default.
        max_body_bytes: the largest request body taken (as gRPC's message limit).
    """

    def __init__(
        self,
        target: str,
        interceptor: ApiInterceptor,
        cors_origins: list[str],
        max_body_bytes: int,
    ) -> None:
        self._interceptor = interceptor
        self._max_body = max_body_bytes
        self._channel = grpc.aio.insecure_channel(
            target,
            options=[
                ("grpc.max_receive_message_length", max_body_bytes),
                ("grpc.max_send_message_length", max_body_bytes),
            ],
        )
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0
        self.document = openapi_document()
        middleware = [Middleware(_SecurityHeaders)]
        if cors_origins:
            middleware.append(
                Middleware(
                    CORSMiddleware,
                    allow_origins=cors_origins,
                    allow_methods=["GET", "POST", "PATCH", "DELETE"],
                    allow_headers=["authorization", "content-type"],
                )
            )
        self.app = Starlette(
            routes=[
                # Fixed paths first: /models/search is not the model "search".
                *(
                    Route(r.full_path, self._endpoint(r), methods=[r.verb])
                    for r in sorted(api.ROUTES, key=lambda r: "{" in r.path)
                ),
                Route(OPENAPI_PATH, self._openapi, methods=["GET"]),
                Route("/api/{rest:path}", self._no_route),
                Mount("/", StaticFiles(directory=CONSOLE, html=True), name="console"),
            ],
            middleware=middleware,
        )

    # ---- serving ------------------------------------------------------------

    async def start(self, listen: str) -> None:
        """Binds `listen` (HOST:PORT; port 0 picks one) and serves in this event loop.

        Raises:
            RuntimeError: the address could not be bound.
        """
        host, _, port = listen.rpartition(":")
        host = host.strip("[]") or "0.0.0.0"
        try:
            sock = socket.create_server(
                (host, int(port)),
                family=socket.AF_INET6 if ":" in host else socket.AF_INET,
            )
        except OSError as e:
            raise RuntimeError(f"could not listen on {listen} for HTTP ({e.strerror})") from e
        # Small answers go out at once (accepted connections inherit it on Linux): with
        # Nagle on, a response's body waited for the client's delayed ACK of its headers.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app, log_config=None, access_log=False, lifespan="off", ws="none",
            timeout_graceful_shutdown=1,
        )  # fmt: skip
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="sq-http")
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError(f"the HTTP server on {listen} stopped at start")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5)
        await self._channel.close()

    # ---- requests -----------------------------------------------------------

    async def _openapi(self, request: Request) -> Response:
        return JSONResponse(self.document)

    async def _no_route(self, request: Request) -> Response:
        return error_response(
            grpc.StatusCode.NOT_FOUND,
            f"no API route {request.method} {request.url.path} (see {OPENAPI_PATH})",
        )

    def _endpoint(self, route: api.Route) -> Callable[[Request], Awaitable[Response]]:
        method = route.method
        request_cls = json_format.message_factory.GetMessageClass(method.input_type)  # type: ignore[attr-defined]
        response_cls = json_format.message_factory.GetMessageClass(method.output_type)  # type: ignore[attr-defined]
        name = route.grpc_name
        if method.server_streaming:
            stream = self._channel.unary_stream(
                name,
                request_serializer=request_cls.SerializeToString,
                response_deserializer=response_cls.FromString,
            )
        else:
            unary = self._channel.unary_unary(
                name,
                request_serializer=request_cls.SerializeToString,
                response_deserializer=response_cls.FromString,
            )

        async def endpoint(request: Request) -> Response:
            try:
                metadata = await self._caller(request, name)
                message = request_cls()
                parse(await self._fields(request, route), message)
                if route.answer is api.Answer.EVENTS:
                    return await _events(stream(message, metadata=metadata))
                if route.answer is api.Answer.RESULT_BYTES:
                    return await _result_bytes(stream(message, metadata=metadata))
                answer = await unary(message, metadata=metadata)
                if route.answer is api.Answer.PREVIEW_BYTES:
                    return Response(
                        answer.data,
                        media_type=answer.mime or "application/octet-stream",
                        headers={"cache-control": "private, max-age=300"},
                    )
                return JSONResponse(to_json(answer))
            except Exception as e:
                return from_error(e)

        endpoint.__name__ = method.name
        return endpoint

    async def _caller(self, request: Request, method: str) -> tuple[tuple[str, str], ...]:
        """The metadata to forward, once the caller may call `method` at all (so that a
        refused stream is a 401/403, not an event stream that ends at once)."""
        header = request.headers.get("authorization")
        token = None
        if header is not None:
            scheme, _, token = header.partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                raise InvalidArgument("authorization", "must be 'Bearer <key>'")
        loopback = is_loopback_host(request.client.host if request.client else None)
        await self._interceptor.caller(token, loopback, method)
        if token is None:
            return ()
        return (("authorization", f"Bearer {token}"),)

    async def _fields(self, request: Request, route: api.Route) -> dict[str, Any]:
        if route.has_body:
            fields = await self._body(request)
        else:
            fields = from_query(list(request.query_params.multi_items()), route.method.input_type)
        for name in route.path_fields:
            fields[name] = request.path_params[name]
        return fields

    async def _body(self, request: Request) -> dict[str, Any]:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body:
            raise InvalidArgument("body", f"is larger than {self._max_body >> 20} MiB")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self._max_body:
                raise InvalidArgument("body", f"is larger than {self._max_body >> 20} MiB")
            chunks.append(chunk)
        raw = b"".join(chunks)
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InvalidArgument("body", f"is not JSON ({e})") from None
        if not isinstance(data, dict):
            raise InvalidArgument("body", "must be a JSON object")
        return data


async def _events(call: Any) -> Response:
    """A server stream as server-sent events: `data: <message as JSON>` per message,
    an `error` event if the stream fails later, a comment line every 15 s when quiet."""
    reader = asyncio.ensure_future(call.read())
    done, _ = await asyncio.wait({reader}, timeout=FIRST_EVENT_WAIT_S)
    if done and reader.exception() is not None:
        raise reader.exception()  # type: ignore[misc]

    async def lines() -> AsyncIterator[bytes]:
        nonlocal reader
        try:
            while True:
                done, _ = await asyncio.wait({reader}, timeout=KEEPALIVE_S)
                if not done:
                    yield b": keepalive\n\n"
                    continue
                try:
                    message = reader.result()
                except grpc.aio.AioRpcError as e:
                    body = json.loads(from_error(e).body)
                    yield b"event: error\ndata: " + json.dumps(body).encode() + b"\n\n"
                    return
                if message is grpc.aio.EOF:
                    return
                yield b"data: " + json.dumps(to_json(message)).encode() + b"\n\n"
                reader = asyncio.ensure_future(call.read())
        finally:
            reader.cancel()
            call.cancel()

    return StreamingResponse(
        lines(),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


async def _result_bytes(call: Any) -> Response:
    """GetResult's chunks as one image (its metadata comes in the first chunk)."""
    data: list[bytes] = []
    mime, filename = "application/octet-stream", "image"
    async for chunk in call:
        if chunk.HasField("result"):
            mime = chunk.mime or chunk.result.mime or mime
            filename = chunk.result.filename or filename
        data.append(chunk.data)
    safe = "".join(c for c in filename if c.isalnum() or c in "._-") or "image"
    return Response(
        b"".join(data),
        media_type=mime,
        headers={
            "cache-control": "private, max-age=3600",
            "content-disposition": f'inline; filename="{safe}"',
        },
    )


class _SecurityHeaders:
    """Headers every answer carries: no sniffing, no framing, the console's own
    scripts only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: AsgiMessage) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, sending)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside the coordinator's loop: the coordinator handles the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
