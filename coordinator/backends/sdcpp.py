"""stable-diffusion.cpp's `sd-server` (PROTOCOLS.md §9).

Servers with the native async API get `POST /sdcpp/v1/img_gen` (202 + a job id),
are polled on `/sdcpp/v1/jobs/{id}`, and can drop a queued job through its
`cancel`; older servers get the blocking A1111-style `/sdapi/v1/txt2img`. An
sd-server loads one model at startup, so a job naming another model is refused
here (the dispatcher already avoids such servers). LoRAs go in the structured
`lora` field, resolved against the names the server lists: sd-server does not
read `<lora:…>` prompt tags.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from typing import Any

from stablequeue.v1 import queue_pb2
from stablequeue_coordinator.backends import sdcpp_names, sdcpp_options
from stablequeue_coordinator.backends.base import (
    Attempt,
    Image,
    InventoryEntry,
    Probe,
    ServerConfig,
    http_client,
    request,
)
from stablequeue_coordinator.backends.forge import sdapi_images
from stablequeue_coordinator.backends.http import NotSent, Reply
from stablequeue_coordinator.dispatch.policy import model_matches
from stablequeue_coordinator.errors import BackendRejected, BackendUnavailable
from stablequeue_coordinator.outputs import png
from stablequeue_coordinator.outputs.store import mime_of
from stablequeue_coordinator.queue.states import JobStage

# sd.cpp lists no names over HTTP; these are its own (it also takes A1111's labels).
OWN_NAMES = (sdcpp_names.SAMPLE_METHODS, sdcpp_names.SCHEDULERS)

log = logging.getLogger(__name__)
# sd-server's job API is polled: soon after the submit (a turbo image on a GPU takes
# 0.1-0.2 s, a fixed quarter second would double its time), then less often.
POLL_FIRST_S = 0.002
POLL_GROWTH = 1.25
POLL_SECONDS = 0.25
# sd-server reports no progress and stamps jobs in whole seconds, so how long a job
# shape takes is learned from our own looks; the next job like it is then looked at
# often around when it should end (from EARLY to LATE times that, every CLOSE of it,
# at most CLOSE_MAX_S apart): it is seen done a few ms after it ends, where the growing
# grid alone could miss the end by a quarter of the time gone (0.25 s at most).
EARLY, LATE, CLOSE, CLOSE_MAX_S = 0.8, 1.3, 0.02, 0.05
SHAPES_KEPT = 256
# sd.cpp's own `parameters` text ("Sampler: NONE, Eta: inf", its JSON) moves here; the
# image's `parameters` is our A1111 text.
OWN_TEXT = "sdcpp_parameters"
NAME_SPLIT = re.compile(r"[\\/]")
# Settings that need a feature the server lists in `capabilities.features` (by prefix).
FEATURE_OF = {"vae": "vae_tiling", "hires": "hires", "cache": "cache", "control": "control_image",
              "ref": "ref_images"}  # fmt: skip
FEATURES = frozenset(FEATURE_OF.values())


def next_look(
    delay: float, generating_for: float | None, expected: float | None
) -> tuple[float, float]:
    """(the wait before the next look at a job, the growing grid's next step): close
    looks around when a job like it ended before, else the grid, growing."""
    if generating_for is not None and expected and generating_for < LATE * expected:
        ahead = EARLY * expected - generating_for
        close = min(max(POLL_FIRST_S, CLOSE * expected), CLOSE_MAX_S)
        pause = min(ahead, POLL_SECONDS) if ahead > 0 else close
        return pause, POLL_FIRST_S  # past the window, the grid starts over
    return delay, min(delay * POLL_GROWTH, POLL_SECONDS)


async def _started(attempt: Attempt, waiting: str) -> None:
    if waiting:  # it had waited in sd-server's own queue
        await attempt.stage(JobStage.GENERATING)
    result = attempt.on_progress(queue_pb2.JobProgress(eta_seconds=-1.0))
    if asyncio.iscoroutine(result):
        await result


def _shape(params: queue_pb2.GenerationParams) -> tuple[Any, ...]:
    """What decides how long sd-server generates a job (its one model being fixed)."""
    return (params.mode, params.steps, params.width, params.height, params.batch_size,
            params.iterations, round(params.denoising_strength, 2), len(params.loras),
            params.sampler, params.extra_json)  # fmt: skip


def names(params: queue_pb2.GenerationParams) -> tuple[str, str]:
    """sd.cpp's (sample_method, scheduler) for the job; "" where its default applies.

    Raises:
        BackendRejected: a name sd.cpp does not have (it would silently run its default).
    """
    try:
        return sdcpp_names.translate(params.sampler, params.scheduler)
    except sdcpp_names.UnknownName as e:
        raise BackendRejected(str(e)) from None


def settings(params: queue_pb2.GenerationParams) -> dict[str, Any]:
    """The job's stable-diffusion.cpp settings (its extra settings), checked.

    Raises:
        BackendRejected: naming the key sd.cpp cannot take (it would ignore it silently).
    """
    try:
        return sdcpp_options.parse_json(params.extra_json)
    except sdcpp_options.BadOption as e:
        raise BackendRejected(f"extra setting {e}") from None


def find_lora(listed: list[dict[str, Any]], wanted: str) -> str | None:
    """The path (as the server lists it) of the LoRA `wanted` names."""
    want = wanted.strip().lower()
    for lora in listed:
        path = str(lora.get("path") or lora.get("name") or "")
        base = NAME_SPLIT.split(path)[-1]
        names = {str(lora.get("name", "")), path, base, base.rsplit(".", 1)[0]}
        if want in {n.lower() for n in names if n}:
            return path
    return None


def native_body(
    params: queue_pb2.GenerationParams,
    loras: list[dict[str, Any]],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `/sdcpp/v1/img_gen` body for one job; `extra`: its checked sd.cpp settings."""
    sample: dict[str, Any] = {}
    method, scheduler = names(params)
    if method:
        sample["sample_method"] = method
    if scheduler:
        sample["scheduler"] = scheduler
    if params.steps:
        sample["sample_steps"] = params.steps
    if params.cfg_scale:
        sample["guidance"] = {"txt_cfg": params.cfg_scale}
    body: dict[str, Any] = {
        "prompt": params.prompt,
        "negative_prompt": params.negative_prompt,
        "seed": params.seed,
        "batch_count": (params.batch_size or 1) * (params.iterations or 1),
        "output_format": "png",
        "lora": loras,
    }
    if sample:
        body["sample_params"] = sample
    if params.width:
        body["width"] = params.width
    if params.height:
        body["height"] = params.height
    if params.mode == queue_pb2.GENERATION_MODE_IMG2IMG and params.init_images:
        body["init_image"] = base64.b64encode(params.init_images[0]).decode()
        if params.denoising_strength:
            body["strength"] = params.denoising_strength
    sdcpp_options.apply_to_body(body, extra or {})
    return body


def sdapi_body(params: queue_pb2.GenerationParams, loras: list[dict[str, Any]]) -> dict[str, Any]:
    """The `/sdapi/v1/txt2img|img2img` body for servers without the native API."""
    body: dict[str, Any] = {
        "prompt": params.prompt,
        "negative_prompt": params.negative_prompt,
        "seed": params.seed,
        "batch_size": (params.batch_size or 1) * (params.iterations or 1),
        "lora": loras,
    }
    method, scheduler = names(params)
    for key, value in (
        ("steps", params.steps),
        ("cfg_scale", params.cfg_scale),
        ("width", params.width),
        ("height", params.height),
        ("sampler_name", method),
        ("scheduler", scheduler),
    ):
        if value:
            body[key] = value
    if params.mode == queue_pb2.GENERATION_MODE_IMG2IMG:
        body["init_images"] = [base64.b64encode(i).decode() for i in params.init_images]
        if params.denoising_strength:
            body["denoising_strength"] = params.denoising_strength
    return body


class SdCppBackend:
    """Adapter for one stable-diffusion.cpp `sd-server`."""

    def __init__(self, config: ServerConfig, timeout: float = 600.0) -> None:
        self.config = config
        self._client = http_client(config, timeout)
        self._jobs: dict[str, str] = {}  # our task id -> the server's job id
        self._took: dict[tuple[Any, ...], float] = {}  # job shape -> seconds generating

    async def _call(self, method: str, path: str, **kwargs: Any) -> Reply:
        return await request(self._client, method, path, self.config.alias, **kwargs)

    async def _capabilities(self) -> dict[str, Any] | None:
        """The native API's capabilities, or None on a server without it."""
        reply = await self._call("GET", "/sdcpp/v1/capabilities", passthrough=(404,), timeout=5.0)
        return None if reply.status_code == 404 else dict(reply.json())

    async def probe(self) -> Probe:
        try:
            capabilities = await self._capabilities()
            if capabilities is not None:
                model = capabilities.get("model") or {}
                entries = [InventoryEntry(str(model["path"]), str(model["path"]), "checkpoint")]
                entries += [
                    InventoryEntry(str(lora.get("path")), str(lora.get("path")), "lora")
                    for lora in capabilities.get("loras") or []
                    if isinstance(lora, dict) and lora.get("path")
                ]
                return Probe(
                    True, "", str(model.get("name") or ""), tuple(entries), *OWN_NAMES
                )  # fmt: skip
            options = (await self._call("GET", "/sdapi/v1/options", timeout=5.0)).json()
        except (BackendUnavailable, BackendRejected, ValueError) as e:
            return Probe(False, str(e))
        return Probe(True, "", str(options.get("sd_model_checkpoint") or ""), None, *OWN_NAMES)

    async def run(self, attempt: Attempt) -> list[Image]:
        spec = attempt.job.spec
        if not spec.HasField("params"):
            raise BackendRejected(f"{self.config.alias} is an sd-server: it cannot run workflows")
        params = spec.params
        extra = settings(params)
        if len(params.init_images) > 1:
            raise BackendRejected(
                f"sd-server takes one init image; the job has {len(params.init_images)}"
            )
        capabilities = await self._capabilities()
        if capabilities is None:
            if extra:
                raise BackendRejected(
                    f"{self.config.alias} is an older sd-server without the /sdcpp/v1 API: "
                    f"it cannot take {', '.join(extra)} (update it, or leave them out)"
                )
            return await self._run_sdapi(params, attempt)
        model = (capabilities.get("model") or {}).get("name") or ""
        if params.model not in attempt.names:  # the library matched it by content already
            self._check_model(params.model, model)
        self._check_limits(params, capabilities.get("limits") or {})
        self._check_features(extra, capabilities.get("features") or {})
        loras = self._loras(params, capabilities.get("loras") or [], attempt.names)
        attempt.check_ours()
        reply = (
            await self._call("POST", "/sdcpp/v1/img_gen", json=native_body(params, loras, extra))
        ).json()
        self._jobs[attempt.task_id] = job_id = str(reply["id"])
        return await self._poll(attempt, job_id)

    def _learn(self, shape: tuple[Any, ...], seconds: float) -> None:
        self._took.pop(shape, None)  # the newest last: the oldest shape goes first
        self._took[shape] = seconds
        if len(self._took) > SHAPES_KEPT:
            del self._took[next(iter(self._took))]

    def _check_model(self, wanted: str, loaded: str) -> None:
        if wanted and loaded and not model_matches(loaded, wanted):
            raise BackendRejected(
                f"{self.config.alias} serves only {loaded} (sd-server loads one model at "
                f"startup), not {wanted!r}"
            )

    def _loras(
        self,
        params: queue_pb2.GenerationParams,
        listed: list[dict[str, Any]],
        known: dict[str, str],
    ) -> list[dict[str, Any]]:
        loras = []
        for lora in params.loras:
            path = known.get(lora.name) or find_lora(listed, lora.name)
            if path is None:
                names = ", ".join(str(x.get("name")) for x in listed[:5]) or "none"
                raise BackendRejected(
                    f"{self.config.alias} has no LoRA matching {lora.name!r}; it has {names}"
                )
            loras.append({"path": path, "multiplier": lora.weight, "is_high_noise": False})
        return loras

    def _check_limits(self, params: queue_pb2.GenerationParams, limits: dict[str, Any]) -> None:
        """The server's own limits (`capabilities.limits`), checked before sending.

        Raises:
            BackendRejected: naming the limit and the value asked.
        """
        asked = {
            "width": params.width or 512,
            "height": params.height or 512,
            "batch_count": (params.batch_size or 1) * (params.iterations or 1),
        }
        for field, value in asked.items():
            low, high = limits.get(f"min_{field}"), limits.get(f"max_{field}")
            if isinstance(low, int) and value < low:
                raise BackendRejected(
                    f"{self.config.alias} takes {field} {low} at least; asked {value}"
                )
            if isinstance(high, int) and high > 0 and value > high:
                raise BackendRejected(
                    f"{self.config.alias} takes {field} {high} at most; asked {value}"
                )

    def _check_features(self, extra: dict[str, Any], features: dict[str, Any]) -> None:
        """Settings of a feature the server's build lists as missing (`features`).

        Raises:
            BackendRejected: naming the setting and the feature.
        """
        for key in extra:
            feature = FEATURE_OF.get(key.split("_", 1)[0], key)
            if features and feature in FEATURES and not features.get(feature):
                raise BackendRejected(
                    f"{self.config.alias}'s sd-server build has no {feature} (extra setting {key})"
                )

    async def _poll(self, attempt: Attempt, job_id: str) -> list[Image]:
        reported_start = False
        waiting = ""  # what the job last showed while in sd-server's own queue
        delay = POLL_FIRST_S
        clock = asyncio.get_running_loop().time
        shape = _shape(attempt.job.spec.params)
        expected = self._took.get(shape)
        began = last_seen = 0.0  # when it was first / last seen generating
        while True:
            reply = await self._call("GET", f"/sdcpp/v1/jobs/{job_id}", passthrough=(404, 410))
            if reply.status_code in (404, 410):
                # The server restarted (jobs live in memory) or expired it: run it again.
                raise BackendUnavailable(f"{self.config.alias} no longer knows job {job_id}")
            job = reply.json()
            status = job.get("status")
            if status == "completed":
                if began:  # it ended between the last look and this one
                    self._learn(shape, (last_seen + clock()) / 2 - began)
                return self._decode(job, attempt.job.spec.params.seed)
            if status in ("failed", "cancelled"):
                error = job.get("error") or {}
                raise BackendRejected(
                    f"{self.config.alias}: {error.get('message') or status} "
                    f"({error.get('code') or status})"
                )
            if status == "queued":
                place = job.get("queue_position")
                note = f"queued on {self.config.alias}" + (f" (position {place})" if place else "")
                if note != waiting:
                    waiting = note
                    await attempt.stage(JobStage.WAITING_FOR_SERVER, note)
            if status == "generating":
                last_seen = clock()
                began = began or last_seen
                if not reported_start:
                    reported_start = True  # sd-server reports no steps: show that it started
                    await _started(attempt, waiting)
            pause, delay = next_look(delay, clock() - began if began else None, expected)
            await asyncio.sleep(pause)

    def _decode(self, job: dict[str, Any], seed: int) -> list[Image]:
        images = []
        encoded = sorted((job.get("result") or {}).get("images") or [], key=lambda i: i["index"])
        for item in encoded:
            data = base64.b64decode(item["b64_json"])
            index = int(item["index"])
            # For a random seed (-1) sd.cpp picks one and writes it into the image.
            used = seed + index if seed >= 0 else png.seed_in(data)
            images.append(Image(data=data, mime=mime_of(data), seed=used, keep_text_as=OWN_TEXT))
        return images

    async def _run_sdapi(self, params: queue_pb2.GenerationParams, attempt: Attempt) -> list[Image]:
        options = (await self._call("GET", "/sdapi/v1/options")).json()
        self._check_model(params.model, str(options.get("sd_model_checkpoint") or ""))
        listed = (await self._call("GET", "/sdapi/v1/loras")).json() if params.loras else []
        body = sdapi_body(params, self._loras(params, listed, {}))
        route = "img2img" if params.mode == queue_pb2.GENERATION_MODE_IMG2IMG else "txt2img"
        attempt.check_ours()
        try:
            reply = await self._call("POST", f"/sdapi/v1/{route}", json=body)
        except BackendUnavailable as e:
            if e.__cause__ is None or isinstance(e.__cause__, NotSent):
                raise  # never reached it, or it answered (5xx, 429): safe to send again
            # Sent, and no answer (a time-out, a broken connection): the server may
            # still be generating it, and this blocking route has no job to look up.
            raise BackendRejected(
                f"{e.message}; the generation may still be running there, so it is not sent again"
            ) from e
        images = sdapi_images(reply.json())
        for image in images:
            image.keep_text_as = OWN_TEXT
        return images

    async def cancel(self, attempt: Attempt) -> None:
        """Drops a queued job. A generating one cannot be stopped by sd-server (409): the
        server stays busy with it, so this returns (and its slot is free) only once that
        generation has ended; its result is discarded."""
        if await self.drop(attempt):
            return
        log.info("%s: job %s is generating and cannot be interrupted; the server counts as "
                 "busy until it ends", self.config.alias, attempt.job.id)  # fmt: skip
        job_id = self._jobs.get(attempt.task_id)
        delay = POLL_FIRST_S
        while job_id is not None:
            try:
                reply = await self._call("GET", f"/sdcpp/v1/jobs/{job_id}", passthrough=(404, 410))
            except BackendUnavailable:
                return  # the server went away, and the generation with it
            if reply.status_code in (404, 410) or reply.json().get("status") not in (
                "queued", "generating",
            ):  # fmt: skip
                return
            await asyncio.sleep(delay)
            delay = min(delay * POLL_GROWTH, POLL_SECONDS)

    async def drop(self, attempt: Attempt) -> bool:
        """Asks the server to drop the attempt's job; False when it is generating (or on
        the blocking sdapi route) and only stopping the server would end the work."""
        job_id = self._jobs.get(attempt.task_id)
        if job_id is None:
            return False  # the blocking sdapi route has no cancel
        reply = await self._call(
            "POST", f"/sdcpp/v1/jobs/{job_id}/cancel", passthrough=(404, 409, 410)
        )
        return reply.status_code != 409

    async def recover(self, attempt: Attempt) -> list[Image] | None:
        return None  # the server's job id is not kept: run the job again

    async def close(self) -> None:
        await self._client.close()
