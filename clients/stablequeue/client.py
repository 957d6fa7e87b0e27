"""Sync and asyncio clients for the coordinator.

Both take the address from `SQ_ADDR` (default 127.0.0.1:50051) and the key from
`SQ_API_KEY` unless given, and raise `StableQueueError` with the server's status
code and message.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, BinaryIO

import grpc

from stablequeue.v1 import (
    models_pb2,
    models_pb2_grpc,
    processes_pb2_grpc,
    queue_pb2,
    queue_pb2_grpc,
)

DEFAULT_ADDR = "127.0.0.1:50051"
MAX_MESSAGE = 64 << 20
PLACEMENTS = {
    "front": queue_pb2.MOVE_PLACEMENT_FRONT,
    "back": queue_pb2.MOVE_PLACEMENT_BACK,
    "before": queue_pb2.MOVE_PLACEMENT_BEFORE,
    "after": queue_pb2.MOVE_PLACEMENT_AFTER,
}
SEED_MODES = {
    "fixed": queue_pb2.SEED_MODE_FIXED,
    "increment": queue_pb2.SEED_MODE_INCREMENT,
    "random": queue_pb2.SEED_MODE_RANDOM,
}
SCOPES = {
    "admin": queue_pb2.KEY_SCOPE_ADMIN,
    "submit": queue_pb2.KEY_SCOPE_SUBMIT,
    "node": queue_pb2.KEY_SCOPE_NODE,
}


class StableQueueError(Exception):
    """A call failed. `code` is the gRPC status code, `message` the server's explanation."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


def _error(e: grpc.RpcError) -> StableQueueError:
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    details = e.details() if hasattr(e, "details") else str(e)
    return StableQueueError(code, details or code.name)


def _settings(address: str | None, api_key: str | None) -> tuple[str, tuple[tuple[str, str], ...]]:
    address = address or os.environ.get("SQ_ADDR") or DEFAULT_ADDR
    api_key = api_key if api_key is not None else os.environ.get("SQ_API_KEY", "")
    metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
    return address, metadata


def _channel_args(options: list[tuple[str, Any]] | None) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE),
        *(options or []),
    ]


