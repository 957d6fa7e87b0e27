"""Forge / AUTOMATIC1111 over its HTTP API (PROTOCOLS.md §1).

The model is chosen per request through `override_settings.sd_model_checkpoint`,
set to the exact title the server lists (matched by hash, then by name; paths
are never rewritten). Progress comes from `/internal/progress` for our own
`force_task_id`, falling back to `/sdapi/v1/progress` on servers without it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from stablequeue.v1 import queue_pb2
from stablequeue_coordinator.backends.base import (
    Attempt,
    Image,
    InventoryEntry,
    Probe,
    ServerConfig,
    http_client,
    request,
)
from stablequeue_coordinator.backends.http import Reply
from stablequeue_coordinator.errors import BackendRejected, BackendUnavailable
from stablequeue_coordinator.outputs import png
from stablequeue_coordinator.outputs.store import mime_of

log = logging.getLogger(__name__)
POLL_SECONDS = 0.25
HEX = re.compile(r"^[0-9a-fA-F]{8,64}$")


def checkpoint_title(models: list[dict[str, Any]], wanted: str) -> str | None:
    """The title of the listed checkpoint `wanted` names: by hash first, then by name."""
    want = wanted.strip()
    if HEX.match(want):
        low = want.lower()
        for m in models:
            sha = (m.get("sha256") or "").lower()
            short = (m.get("hash") or "").lower()
            if (sha and sha.startswith(low)) or (short and len(low) >= 8 and short == low[:10]):
                return str(m["title"])
    for m in models:
        title = str(m.get("title", ""))
        name = title.split(" [", 1)[0]
        stem = name.rsplit(".", 1)[0]
        candidates = {title, name, stem, str(m.get("model_name", ""))}
        filename = str(m.get("filename", ""))
        if filename:
            base = re.split(r"[\\/]", filename)[-1]
            candidates |= {base, base.rsplit(".", 1)[0]}
        if want in candidates or want.lower() in {c.lower() for c in candidates}:
            return title
    return None


def payload(
    params: queue_pb2.GenerationParams,
    task_id: str,
    title: str | None,
    names: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The txt2img/img2img request body for one job (`names`: the server's own LoRA names)."""
    known = names or {}
    prompt = params.prompt + "".join(
        f" <lora:{known.get(lora.name, lora.name)}:{lora.weight:g}>" for lora in params.loras
    )
    body: dict[str, Any] = {
        "prompt": prompt,
        "negative_prompt": params.negative_prompt,
        "seed": params.seed,
        "batch_size": params.batch_size or 1,
        "n_iter": params.iterations or 1,
        "force_task_id": task_id,
        "send_images": True,
        "save_images": False,
        "override_settings_restore_afterwards": True,
    }
    for key, value in (
        ("steps", params.steps),
        ("cfg_scale", params.cfg_scale),
        ("width", params.width),
        ("height", params.height),
        ("sampler_name", params.sampler),
        ("scheduler", params.scheduler),
    ):
        if value:
            body[key] = value
    if params.mode == queue_pb2.GENERATION_MODE_IMG2IMG:
        body["init_images"] = [base64.b64encode(i).decode() for i in params.init_images]
        if params.denoising_strength:
            body["denoising_strength"] = params.denoising_strength
    extra = json.loads(params.extra_json) if params.extra_json else {}
    overrides = {**extra.pop("override_settings", {})}
    if title:
        overrides["sd_model_checkpoint"] = title
    body.update(extra)
    body["override_settings"] = overrides
    return body


@dataclass(frozen=True)
class SamplerNames:
    """The sampler and scheduler names a server accepts (its /sdapi/v1/samplers and
    /sdapi/v1/schedulers). An empty scheduler list: the server has no such route."""

    samplers: tuple[str, ...]
    schedulers: tuple[str, ...]
    # The names as its own menus show them (no aliases), for pickers.
    menu_samplers: tuple[str, ...] = ()
    menu_schedulers: tuple[str, ...] = ()

    def problem(self, sampler: str, scheduler: str) -> str:
        """Why the server would not run `sampler`/`scheduler` as asked ("" if it would).

        Forge and A1111 answer an unknown name with HTTP 200 and their default sampler;
        a job must not run with a silent substitute. A sampler may end with a scheduler
        ("DPM++ 2M Karras"), as both accept.
        """
        if sampler:
            name = sampler
            for label in self.schedulers:
                if name.endswith(" " + label) and name[: -len(label) - 1] in self.samplers:
                    name = name[: -len(label) - 1]
                    break
            if name not in self.samplers:
                return f"no sampler {sampler!r}; it has: {', '.join(self.samplers)}"
        if scheduler and self.schedulers and scheduler not in self.schedulers:
            return f"no scheduler {scheduler!r}; it has: {', '.join(self.schedulers)}"
        return ""


