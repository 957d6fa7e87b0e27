"""A protocol-faithful stable-diffusion.cpp `sd-server` fake (PROTOCOLS.md §9) on loopback.

With `native=True` it serves the async `/sdcpp/v1` API: `img_gen` answers 202
with a job id, one worker generates jobs in order, `jobs/{id}` reports
queued/generating/completed/failed/cancelled (404 unknown), `cancel` drops a
queued job and answers 409 for one that is generating, a full queue gets 429.
With `native=False` it is an older server: only the blocking `/sdapi/v1`
routes. Either way one model is fixed at startup, `<lora:…>` prompt tags are
refused and images carry the `parameters` chunk sd.cpp writes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from typing import Any

from aiohttp import web

from tests.fakes.forge import png
from tests.fakes.loopback import LoopbackServer
from tests.fakes.sdcpp_tables import SAMPLE_METHODS, SCHEDULERS

# Like the real sd-server, the fake runs its default for a name it does not know,
# without a word (`used` records what each job really ran with).


class FakeSdServer(LoopbackServer):
    def __init__(
        self,
        native: bool = True,
        model: str = "/models/sd_xl_turbo_1.0_fp16.safetensors",
        step_seconds: float = 0.01,
        max_pending: int = 8,
    ) -> None:
        self.native = native
        self.model = model
        self.step_seconds = step_seconds
        self.max_pending = max_pending
        self.loras = [{"name": "pixel-art", "path": "pixel-art.safetensors"},
                      {"name": "styles/ink", "path": "styles/ink.safetensors"}]  # fmt: skip
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.used: list[tuple[str, str]] = []  # (sampler, scheduler) each job really ran with
        self.busy_at_submit: list[bool] = []
        self.drop_connections = False  # /sdapi: close the connection, keep generating
        # `capabilities.features` as master-827 lists them for img_gen.
        self.features = {"init_image": True, "mask_image": True, "control_image": True,
                         "ip_adapter_image": True, "ref_images": True, "lora": True,
                         "vae_tiling": True, "hires": True, "cache": True,
                         "cancel_queued": True, "cancel_generating": False}  # fmt: skip
        self.jobs: dict[str, dict[str, Any]] = {}
        self.queue: list[str] = []
        self.cancels: list[tuple[str, int]] = []
        # Per completed job: seconds from its end to the first look that saw it done.
        self.seen_after: list[float] = []
        self.next_id = 0
        super().__init__()

    async def setup(self) -> None:
        self.wakeup = asyncio.Event()
        self.gpu = asyncio.Lock()
        self.worker = asyncio.create_task(self._worker())

    async def teardown(self) -> None:
        self.worker.cancel()

    def routes(self, app: web.Application) -> None:
        if self.native:
            app.router.add_get("/sdcpp/v1/capabilities", self.capabilities)
            app.router.add_post("/sdcpp/v1/img_gen", self.img_gen)
            app.router.add_get("/sdcpp/v1/jobs/{id}", self.get_job)
            app.router.add_post("/sdcpp/v1/jobs/{id}/cancel", self.cancel)
        app.router.add_get("/sdapi/v1/options", self.options)
        app.router.add_get("/sdapi/v1/loras", self.sdapi_loras)
        app.router.add_post("/sdapi/v1/txt2img", self.txt2img)
        app.router.add_post("/sdapi/v1/img2img", self.txt2img)

    @property
    def model_name(self) -> str:
        return self.model.rsplit("/", 1)[-1]

    # ---- native API -------------------------------------------------------

    async def capabilities(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"model": {"name": self.model_name, "stem": self.model_name.rsplit(".", 1)[0],
                       "path": self.model},
             "current_mode": "img_gen", "supported_modes": ["img_gen"],
             "samplers": SAMPLE_METHODS, "schedulers": SCHEDULERS, "loras": self.loras,
             "output_formats": ["png", "jpeg"],
             "features": self.features,
             "limits": {"min_width": 64, "max_width": 4096, "min_height": 64,
                        "max_height": 4096, "max_batch_count": 8,
                        "max_queue_size": self.max_pending}}
        )  # fmt: skip

    async def img_gen(self, request: web.Request) -> web.Response:
        if not await request.read():
            return web.json_response({"error": "empty body"}, status=400)
        try:
            body = await request.json()
        except json.JSONDecodeError as e:
            return web.json_response({"error": "invalid json", "message": str(e)}, status=400)
        self.requests.append((request.path, body))
        if not self._valid(body):
            return web.json_response({"error": "invalid generation parameters"}, status=400)
        # Whether a generation was running when this one came (tests of "busy").
        self.busy_at_submit.append(any(j["status"] == "generating" for j in self.jobs.values()))
        sample = body.get("sample_params") or {}
        self.used.append((
            sample.get("sample_method") if sample.get("sample_method") in SAMPLE_METHODS
            else "euler_a",
            sample.get("scheduler") if sample.get("scheduler") in SCHEDULERS else "discrete",
        ))  # fmt: skip
        pending = [j for j in self.jobs.values() if j["status"] in ("queued", "generating")]
        if len(pending) >= self.max_pending:
            return web.json_response({"error": "job queue is full"}, status=429)
        job_id = f"job_{int(time.time()):x}_{self.next_id:08x}"
        self.next_id += 1
        self.jobs[job_id] = {"id": job_id, "kind": "img_gen", "status": "queued",
                             "created": int(time.time()), "started": None, "completed": None,
                             "body": body}  # fmt: skip
        self.queue.append(job_id)
        self.wakeup.set()
        return web.json_response(
            {"id": job_id, "kind": "img_gen", "status": "queued",
             "created": self.jobs[job_id]["created"], "poll_url": f"/sdcpp/v1/jobs/{job_id}"},
            status=202,
        )  # fmt: skip

    def _valid(self, body: dict[str, Any]) -> bool:
        if not body.get("prompt") or "<lora:" in body["prompt"]:
            return False
        known = {lora["path"] for lora in self.loras}
        return all(item.get("path") in known for item in body.get("lora") or [])

    async def get_job(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return web.json_response({"error": "job not found"}, status=404)
        if job["status"] == "completed" and "seen" not in job:
            job["seen"] = True
            self.seen_after.append(time.monotonic() - job["done_at"])
        hidden = ("body", "images", "error_message", "done_at", "seen")
        reply = {k: v for k, v in job.items() if k not in hidden}
        reply["queue_position"] = self.queue.index(job["id"]) + 1 if job["id"] in self.queue else 0
        reply["result"] = None
        reply["error"] = None
        if job["status"] == "completed":
            reply["result"] = {"output_format": "png",
                               "images": [{"index": i, "b64_json": b}
                                          for i, b in enumerate(job["images"])]}  # fmt: skip
        elif job["status"] in ("failed", "cancelled"):
            reply["error"] = {"code": "generation_failed" if job["status"] == "failed"
                              else "cancelled", "message": job["error_message"]}  # fmt: skip
        return web.json_response(reply)

    async def cancel(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return web.json_response({"error": "job not found"}, status=404)
        if job["status"] == "generating":
            self.cancels.append((job["id"], 409))
            error = {"error": "job is currently generating and cannot be interrupted yet"}
            return web.json_response(error, status=409)
        if job["status"] == "queued":
            self.queue.remove(job["id"])
            job.update(status="cancelled", completed=int(time.time()),
                       error_message="job cancelled by client")  # fmt: skip
        self.cancels.append((job["id"], 200))
        return await self.get_job(request)

    async def _worker(self) -> None:
        while True:
            while not self.queue:
                self.wakeup.clear()
                await self.wakeup.wait()
            job = self.jobs[self.queue.pop(0)]
            job.update(status="generating", started=int(time.time()))
            try:
                job["images"] = await self._generate(job["body"])
                job["status"], job["done_at"] = "completed", time.monotonic()
            except RuntimeError as e:
                job.update(status="failed", error_message=str(e))
            job["completed"] = int(time.time())

    async def _generate(self, body: dict[str, Any]) -> list[str]:
        """Base64 PNGs with sd.cpp's `parameters` chunk, after `steps` simulated steps."""
        if "FAIL" in body["prompt"]:
            raise RuntimeError("generate_image returned no results")
        sample = body.get("sample_params") or {}
        steps = int(sample.get("sample_steps") or body.get("steps") or 20)
        count = int(body.get("batch_count") or body.get("batch_size") or 1)
        seed = int(body.get("seed", 42))
        seed = seed if seed >= 0 else random.randrange(2**31)  # sd.cpp picks one
        async with self.gpu:
            await asyncio.sleep(steps * self.step_seconds)
        images = []
        for i in range(count):
            text = (
                f"{body['prompt']}\nSteps: {steps}, Seed: {seed + i}, "
                f"Model: {self.model_name.rsplit('.', 1)[0]}, Version: stable-diffusion.cpp"
            )
            images.append(base64.b64encode(png((0, 120, i * 30 % 255), text)).decode())
        return images  # fmt: skip

    # ---- A1111-style API ------------------------------------------------------

    async def options(self, request: web.Request) -> web.Response:
        return web.json_response({"samples_format": "png", "sd_model_checkpoint": self.model_name})

    async def sdapi_loras(self, request: web.Request) -> web.Response:
        return web.json_response(self.loras)

    async def txt2img(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((request.path, body))
        if not self._valid(body):
            return web.json_response({"error": "invalid request"}, status=400)
        if self.drop_connections:  # the connection breaks while it generates on
            assert request.transport is not None
            request.transport.close()
            await self._generate(body)
            return web.Response(status=200)
        try:
            images = await self._generate(body)
        except RuntimeError as e:
            return web.json_response({"error": "server_error", "message": str(e)}, status=500)
        seed = int(body.get("seed", 42))
        seed = seed if seed >= 0 else random.randrange(2**31)  # sd.cpp picks one
        info = {"all_seeds": [seed + i for i in range(len(images))], "index_of_first_image": 0}
        return web.json_response({"images": images, "parameters": body, "info": json.dumps(info)})