# Several coordinators (an active one and standbys): each address gets a channel of its
# own; calls go to the active one, found by its health (SERVING), and move on to the
# next when it is refused (a standby) or gone (UNAVAILABLE). A frozen active (SIGSTOP,
# a cut network) stops answering pings: its connection is dropped within seconds.
KEEPALIVE = [
    ("grpc.keepalive_time_ms", 2000),
    ("grpc.keepalive_timeout_ms", 2000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.min_time_between_pings_ms", 1000),
    ("grpc.http2.min_ping_interval_without_data_ms", 1000),
    ("grpc.http2.ping_timeout_ms", 2000),
]
HEALTH_CHECK_S = 1.0
LOOK_EVERY_S = 0.2


def addresses(address: str) -> list[str]:
    """The coordinator addresses of `address` ("host:port", or several comma-separated)."""
    return [part.strip() for part in address.split(",") if part.strip()] or [address]


def open_channel(
    module: Any,
    address: str,
    credentials: grpc.ChannelCredentials | None = None,
    options: list[tuple[str, Any]] | None = None,
    *,
    failover: bool = False,
) -> Any:
    """A channel from `grpc` or `grpc.aio` (the same call shapes in both) to one
    coordinator address (`failover`: one of several, with keepalive pings)."""
    args = [*_channel_args(options), *(KEEPALIVE if failover else [])]
    if credentials:
        return module.secure_channel(address, credentials, args)
    return module.insecure_channel(address, args)


# grpc.health.v1.Health/Check with service "" (an empty request); the answer is
# SERVING when it is exactly field 1 = 1. Spelled out here: the SDK depends on grpcio
# and protobuf only (it runs inside the apps' own Python).
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SERVING_REPLY = b"\x08\x01"


def _health_check(channel: Any) -> Any:
    return channel.unary_unary(HEALTH_CHECK, request_serializer=bytes, response_deserializer=bytes)


def serving(channel: grpc.Channel) -> bool:
    try:
        reply = _health_check(channel)(b"", timeout=HEALTH_CHECK_S)
    except grpc.RpcError:
        return False
    return bool(reply == SERVING_REPLY)


async def serving_async(channel: grpc.aio.Channel) -> bool:
    try:
        reply = await _health_check(channel)(b"", timeout=HEALTH_CHECK_S)
    except grpc.RpcError:
        return False
    return bool(reply == SERVING_REPLY)


def _may_move_on(e: grpc.RpcError, count: int, deadline: float) -> bool:
    """A call refused by a standby or cut from a coordinator that went away is tried on
    the active one, while time is left."""
    code = e.code() if hasattr(e, "code") else None
    return count > 1 and code == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline


def _open(
    module: Any,
    address: str,
    credentials: grpc.ChannelCredentials | None,
    options: list[tuple[str, Any]] | None,
) -> list[Any]:
    listed = addresses(address)
    return [
        open_channel(module, one, credentials, options, failover=len(listed) > 1) for one in listed
    ]


def _key(idempotency_key: str, address: str) -> str:
    """With several coordinators a submit may be retried on the next one after the
    first took it: a key of its own makes the retry return the same job(s)."""
    if idempotency_key or len(addresses(address)) <= 1:
        return idempotency_key
    return "sq-auto-" + uuid.uuid4().hex


def _stubs(channel: Any) -> tuple[Any, Any, Any]:
    return (
        queue_pb2_grpc.QueueServiceStub(channel),
        models_pb2_grpc.ModelsServiceStub(channel),
        processes_pb2_grpc.ProcessesServiceStub(channel),
    )


def list_request(
    statuses: list[int] | None = None, page_size: int = 0, page_token: str = "", **filters: Any
) -> queue_pb2.ListJobsRequest:
    request = queue_pb2.ListJobsRequest(statuses=statuses or [], **filters)
    request.page.page_size = page_size
    request.page.page_token = page_token
    return request


class Client:
    """Blocking client.

    Args:
        address: HOST:PORT of the coordinator.
        api_key: secret from `sq keys create` (loopback callers may omit it).
        credentials: TLS channel credentials; plaintext when None.
        timeout: seconds for unary calls.
    """

    def __init__(
        self,
        address: str | None = None,
        api_key: str | None = None,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        timeout: float = 30.0,
        options: list[tuple[str, Any]] | None = None,
    ) -> None:
        self.address, self._metadata = _settings(address, api_key)
        self._channels = _open(grpc, self.address, credentials, options)
        self._current = 0
        self.timeout = timeout
        self.queue, self.models, self.processes = _stubs(self._channels[0])

    @property
    def _channel(self) -> grpc.Channel:
        return self._channels[self._current]

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def _use_active(self, deadline: float) -> None:
        """Switches to the coordinator whose health is SERVING (looking until `deadline`;
        none found: the next one)."""
        count = len(self._channels)
        while time.monotonic() < deadline:
            for step in range(1, count + 1):
                i = (self._current + step) % count
                if serving(self._channels[i]):
                    self._current = i
                    self.queue, self.models, self.processes = _stubs(self._channels[i])
                    return
            time.sleep(LOOK_EVERY_S)

    def call(self, method: str, request: Any, service: str = "queue") -> Any:
        """Calls a unary method by name on `service` ("queue", "models", "processes");
        with several coordinators, on the active one.

        Raises:
            StableQueueError: the call failed (status code and server message).
        """
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return getattr(getattr(self, service), method)(
                    request, timeout=max(0.1, deadline - time.monotonic()),
                    metadata=self._metadata,
                )  # fmt: skip
            except grpc.RpcError as e:
                if not _may_move_on(e, len(self._channels), deadline):
                    raise _error(e) from None
                self._use_active(deadline)

    def stream(self, method: str, request: Any, service: str = "queue") -> Iterator[Any]:
        """Calls a server-streaming method by name on `service`. With several
        coordinators a stream that cannot start, or is cut, starts again on the active
        one (a watch then begins with the current state)."""
        while True:
            started = time.monotonic()
            try:
                yield from getattr(getattr(self, service), method)(request, metadata=self._metadata)
                return
            except grpc.RpcError as e:
                if not _may_move_on(e, len(self._channels), started + self.timeout):
                    raise _error(e) from None
                self._use_active(time.monotonic() + self.timeout)

    def submit(self, spec: queue_pb2.JobSpec, idempotency_key: str = "") -> queue_pb2.Job:
        key = _key(idempotency_key, self.address)
        request = queue_pb2.SubmitJobRequest(spec=spec, idempotency_key=key)
        return self.call("SubmitJob", request).job

    def submit_many(
        self,
        spec: queue_pb2.JobSpec,
        count: int,
        seed_mode: str = "increment",
        idempotency_key: str = "",
    ) -> list[queue_pb2.Job]:
        request = queue_pb2.SubmitJobsRequest(
            spec=spec,
            count=count,
            seed_mode=SEED_MODES[seed_mode],
            idempotency_key=_key(idempotency_key, self.address),
        )
        return list(self.call("SubmitJobs", request).jobs)

    def get_job(self, job_id: str) -> queue_pb2.Job:
        return self.call("GetJob", queue_pb2.GetJobRequest(id=job_id)).job

    def list_jobs(self, **kwargs: Any) -> queue_pb2.ListJobsResponse:
        """One page; kwargs as `list_request` (statuses, app, server, order, page_size, ...)."""
        return self.call("ListJobs", list_request(**kwargs))

    def iter_jobs(self, **kwargs: Any) -> Iterator[queue_pb2.Job]:
        """Every matching job, following page tokens."""
        token = ""
        while True:
            page = self.list_jobs(page_token=token, **kwargs)
            yield from page.jobs
            token = page.next_page_token
            if not token:
                return

    def cancel(self, job_id: str) -> queue_pb2.Job:
        return self.call("CancelJob", queue_pb2.CancelJobRequest(id=job_id)).job

    def retry(self, job_id: str) -> queue_pb2.Job:
        return self.call("RetryJob", queue_pb2.RetryJobRequest(id=job_id)).job

    def delete(self, job_id: str) -> None:
        self.call("DeleteJob", queue_pb2.DeleteJobRequest(id=job_id))

    def move(self, job_id: str, placement: str, anchor_id: str = "") -> queue_pb2.Job:
        request = queue_pb2.MoveJobRequest(
            id=job_id, placement=PLACEMENTS[placement], anchor_id=anchor_id
        )
        return self.call("MoveJob", request).job

    def set_priority(self, job_id: str, priority: int) -> queue_pb2.Job:
        return self.call(
            "SetPriority", queue_pb2.SetPriorityRequest(id=job_id, priority=priority)
        ).job

    def pause(self, server: str = "") -> queue_pb2.QueueStats:
        return self.call("PauseQueue", queue_pb2.PauseQueueRequest(server=server)).stats

    def resume(self, server: str = "") -> queue_pb2.QueueStats:
        return self.call("ResumeQueue", queue_pb2.ResumeQueueRequest(server=server)).stats

    def stats(self) -> queue_pb2.QueueStats:
        return self.call("GetQueueStats", queue_pb2.GetQueueStatsRequest()).stats

    def watch_job(self, job_id: str) -> Iterator[queue_pb2.JobEvent]:
        """The job's state now, then each change; ends when the job is final."""
        return self.stream("WatchJob", queue_pb2.WatchJobRequest(id=job_id))

    def watch_queue(
        self, snapshot: bool = True, omit_previews: bool = False
    ) -> Iterator[queue_pb2.QueueEvent]:
        request = queue_pb2.WatchQueueRequest(snapshot=snapshot, omit_previews=omit_previews)
        return self.stream("WatchQueue", request)

    def list_results(
        self, page_size: int = 0, page_token: str = "", **filters: Any
    ) -> queue_pb2.ListResultsResponse:
        """One page of stored images; filters: job_id, model, text, since, until (Timestamps)."""
        request = queue_pb2.ListResultsRequest(**filters)
        request.page.page_size = page_size
        request.page.page_token = page_token
        return self.call("ListResults", request)

    def download_result(self, result_id: str, sink: BinaryIO) -> queue_pb2.JobResult:
        """Writes one stored image's bytes to `sink` as they stream in; returns its record."""
        result = queue_pb2.JobResult()
        for chunk in self.stream("GetResult", queue_pb2.GetResultRequest(id=result_id)):
            if chunk.HasField("result"):
                result = chunk.result
            sink.write(chunk.data)
        return result

    def delete_result(self, result_id: str) -> None:
        self.call("DeleteResult", queue_pb2.DeleteResultRequest(id=result_id))

    def sync_inventory(
        self,
        host: str,
        app: int,
        files: Iterable[models_pb2.InventoryFile],
        incremental: bool = False,
    ) -> models_pb2.SyncInventoryResponse:
        """Sends one host's model files (all of them, or changes when `incremental`)."""
        header = models_pb2.InventoryHeader(host=host, app=app, incremental=incremental)
        listed = list(files)  # (sent again to the active one if a standby refuses it)

        def items() -> Iterator[models_pb2.InventoryItem]:
            yield models_pb2.InventoryItem(header=header)
            for file in listed:
                yield models_pb2.InventoryItem(file=file)

        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return self.models.SyncInventory(
                    items(), timeout=max(0.1, deadline - time.monotonic()),
                    metadata=self._metadata,
                )  # fmt: skip
            except grpc.RpcError as e:
                if not _may_move_on(e, len(self._channels), deadline):
                    raise _error(e) from None
                self._use_active(deadline)

    def create_key(self, name: str, scope: str, node: str = "") -> queue_pb2.CreateApiKeyResponse:
        """A new key; a node key can be tied to its `node` now (else to the name it
        first uses)."""
        request = queue_pb2.CreateApiKeyRequest(name=name, scope=SCOPES[scope], node=node)
        return self.call("CreateApiKey", request)

    def list_keys(self, include_revoked: bool = False) -> list[queue_pb2.ApiKey]:
        request = queue_pb2.ListApiKeysRequest(include_revoked=include_revoked)
        return list(self.call("ListApiKeys", request).keys)

    def revoke_key(self, key_id: str) -> queue_pb2.ApiKey:
        return self.call("RevokeApiKey", queue_pb2.RevokeApiKeyRequest(id=key_id)).key


class AsyncClient:
    """asyncio client with the same settings as `Client`; unary methods by name via `call`."""

    def __init__(
        self,
        address: str | None = None,
        api_key: str | None = None,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        timeout: float = 30.0,
        options: list[tuple[str, Any]] | None = None,
    ) -> None:
        self.address, self._metadata = _settings(address, api_key)
        self._channels = _open(grpc.aio, self.address, credentials, options)
        self._current = 0
        self.timeout = timeout
        self.queue, self.models, self.processes = _stubs(self._channels[0])

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    async def _use_active(self, deadline: float) -> None:
        count = len(self._channels)
        while time.monotonic() < deadline:
            for step in range(1, count + 1):
                i = (self._current + step) % count
                if await serving_async(self._channels[i]):
                    self._current = i
                    self.queue, self.models, self.processes = _stubs(self._channels[i])
                    return
            await asyncio.sleep(LOOK_EVERY_S)

    async def call(self, method: str, request: Any) -> Any:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return await getattr(self.queue, method)(
                    request, timeout=max(0.1, deadline - time.monotonic()),
                    metadata=self._metadata,
                )  # fmt: skip
            except grpc.RpcError as e:
                if not _may_move_on(e, len(self._channels), deadline):
                    raise _error(e) from None
                await self._use_active(deadline)

    async def stream(self, method: str, request: Any) -> AsyncIterator[Any]:
        while True:
            started = time.monotonic()
            try:
                async for item in getattr(self.queue, method)(request, metadata=self._metadata):
                    yield item
                return
            except grpc.RpcError as e:
                if not _may_move_on(e, len(self._channels), started + self.timeout):
                    raise _error(e) from None
                await self._use_active(time.monotonic() + self.timeout)

    async def submit(self, spec: queue_pb2.JobSpec, idempotency_key: str = "") -> queue_pb2.Job:
        key = _key(idempotency_key, self.address)
        request = queue_pb2.SubmitJobRequest(spec=spec, idempotency_key=key)
        return (await self.call("SubmitJob", request)).job

    async def get_job(self, job_id: str) -> queue_pb2.Job:
        return (await self.call("GetJob", queue_pb2.GetJobRequest(id=job_id))).job

    async def list_jobs(self, **kwargs: Any) -> queue_pb2.ListJobsResponse:
        return await self.call("ListJobs", list_request(**kwargs))

    async def cancel(self, job_id: str) -> queue_pb2.Job:
        return (await self.call("CancelJob", queue_pb2.CancelJobRequest(id=job_id))).job

    def watch_job(self, job_id: str) -> AsyncIterator[queue_pb2.JobEvent]:
        return self.stream("WatchJob", queue_pb2.WatchJobRequest(id=job_id))

    def watch_queue(
        self, snapshot: bool = True, omit_previews: bool = False
    ) -> AsyncIterator[queue_pb2.QueueEvent]:
        request = queue_pb2.WatchQueueRequest(snapshot=snapshot, omit_previews=omit_previews)
        return self.stream("WatchQueue", request)
