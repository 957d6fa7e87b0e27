"""A protocol-faithful Forge/A1111 API fake (PROTOCOLS.md §1) on a loopback port.

Generation is simulated step by step (`step_seconds` each) so progress,
previews and interrupts behave as on a real server; images are real PNGs with
the `parameters` infotext, as Forge sends them.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random
import time
from typing import Any

from aiohttp import web
from PIL import Image, PngImagePlugin

from tests.fakes.loopback import LoopbackServer

CHECKPOINTS = [
    {
        "title": "sd_xl_base_1.0.safetensors [31e35c80fc]",
        "model_name": "sd_xl_base_1.0",
        "hash": "31e35c80fc",
        "sha256": "31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b",
        "filename": "C:\\sd\\models\\Stable-diffusion\\sd_xl_base_1.0.safetensors",
        "config": None,
    },
    {
        "title": "v1-5-pruned-emaonly.safetensors [6ce0161689]",
        "model_name": "v1-5-pruned-emaonly",
        "hash": "6ce0161689",
        "sha256": None,
        "filename": "C:\\sd\\models\\Stable-diffusion\\v1-5-pruned-emaonly.safetensors",
        "config": None,
    },
]


PREVIEW_STEPS = 10
SAMPLERS = [
    {"name": "Euler a", "aliases": ["k_euler_a", "k_euler_ancestral"], "options": {}},
    {"name": "Euler", "aliases": ["k_euler"], "options": {}},
    {"name": "DPM++ 2M", "aliases": ["k_dpmpp_2m"], "options": {"scheduler": "karras"}},
]
SCHEDULERS = [
    {"name": "automatic", "label": "Automatic", "aliases": None},
    {"name": "uniform", "label": "Uniform", "aliases": None},
    {"name": "karras", "label": "Karras", "aliases": None},
]


def png(color: tuple[int, int, int], infotext: str = "", size: int = 64) -> bytes:
    buffer = io.BytesIO()
    info = PngImagePlugin.PngInfo()
    if infotext:
        info.add_text("parameters", infotext)
    Image.new("RGB", (size, size), color).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def color(seed: int) -> tuple[int, int, int]:
    """A colour per seed, so different images look different (e.g. in screenshots)."""
    return (seed * 67 % 256, seed * 131 % 256, seed * 29 % 256)


class FakeForge(LoopbackServer):
    def __init__(self, step_seconds: float = 0.02) -> None:
        self.step_seconds = step_seconds
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.loaded = CHECKPOINTS[1]["title"]
        self.checkpoints = list(CHECKPOINTS)
        self.lora_list = [
            {"name": "detail", "alias": "detail", "metadata": {},
             "path": "C:\\sd\\models\\Lora\\detail.safetensors"},
        ]  # fmt: skip
        self.current_task: str | None = None
        self.finished: list[str] = []
        self.state = {"job_count": 0, "sampling_step": 0, "sampling_steps": 0}
        self.interrupted = False
        self.arrivals: list[float] = []  # wall-clock time each generation request came in
        self.departures: list[float] = []  # ... and its answer went out
        self.in_flight = 0
        self.max_in_flight = 0  # most generation requests open at once
        self.model_lists = 0  # GET /sdapi/v1/sd-models answered (each probe reads it)
        super().__init__()

    async def setup(self) -> None:
        self.lock = asyncio.Lock()

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/sdapi/v1/options", self.options)
        app.router.add_get("/sdapi/v1/sd-models", self.sd_models)
        app.router.add_get("/sdapi/v1/loras", self.loras)
        app.router.add_get("/sdapi/v1/samplers", self.samplers)
        app.router.add_get("/sdapi/v1/schedulers", self.schedulers)
        app.router.add_get("/sdapi/v1/progress", self.progress)
        app.router.add_post("/sdapi/v1/txt2img", self.generate)
        app.router.add_post("/sdapi/v1/img2img", self.generate)
        app.router.add_post("/sdapi/v1/interrupt", self.interrupt)
        app.router.add_post("/internal/progress", self.internal_progress)

    async def options(self, request: web.Request) -> web.Response:
        return web.json_response({"sd_model_checkpoint": self.loaded, "samples_format": "png"})

    async def sd_models(self, request: web.Request) -> web.Response:
        self.model_lists += 1
        return web.json_response(self.checkpoints)

    async def samplers(self, request: web.Request) -> web.Response:
        return web.json_response(SAMPLERS)

    async def schedulers(self, request: web.Request) -> web.Response:
        return web.json_response(SCHEDULERS)

    async def loras(self, request: web.Request) -> web.Response:
        return web.json_response(self.lora_list)

    async def progress(self, request: web.Request) -> web.Response:
        steps = self.state["sampling_steps"] or 1
        return web.json_response(
            {"progress": self.state["sampling_step"] / steps, "eta_relative": 0.1,
             "state": self.state, "current_image": None, "textinfo": None}
        )  # fmt: skip

    async def interrupt(self, request: web.Request) -> web.Response:
        self.requests.append(("interrupt", {}))
        self.interrupted = True
        return web.json_response({})

    async def internal_progress(self, request: web.Request) -> web.Response:
        body = await request.json()
        task = body.get("id_task")
        active = task is not None and task == self.current_task
        reply: dict[str, Any] = {"active": active, "queued": False,
                                 "completed": task in self.finished}  # fmt: skip
        if active:
            steps = self.state["sampling_steps"] or 1
            step = self.state["sampling_step"]
            left = (steps - step) * self.step_seconds
            # Like Forge: a new live preview every PREVIEW_STEPS steps (its default: 10),
            # sent only to a caller that has not seen that one yet.
            preview_id = step // PREVIEW_STEPS
            reply.update(progress=step / steps, eta=left, id_live_preview=preview_id)
            if body.get("live_preview") and body.get("id_live_preview") != preview_id:
                preview = base64.b64encode(png((9, 9, 9), size=8)).decode()
                reply["live_preview"] = f"data:image/png;base64,{preview}"
        return web.json_response(reply)

    async def generate(self, request: web.Request) -> web.Response:
        self.arrivals.append(time.time())
        body = await request.json()
        self.requests.append((request.path, body))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._generate(body)
        finally:
            self.in_flight -= 1
            self.departures.append(time.time())

    async def _generate(self, body: dict[str, Any]) -> web.Response:
        async with self.lock:  # A1111 runs one request at a time under queue_lock
            self.current_task = body.get("force_task_id")
            self.interrupted = False
            steps = int(body.get("steps") or 20)
            count = int(body.get("batch_size", 1)) * int(body.get("n_iter", 1))
            self.state = {"job_count": 1, "sampling_step": 0, "sampling_steps": steps}
            for step in range(steps):
                if self.interrupted:
                    break
                self.state["sampling_step"] = step + 1
                await asyncio.sleep(self.step_seconds)
            seed = int(body.get("seed", -1))
            seed = seed if seed >= 0 else random.randrange(2**32)  # Forge: a random seed
            seeds = [seed + i for i in range(count)]
            # Like Forge: a sampler it does not know runs as its default (HTTP 200).
            sampler = body.get("sampler_name")
            if sampler not in {str(s["name"]) for s in SAMPLERS}:
                sampler = SAMPLERS[0]["name"]
            infotexts = [
                f"{body['prompt']}\nSteps: {steps}, Sampler: {sampler}, Seed: {s}, Model: x"
                for s in seeds
            ]
            images = [base64.b64encode(png(color(s), t)).decode()
                      for s, t in zip(seeds, infotexts, strict=True)]  # fmt: skip
            self.finished.append(self.current_task or "")
            self.current_task = None
            self.state = {"job_count": 0, "sampling_step": 0, "sampling_steps": 0}
        info = {"all_seeds": seeds, "infotexts": infotexts, "index_of_first_image": 0}
        return web.json_response({"images": images, "parameters": body, "info": json.dumps(info)})

    def wait_for_task(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.current_task is None:
            if time.monotonic() > deadline:
                raise AssertionError("the fake never started a task")
            time.sleep(0.01)
