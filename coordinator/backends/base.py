"""What every backend adapter offers, and the one place HTTP failures become typed errors.

Transient failures (connection refused, timeouts, 5xx) raise `BackendUnavailable`:
the dispatcher marks the server down and retries the job elsewhere. A request the
backend rejects (4xx) raises `BackendRejected` with the backend's own message:
the job fails at once.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from stablequeue.v1 import queue_pb2
from stablequeue_coordinator.backends.http import Client, Reply
from stablequeue_coordinator.errors import BackendRejected, BackendUnavailable, NotActive
from stablequeue_coordinator.queue.states import JobStage

ProgressCallback = Callable[[queue_pb2.JobProgress], Awaitable[None] | None]
# Reports what a running job is doing (stage, human-readable reason).
StageCallback = Callable[[JobStage, str], Awaitable[None]]


@dataclass(frozen=True)
class ServerConfig:
    """How to reach one backend server (credentials included: never log this)."""

    alias: str
    kind: str
    base_url: str
    username: str = ""
    password: str = ""
    bearer_token: str = field(default="", repr=False)

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        return f"ServerConfig(alias={self.alias!r}, kind={self.kind!r}, url={self.base_url!r})"


@dataclass(frozen=True)
class InventoryEntry:
    """One model file a server reports."""

    path: str  # as the server reports it (a Windows path stays one)
    backend_name: str  # the exact name its API selects the file by
    type: str  # checkpoint, lora, ...
    sha256: str = ""  # when the server knows it (Forge caches checkpoint hashes)
    size_bytes: int = 0  # 0: unknown


@dataclass(frozen=True)
class Probe:
    """A health check's answer, with the server's model inventory when it gives one."""

    up: bool
    reason: str = ""
    loaded_model: str = ""
    inventory: tuple[InventoryEntry, ...] | None = None
    # The sampler and scheduler names it offers (for pickers), where it lists them.
    samplers: tuple[str, ...] = ()
    schedulers: tuple[str, ...] = ()


@dataclass
class Image:
    """One generated image as the backend sent it."""

    data: bytes
    mime: str
    seed: int = -1
    # The backend's own A1111-style infotext, when it sent one.
    infotext: str = ""
    # ComfyUI images already carry their `prompt`/`workflow` chunks.
    from_comfyui: bool = False
    # The backend's own `parameters` text is not A1111's (stable-diffusion.cpp's): it
    # is kept under this key and ours is written.
    keep_text_as: str = ""


@dataclass
class Attempt:
    """One try of a job on one server."""

    job: queue_pb2.Job
    task_id: str
    on_progress: ProgressCallback
    # From the model library: the exact name this server uses for each model or LoRA
    # the job names (absent when the library does not know), and the model's hash.
    names: dict[str, str] = field(default_factory=dict)
    model_sha256: str = ""
    on_stage: StageCallback | None = None
    # False once this coordinator may no longer act (a standby took over its lease):
    # asked right before a backend is told to generate.
    may_send: Callable[[], bool] = field(default=lambda: True)

    async def stage(self, stage: JobStage, reason: str = "") -> None:
        if self.on_stage is not None:
            await self.on_stage(stage, reason)

    def check_ours(self) -> None:
        """Called right before the request that makes a backend generate: a coordinator
        that was frozen past its lease must not send a job the new active one has
        re-queued and sent already.

        Raises:
            NotActive: this coordinator lost its lease.
        """
        if not self.may_send():
            raise NotActive(
                f"not sending job {self.job.id}: this coordinator's lease ran out "
                "(another coordinator runs the queue now)"
            )


class Backend(Protocol):
    """A backend adapter for one server."""

    async def probe(self) -> Probe:
        """Checks the server; never raises."""
        ...

    async def run(self, attempt: Attempt) -> list[Image]:
        """Runs the job and returns its images.

        Raises:
            BackendUnavailable: transient failure; retry elsewhere.
            BackendRejected: the backend refused the request.
        """
        ...

    async def cancel(self, attempt: Attempt) -> None:
        """Interrupts `attempt` if it is still queued or running there (best effort)."""
        ...

    async def recover(self, attempt: Attempt) -> list[Image] | None:
        """After a coordinator restart: the images of an attempt still known to the
        backend (waiting for it if it is still running), or None to re-run it."""
        ...

    async def close(self) -> None:
        """Releases connections."""
        ...


def http_client(config: ServerConfig, timeout: float) -> Client:
    """An HTTP client for one server, with its basic auth or bearer token."""
    return Client(config.base_url, timeout, config.username, config.password, config.bearer_token)


async def request(
    client: Client,
    method: str,
    path: str,
    alias: str,
    passthrough: tuple[int, ...] = (),
    **kwargs: Any,
) -> Reply:
    """Sends one request and turns every failure into a typed error.

    Args:
        passthrough: error statuses the caller handles itself (returned, not raised).

    Raises:
        BackendUnavailable: connection failure, timeout, 5xx, or 429 (busy: try later);
            its cause is `NotSent` when the request never reached the server.
        BackendRejected: other 4xx, with the backend's message.
    """
    try:
        response = await client.send(method, path, **kwargs)
    except TimeoutError as e:
        raise BackendUnavailable(f"{alias}: {method} {path} timed out") from e
    except aiohttp.ClientError as e:  # str(e) is often empty (a reset, a closed connection)
        raise BackendUnavailable(f"{alias}: {method} {path} failed: {e or type(e).__name__}") from e
    if response.status_code in passthrough:
        return response
    if response.status_code >= 500 or response.status_code == 429:
        raise BackendUnavailable(
            f"{alias}: {method} {path} answered {response.status_code}: {error_message(response)}"
        )
    if response.status_code >= 400:
        raise BackendRejected(
            f"{alias} rejected the request ({response.status_code}): {error_message(response)}"
        )
    return response


def error_message(response: Reply) -> str:
    """The most useful text in an error body (A1111, ComfyUI and sd-server shapes)."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):  # ComfyUI
            parts = [str(error.get("message", ""))]
            for node_id, node in (body.get("node_errors") or {}).items():
                for item in node.get("errors", []):
                    parts.append(
                        f"node {node_id} ({node.get('class_type', '?')}): "
                        f"{item.get('message', '')} {item.get('details', '')}".strip()
                    )
            return "; ".join(p for p in parts if p)
        for key in ("detail", "message", "errors", "error"):  # A1111 / Forge / sd-server
            if body.get(key):
                return str(body[key])[:500]
    return json.dumps(body)[:500]
