"""ComfyUI over its HTTP + websocket API (PROTOCOLS.md §6, §11).

Each attempt's id is both the ComfyUI `prompt_id` and the websocket `clientId`,
so after a coordinator restart the same prompt can be found in `/history` or
`/queue` and its events (some are sent only to the submitting client) followed
again on the same socket id. Outputs are fetched from `/history` + `/view` and
kept byte for byte, with ComfyUI's own `prompt`/`workflow` PNG chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import struct
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from stablequeue.v1 import queue_pb2
from stablequeue_coordinator.backends import comfyui_workflow
from stablequeue_coordinator.backends.base import (
    Attempt,
    Image,
    InventoryEntry,
    Probe,
    ServerConfig,
    http_client,
    request,
)
from stablequeue_coordinator.backends.http import Reply, auth_headers
from stablequeue_coordinator.errors import BackendRejected, BackendUnavailable
from stablequeue_coordinator.outputs.store import mime_of

log = logging.getLogger(__name__)
# While following the websocket, /history is also checked this often, so a
# missed or dropped socket never leaves an attempt waiting forever.
HISTORY_CHECK_S = 2.0
PREVIEW_IMAGE = 1
INVENTORY_FOLDERS = (
    ("checkpoints", "checkpoint"),
    ("diffusion_models", "diffusion_model"),
    ("loras", "lora"),
    ("vae", "vae"),
)
PREVIEW_FORMATS = {1: "image/jpeg", 2: "image/png"}


def with_server_names(
    graph: dict[str, Any], spec: queue_pb2.JobSpec, names: dict[str, str]
) -> dict[str, Any]:
    """The workflow with each input naming a required file set to this server's own
    name for that file (found by its SHA-256 in the server's inventory)."""
    renames = {
        m.name: names[m.sha256]
        for m in spec.models
        if names.get(m.sha256) and names[m.sha256] != m.name
    }
    if not renames:
        return graph
    for node in graph.values():
        inputs = node.get("inputs", {}) if isinstance(node, dict) else {}
        for key, value in inputs.items():
            if isinstance(value, str) and value in renames:
                inputs[key] = renames[value]
    return graph


class ComfyUIBackend:
    """Adapter for one ComfyUI server."""

    def __init__(self, config: ServerConfig, timeout: float = 600.0) -> None:
        self.config = config
        self._client = http_client(config, timeout)
        # KSampler's sampler and scheduler names, read by the first probe that is up.
        self._samplers: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())

    async def _call(self, method: str, path: str, **kwargs: Any) -> Reply:
        return await request(self._client, method, path, self.config.alias, **kwargs)

    async def probe(self) -> Probe:
        try:
            stats = (await self._call("GET", "/system_stats", timeout=5.0)).json()
        except (BackendUnavailable, BackendRejected, ValueError) as e:
            self._samplers = ((), ())  # it may come back with other nodes
            return Probe(False, str(e))
        if not isinstance(stats, dict) or "system" not in stats:
            return Probe(False, "GET /system_stats did not answer like ComfyUI")
        entries: list[InventoryEntry] = []
        for folder, kind in INVENTORY_FOLDERS:
            try:
                listed = (await self._call("GET", f"/models/{folder}", timeout=5.0)).json()
            except (BackendUnavailable, BackendRejected, ValueError):
                continue
            entries += [InventoryEntry(str(n), str(n), kind) for n in listed if isinstance(n, str)]
        if not self._samplers[0]:  # once while it stays up (a kept probe adapter)
            self._samplers = await self._sampler_lists()
        samplers, schedulers = self._samplers
        return Probe(
            True, loaded_model=await self._last_checkpoint(), inventory=tuple(entries),
            samplers=samplers, schedulers=schedulers,
        )  # fmt: skip

    async def _sampler_lists(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """KSampler's sampler_name and scheduler choices, as ComfyUI's /object_info
        lists them (a combo input is `[[choices], {options}]`, or `["COMBO",
        {"options": [choices]}]` in the newer node schema); empty when it does not say."""
        try:
            info = (await self._call("GET", "/object_info/KSampler", timeout=5.0)).json()
            required = info["KSampler"]["input"]["required"]
        except (BackendUnavailable, BackendRejected, ValueError, KeyError, TypeError):
            return (), ()
        return _choices(required.get("sampler_name")), _choices(required.get("scheduler"))

    async def _last_checkpoint(self) -> str:
        """The checkpoint of the prompt running now, else of the latest one in the history
        (ComfyUI keeps the last prompt's models loaded); "" when none says."""
        graphs: list[Any] = []
        with contextlib.suppress(BackendUnavailable, BackendRejected, ValueError, TypeError):
            queue = (await self._call("GET", "/queue", timeout=5.0)).json()
            graphs += [item[2] for item in queue.get("queue_running", []) if len(item) > 2]
        if not graphs:
            with contextlib.suppress(BackendUnavailable, BackendRejected, ValueError, TypeError):
                history = (await self._call("GET", "/history?max_items=1", timeout=5.0)).json()
                graphs += [e["prompt"][2] for e in history.values() if len(e["prompt"]) > 2]
        for graph in graphs:
            name = comfyui_workflow.checkpoint_of(graph)
            if name:
                return name
        return ""

    # ---- running ----------------------------------------------------------

    async def run(self, attempt: Attempt) -> list[Image]:
        prompt, seed = await self._prompt(attempt)
        body: dict[str, Any] = {
            "prompt": prompt, "client_id": attempt.task_id, "prompt_id": attempt.task_id,
        }  # fmt: skip
        ui_workflow = attempt.job.spec.comfy_ui_workflow
        if ui_workflow:  # SaveImage writes it into each PNG, as when queued from the page
            body["extra_data"] = {"extra_pnginfo": {"workflow": json.loads(ui_workflow)}}
        async with self._socket(attempt.task_id) as socket:
            # The socket is open before the prompt is queued: no event is missed.
            attempt.check_ours()
            await self._call("POST", "/prompt", json=body)
            entry = await self._follow(socket, attempt)
        return await self._outputs(entry, seed)

    async def recover(self, attempt: Attempt) -> list[Image] | None:
        """Finished → its outputs; queued or running → followed to the end; unknown → None."""
        prompt_id = attempt.task_id
        seed = _seed_of(attempt.job)
        async with self._socket(prompt_id) as socket:
            entry = await self._history(prompt_id)
            if entry is None:
                if not await self._queued(prompt_id):
                    return None  # ComfyUI restarted or dropped it: run the job again
                log.info("%s: following prompt %s again", self.config.alias, prompt_id)
                entry = await self._follow(socket, attempt)
        return await self._outputs(entry, seed)

    async def cancel(self, attempt: Attempt) -> None:
        """Drops the prompt from the queue, or interrupts it if it is running (no-ops otherwise)."""
        await self._call("POST", "/queue", json={"delete": [attempt.task_id]})
        await self._call("POST", "/interrupt", json={"prompt_id": attempt.task_id})

    async def close(self) -> None:
        await self._client.close()

    # ---- the prompt -------------------------------------------------------

    async def _prompt(self, attempt: Attempt) -> tuple[dict[str, Any], int]:
        """The API-format graph to queue, and the seed of a parameter job (-1 otherwise)."""
        spec = attempt.job.spec
        if not spec.HasField("params"):
            return with_server_names(json.loads(spec.workflow_json), spec, attempt.names), -1
        params = spec.params
        # The library's names for this server first; else match the server's own lists.
        names = attempt.names
        checkpoint = names.get(params.model) or await self._listed(
            "checkpoints", params.model, "checkpoint"
        )
        loras = [
            (names.get(lora.name) or await self._listed("loras", lora.name, "LoRA"), lora.weight)
            for lora in params.loras
        ]
        init = ""
        if params.mode == queue_pb2.GENERATION_MODE_IMG2IMG and params.init_images:
            init = await self._upload(params.init_images[0], f"sq-{attempt.task_id}.png")
        seed = _seed_of(attempt.job)
        return comfyui_workflow.build(params, checkpoint, loras, seed, init), seed

    async def _listed(self, folder: str, wanted: str, what: str) -> str:
        listed = (await self._call("GET", f"/models/{folder}")).json()
        if not wanted:
            if folder == "checkpoints" and len(listed) == 1:
                return str(listed[0])
            raise BackendRejected(
                f"{self.config.alias}: name the {what} to use (ComfyUI has no loaded default); "
                f"it has {_some(listed)}"
            )
        found = comfyui_workflow.find_file(listed, wanted)
        if found is None:
            raise BackendRejected(
                f"{self.config.alias} has no {what} matching {wanted!r}; it has {_some(listed)}"
            )
        return found

    async def _upload(self, data: bytes, name: str) -> str:
        reply = (
            await self._call(
                "POST",
                "/upload/image",
                files={"image": (name, data, mime_of(data))},
                data={"type": "input", "overwrite": "true"},
            )
        ).json()
        subfolder = reply.get("subfolder") or ""
        return f"{subfolder}/{reply['name']}" if subfolder else str(reply["name"])

    # ---- following a prompt ---------------------------------------------

    @contextlib.asynccontextmanager
    async def _socket(self, client_id: str) -> AsyncIterator[ClientConnection]:
        url = self._client.base_url.replace("http", "ws", 1) + "/ws"
        config = self.config
        headers = auth_headers(config.username, config.password, config.bearer_token)
        try:
            socket = await connect(
                f"{url}?clientId={quote(client_id)}",
                additional_headers=headers,
                max_size=64 * 1024 * 1024,
                open_timeout=10,
            )
        except (OSError, WebSocketException, TimeoutError) as e:
            raise BackendUnavailable(f"{self.config.alias}: websocket /ws failed: {e}") from e
        try:
            yield socket
        finally:
            await socket.close()

    async def _follow(self, socket: ClientConnection, attempt: Attempt) -> dict[str, Any]:
        """Relays progress and previews until the prompt finishes; returns its history entry."""
        prompt_id = attempt.task_id
        tracker = _Progress(prompt_id)
        socket_open = True
        while True:
            message: str | bytes | None = None
            if socket_open:
                try:
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the
                    # result when a message arrives as the task is cancelled, losing the
                    # cancel (seen: a cancelled job's prompt never interrupted).
                    async with asyncio.timeout(HISTORY_CHECK_S):
                        message = await socket.recv()
                except TimeoutError:
                    pass
                except WebSocketException:
                    socket_open = False  # keep going on /history alone
            else:
                await asyncio.sleep(HISTORY_CHECK_S / 4)
            if message is None:
                entry = await self._history(prompt_id)
                if entry is not None:
                    return entry
                continue
            progress, finished = tracker.feed(message)
            if progress is not None:
                result = attempt.on_progress(progress)
                if asyncio.iscoroutine(result):
                    await result
            if finished:
                for _ in range(20):  # history is written just before the final message
                    entry = await self._history(prompt_id)
                    if entry is not None:
                        return entry
                    await asyncio.sleep(0.05)

    async def _history(self, prompt_id: str) -> dict[str, Any] | None:
        reply = (await self._call("GET", f"/history/{quote(prompt_id)}")).json()
        entry = reply.get(prompt_id) if isinstance(reply, dict) else None
        return entry if isinstance(entry, dict) else None

    async def _queued(self, prompt_id: str) -> bool:
        queue = (await self._call("GET", "/queue")).json()
        items = [*queue.get("queue_running", []), *queue.get("queue_pending", [])]
        return any(len(item) > 1 and item[1] == prompt_id for item in items)

    async def _outputs(self, entry: dict[str, Any], seed: int) -> list[Image]:
        status = entry.get("status") or {}
        if status.get("status_str") == "error":
            raise BackendRejected(f"{self.config.alias}: {_failure(status)}")
        files = [
            image
            for output in (entry.get("outputs") or {}).values()
            for image in (output.get("images") or [])
            if isinstance(image, dict) and image.get("filename")
        ]
        saved = [f for f in files if f.get("type", "output") == "output"] or files
        # What ran, as A1111 would write it (the graph from ComfyUI's own history).
        prompt = entry.get("prompt")
        ran = prompt[2] if isinstance(prompt, list) and len(prompt) > 2 else None
        text, used = comfyui_workflow.parameters_of(ran), comfyui_workflow.seed_of(ran)
        seed = seed if seed >= 0 else used
        images = []
        for f in saved:
            response = await self._call(
                "GET",
                "/view",
                params={"filename": f["filename"], "subfolder": f.get("subfolder", ""),
                        "type": f.get("type", "output")},
            )  # fmt: skip
            data = response.content
            images.append(
                Image(data=data, mime=mime_of(data), seed=seed, infotext=text, from_comfyui=True)
            )
        return images


class _Progress:
    """Turns websocket messages about one prompt into JobProgress updates: one per
    step. ComfyUI sends each step's `progress` and then, when previews are on, that
    step's preview frame; so a step is held until the next message and relayed with
    the preview if that is what came (a step never shows first without it, which
    would make the page's preview flicker)."""

    def __init__(self, prompt_id: str) -> None:
        self.prompt_id = prompt_id
        self.running = False
        self.held: queue_pb2.JobProgress | None = None  # a step awaiting its preview
        self.node_started = 0.0
        self.last = queue_pb2.JobProgress(eta_seconds=-1.0)

    def feed(self, message: str | bytes) -> tuple[queue_pb2.JobProgress | None, bool]:
        """(progress to relay or None, whether the prompt has finished)."""
        if isinstance(message, bytes):
            with_preview = self._binary(message)
            if with_preview is None:
                return self._release(), False
            self.held = None
            return with_preview, False
        held = self._release()
        progress, finished = self._event(message)
        if progress is not None:
            self.held = progress
        return held, finished

    def _release(self) -> queue_pb2.JobProgress | None:
        held, self.held = self.held, None
        return held

    def _event(self, message: str) -> tuple[queue_pb2.JobProgress | None, bool]:
        try:
            event = json.loads(message)
            kind, data = event["type"], event.get("data") or {}
        except (ValueError, KeyError, TypeError):
            return None, False
        if not isinstance(data, dict) or data.get("prompt_id") != self.prompt_id:
            return None, False
        if kind == "execution_start":
            self.running = True
        elif kind == "executing":
            if data.get("node") is None:
                self.running = False
                return None, True
            self.running = True
        elif kind == "progress":
            value, maximum = int(data.get("value") or 0), int(data.get("max") or 0)
            now = time.monotonic()
            if value <= 1 or not self.node_started:
                self.node_started = now
            rate = (now - self.node_started) / max(value - 1, 1)
            self.last = queue_pb2.JobProgress(
                step=value,
                total_steps=maximum,
                fraction=value / maximum if maximum else 0.0,
                eta_seconds=rate * (maximum - value) if value > 1 else -1.0,
                preview_image=self.last.preview_image,
                preview_mime=self.last.preview_mime,
            )
            return self.last, False
        return None, False

    def _binary(self, frame: bytes) -> queue_pb2.JobProgress | None:
        if not self.running or len(frame) < 8:
            return None
        kind, image_format = struct.unpack(">II", frame[:8])
        if kind != PREVIEW_IMAGE:
            return None
        self.last.preview_image = frame[8:]
        self.last.preview_mime = PREVIEW_FORMATS.get(image_format, mime_of(frame[8:]))
        progress = queue_pb2.JobProgress()
        progress.CopyFrom(self.last)
        return progress


def _failure(status: dict[str, Any]) -> str:
    for name, data in status.get("messages") or []:
        if name == "execution_error":
            return (
                f"node {data.get('node_id')} ({data.get('node_type')}) failed: "
                f"{data.get('exception_type', '')}: {data.get('exception_message', '')}".strip()
            )
        if name == "execution_interrupted":
            return "the prompt was interrupted on the server"
    return "the prompt failed"


def _seed_of(job: queue_pb2.Job) -> int:
    """The seed a parameter job runs with: its own, or one derived from its id if random.

    Derived from the job id so a recovered attempt reports the seed the run used.
    """
    if not job.spec.HasField("params"):
        return -1
    if job.spec.params.seed >= 0:
        return job.spec.params.seed
    return int.from_bytes(hashlib.sha256(job.id.encode()).digest()[:4], "big")


def _some(listed: list[Any]) -> str:
    if not listed:
        return "none"
    names = ", ".join(str(x) for x in listed[:5])
    return names + (f" and {len(listed) - 5} more" if len(listed) > 5 else "")


def _choices(spec: Any) -> tuple[str, ...]:
    """The choices of a combo input of /object_info, in either of its two shapes."""
    if not isinstance(spec, list) or not spec:
        return ()
    choices = spec[0]
    if choices == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        choices = spec[1].get("options")
    if not isinstance(choices, list):
        return ()
    return tuple(str(c) for c in choices if isinstance(c, str))