class ForgeBackend:
    """Adapter for one Forge / A1111 server started with `--api` (or `--nowebui`)."""

    def __init__(self, config: ServerConfig, timeout: float = 600.0) -> None:
        self.config = config
        self._client = http_client(config, timeout)
        self._names: SamplerNames | None = None  # read with each probe

    async def _sampler_names(self) -> SamplerNames:
        samplers = (await self._call("GET", "/sdapi/v1/samplers", timeout=5.0)).json()
        names = [str(s["name"]) for s in samplers if isinstance(s, dict) and s.get("name")]
        menu = tuple(names)
        names += [str(a) for s in samplers if isinstance(s, dict) for a in s.get("aliases") or []]
        try:  # A1111 before 1.9 has no schedulers
            listed = (await self._call("GET", "/sdapi/v1/schedulers", timeout=5.0)).json()
        except BackendRejected:
            listed = []
        schedulers = [
            str(s[key]) for s in listed if isinstance(s, dict) for key in ("label", "name")
            if s.get(key)
        ]  # fmt: skip
        shown = tuple(str(s.get("label") or s.get("name")) for s in listed if isinstance(s, dict))
        return SamplerNames(
            tuple(dict.fromkeys(names)), tuple(dict.fromkeys(schedulers)), menu, shown
        )

    async def _check_names(self, params: queue_pb2.GenerationParams) -> None:
        """Raises BackendRejected for a sampler or scheduler this server does not have."""
        if not (params.sampler or params.scheduler):
            return
        if self._names is None:
            self._names = await self._sampler_names()
        problem = self._names.problem(params.sampler, params.scheduler)
        if problem:
            raise BackendRejected(f"{self.config.alias} has {problem}")

    async def _call(self, method: str, path: str, **kwargs: Any) -> Reply:
        return await request(self._client, method, path, self.config.alias, **kwargs)

    async def probe(self) -> Probe:
        try:
            options = (await self._call("GET", "/sdapi/v1/options", timeout=5.0)).json()
            models = (await self._call("GET", "/sdapi/v1/sd-models", timeout=5.0)).json()
        except (BackendUnavailable, BackendRejected, ValueError) as e:
            self._names = None  # it may come back with other samplers (new extensions)
            return Probe(False, str(e))
        entries = [
            InventoryEntry(
                path=str(m.get("filename") or m.get("title")),
                backend_name=str(m.get("title")),
                type="checkpoint",
                sha256=str(m.get("sha256") or "").lower(),
            )
            for m in models
            if isinstance(m, dict) and m.get("title")
        ]
        try:  # the built-in Lora extension; absent on some installs
            loras = (await self._call("GET", "/sdapi/v1/loras", timeout=5.0)).json()
        except (BackendUnavailable, BackendRejected, ValueError):
            loras = []
        entries += [
            InventoryEntry(str(lora.get("path") or lora["name"]), str(lora["name"]), "lora")
            for lora in loras
            if isinstance(lora, dict) and lora.get("name")
        ]
        if self._names is None:  # once while it stays up (a kept probe adapter)
            with contextlib.suppress(BackendUnavailable, BackendRejected, ValueError, KeyError):
                self._names = await self._sampler_names()
        names = self._names or SamplerNames((), ())
        return Probe(
            True, "", str(options.get("sd_model_checkpoint") or ""), tuple(entries),
            names.menu_samplers, names.menu_schedulers,
        )  # fmt: skip

    async def run(self, attempt: Attempt) -> list[Image]:
        params = attempt.job.spec.params
        await self._check_names(params)
        title = attempt.names.get(params.model)  # the library knows this server's title
        if params.model and title is None:
            models = (await self._call("GET", "/sdapi/v1/sd-models")).json()
            title = checkpoint_title(models, params.model)
            if title is None:
                raise BackendRejected(
                    f"{self.config.alias} has no checkpoint matching {params.model!r}"
                )
        route = "img2img" if params.mode == queue_pb2.GENERATION_MODE_IMG2IMG else "txt2img"
        body = payload(params, attempt.task_id, title, attempt.names)
        attempt.check_ours()
        watcher = asyncio.create_task(self._watch(attempt))
        try:
            response = await self._call("POST", f"/sdapi/v1/{route}", json=body)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        return sdapi_images(response.json())

    async def _watch(self, attempt: Attempt) -> None:
        """Relays progress of our task until cancelled (transient errors are ignored)."""
        preview_id = -1
        legacy = False
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                if legacy:
                    progress = await self._legacy_progress()
                else:
                    progress, preview_id = await self._task_progress(attempt.task_id, preview_id)
            except BackendRejected:
                legacy = True  # no /internal/progress on this server
                continue
            except BackendUnavailable:
                continue
            if progress is not None:
                result = attempt.on_progress(progress)
                if asyncio.iscoroutine(result):
                    await result

    async def _task_progress(
        self, task_id: str, preview_id: int
    ) -> tuple[queue_pb2.JobProgress | None, int]:
        reply = (
            await self._call(
                "POST",
                "/internal/progress",
                json={"id_task": task_id, "id_live_preview": preview_id, "live_preview": True},
            )
        ).json()
        if not reply.get("active"):
            return None, preview_id
        progress = queue_pb2.JobProgress(
            fraction=float(reply.get("progress") or 0.0),
            eta_seconds=float(reply["eta"]) if reply.get("eta") is not None else -1.0,
        )
        # /internal/progress has no step numbers; the API's state has them, and while
        # our task is the active one they are our task's.
        with contextlib.suppress(BackendUnavailable, BackendRejected, ValueError):
            state = (
                await self._call("GET", "/sdapi/v1/progress?skip_current_image=true")
            ).json().get("state") or {}
            progress.step = int(state.get("sampling_step") or 0)
            progress.total_steps = int(state.get("sampling_steps") or 0)
        preview = reply.get("live_preview")
        if preview and "," in preview:
            header, data = preview.split(",", 1)
            progress.preview_image = base64.b64decode(data)
            progress.preview_mime = header.removeprefix("data:").split(";")[0]
        shown = reply.get("id_live_preview")  # 0 is an id like any other
        return progress, int(shown) if shown is not None else preview_id

    async def _legacy_progress(self) -> queue_pb2.JobProgress | None:
        reply = (await self._call("GET", "/sdapi/v1/progress?skip_current_image=false")).json()
        state = reply.get("state") or {}
        if not state.get("job_count"):
            return None
        progress = queue_pb2.JobProgress(
            step=int(state.get("sampling_step") or 0),
            total_steps=int(state.get("sampling_steps") or 0),
            fraction=float(reply.get("progress") or 0.0),
            eta_seconds=float(reply.get("eta_relative") or -1.0),
        )
        if reply.get("current_image"):
            progress.preview_image = base64.b64decode(reply["current_image"])
            progress.preview_mime = mime_of(progress.preview_image)
        return progress

    async def cancel(self, attempt: Attempt) -> None:
        """Interrupts the server only while our task is the one it is running."""
        for _ in range(40):
            try:
                reply = (
                    await self._call(
                        "POST",
                        "/internal/progress",
                        json={"id_task": attempt.task_id, "live_preview": False},
                    )
                ).json()
            except (BackendRejected, BackendUnavailable) as e:
                log.warning("%s: cannot tell whether our task runs, not interrupting: %s",
                            self.config.alias, e)  # fmt: skip
                return
            if reply.get("active"):
                await self._call("POST", "/sdapi/v1/interrupt")
                log.info("%s: interrupted task %s", self.config.alias, attempt.task_id)
                return
            if reply.get("completed") or not reply.get("queued"):
                return
            await asyncio.sleep(POLL_SECONDS)  # still queued behind others: wait its turn

    async def recover(self, attempt: Attempt) -> list[Image] | None:
        return None  # Forge keeps no results for API calls: the job runs again

    async def close(self) -> None:
        await self._client.close()


def sdapi_images(reply: dict[str, Any]) -> list[Image]:
    try:
        info = json.loads(reply.get("info") or "{}")
    except json.JSONDecodeError:
        info = {}
    seeds = info.get("all_seeds") or []
    infotexts = info.get("infotexts") or []
    first = int(info.get("index_of_first_image") or 0)
    images = []
    for i, encoded in enumerate(reply.get("images") or []):
        if i < first:
            continue  # a grid, not one of the images
        data = base64.b64decode(encoded.split(",", 1)[-1])
        n = i - first
        images.append(
            Image(
                data=data,
                mime=mime_of(data),
                seed=int(seeds[n]) if n < len(seeds) else png.seed_in(data),
                infotext=str(infotexts[n]) if n < len(infotexts) else "",
            )
        )
    return images
