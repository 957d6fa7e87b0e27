"""Sync and asyncio clients for the coordinator.

Both take the address from `SQ_ADDR` (default 127.0.0.1:50051) and the key from
`SQ_API_KEY` unless given, and raise `StableQueueError` with the server's status
code and message.
"""

from __future__ import annotations

import json
import os
import socket
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


# Several coordinators (an active one and standbys): calls go to the one whose health
# is SERVING (gRPC's client-side health checking), wait for one while a standby takes
# over, and are retried when the active one went away mid-call.
FAILOVER_CONFIG = json.dumps({
    "loadBalancingConfig": [{"round_robin": {}}],
    "healthCheckConfig": {"serviceName": ""},
    "methodConfig": [{
        "name": [{}],
        "waitForReady": True,
        "retryPolicy": {
            "maxAttempts": 5, "initialBackoff": "0.2s", "maxBackoff": "2s",
            "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }],
})  # fmt: skip


def addresses(address: str) -> list[str]:
    """The coordinator addresses of `address` ("host:port", or several comma-separated)."""
    return [part.strip() for part in address.split(",") if part.strip()]


def channel_target(address: str) -> tuple[str, list[tuple[str, Any]]]:
    """The gRPC target and channel options for one coordinator address or several.

    Several are resolved to their IP addresses now (one target lists them all).

    Raises:
        ValueError: an address is not HOST:PORT, or does not resolve.
    """
    parts = addresses(address)
    if len(parts) <= 1:
        return (parts[0] if parts else address), []
    ips: dict[int, list[str]] = {socket.AF_INET: [], socket.AF_INET6: []}
    for part in parts:
        host, _, port = part.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"coordinator address {part!r} is not HOST:PORT")
        try:
            found = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
        except OSError as e:
            raise ValueError(f"coordinator address {part!r} does not resolve: {e}") from e
        family, *_, sockaddr = found[0]
        ip = str(sockaddr[0])
        ips[family].append(f"[{ip}]:{port}" if family == socket.AF_INET6 else f"{ip}:{port}")
    scheme, listed = ("ipv4", ips[socket.AF_INET]) if ips[socket.AF_INET] else (
        "ipv6", ips[socket.AF_INET6])  # fmt: skip
    options = [("grpc.service_config", FAILOVER_CONFIG), ("grpc.enable_retries", 1)]
    return f"{scheme}:{','.join(listed)}", options


def open_channel(
    module: Any,
    address: str,
    credentials: grpc.ChannelCredentials | None = None,
    options: list[tuple[str, Any]] | None = None,
) -> Any:
    """A channel from `grpc` or `grpc.aio` (the same call shapes in both) to one
    coordinator or several (comma-separated: the active one is used)."""
    target, extra = channel_target(address)
    args = [*_channel_args(options), *extra]
    if credentials:
        return module.secure_channel(target, credentials, args)
    return module.insecure_channel(target, args)


def _open(
    module: Any,
    address: str,
    credentials: grpc.ChannelCredentials | None,
    options: list[tuple[str, Any]] | None,
) -> Any:
    return open_channel(module, address, credentials, options)


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
        self._channel = _open(grpc, self.address, credentials, options)
        self.timeout = timeout
        self.queue, self.models, self.processes = _stubs(self._channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def call(self, method: str, request: Any, service: str = "queue") -> Any:
        """Calls a unary method by name on `service` ("queue", "models", "processes").

        Raises:
            StableQueueError: the call failed (status code and server message).
        """
        try:
            return getattr(getattr(self, service), method)(
                request, timeout=self.timeout, metadata=self._metadata
            )
        except grpc.RpcError as e:
            raise _error(e) from None

    def stream(self, method: str, request: Any, service: str = "queue") -> Iterator[Any]:
        """Calls a server-streaming method by name on `service`."""
        try:
            yield from getattr(getattr(self, service), method)(request, metadata=self._metadata)
        except grpc.RpcError as e:
            raise _error(e) from None

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

        def items() -> Iterator[models_pb2.InventoryItem]:
            yield models_pb2.InventoryItem(header=header)
            for file in files:
                yield models_pb2.InventoryItem(file=file)

        try:
            return self.models.SyncInventory(items(), timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise _error(e) from None

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
        self._channel = _open(grpc.aio, self.address, credentials, options)
        self.timeout = timeout
        self.queue, self.models, self.processes = _stubs(self._channel)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def call(self, method: str, request: Any) -> Any:
        try:
            return await getattr(self.queue, method)(
                request, timeout=self.timeout, metadata=self._metadata
            )
        except grpc.RpcError as e:
            raise _error(e) from None

    async def stream(self, method: str, request: Any) -> AsyncIterator[Any]:
        try:
            async for item in getattr(self.queue, method)(request, metadata=self._metadata):
                yield item
        except grpc.RpcError as e:
            raise _error(e) from None

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
