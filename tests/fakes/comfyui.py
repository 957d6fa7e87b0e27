"""A protocol-faithful ComfyUI fake (PROTOCOLS.md §6 and §11) on a loopback port.

It validates API-format prompts like ComfyUI (400 with `error` + `node_errors`),
runs one prompt at a time from its queue, streams the websocket events in the
order a real 0.3.x server sends them (client-only events to the submitting
socket, the rest broadcast; binary PREVIEW_IMAGE frames), keeps `/history`,
serves real PNGs with `prompt`/`workflow` chunks from `/view`, honours
`/queue` delete and `/interrupt {prompt_id}`, and refuses a foreign `Origin`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import struct
import time
import uuid
from typing import Any

from aiohttp import WSMsgType, web
from PIL import Image, PngImagePlugin

from tests.fakes.loopback import LoopbackServer

SAMPLERS = ["euler", "euler_ancestral", "heun", "dpm_2", "dpmpp_2m", "dpmpp_2m_sde", "ddim"]
SCHEDULERS = ["normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform"]
# class_type -> (required inputs, is an output node)
NODES: dict[str, tuple[tuple[str, ...], bool]] = {
    "CheckpointLoaderSimple": (("ckpt_name",), False),
    "LoraLoader": (("model", "clip", "lora_name", "strength_model", "strength_clip"), False),
    "CLIPTextEncode": (("text", "clip"), False),
    "EmptyLatentImage": (("width", "height", "batch_size"), False),
    "RepeatLatentBatch": (("samples", "amount"), False),
    "KSampler": (
        (
            "model",
            "seed",
            "steps",
            "cfg",
            "sampler_name",
            "scheduler",
            "positive",
            "negative",
            "latent_image",
            "denoise",
        ),
        False,
    ),
    "VAEDecode": (("samples", "vae"), False),
    "VAEEncode": (("pixels", "vae"), False),
    "LoadImage": (("image",), False),
    "EmptyImage": (("width", "height", "batch_size", "color"), False),
    "ImageInvert": (("image",), False),
    "StringConcatenate": (("string_a", "string_b", "delimiter"), False),
    "ImageBlur": (("image", "blur_radius", "sigma"), False),
    "SaveImage": (("images", "filename_prefix"), True),
    "PreviewImage": (("images",), True),
}
MINIMUMS = {"width": 16, "height": 16, "batch_size": 1, "steps": 1, "amount": 1}


def png(color: tuple[int, int, int], size: tuple[int, int], chunks: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    Image.new("RGB", size, color).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _error(kind: str, message: str, details: str = "", **extra: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


# KSampler's sampler_name and scheduler choices as ComfyUI a125cd84 lists them.
KSAMPLER_SAMPLERS = (
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2",
    "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu",
    "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm", "ipndm_v", "deis",
    "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp",
    "er_sde", "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc",
    "uni_pc_bh2",
)  # fmt: skip
KSAMPLER_SCHEDULERS = (
    "simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
    "linear_quadratic", "kl_optimal",
)  # fmt: skip


class FakeComfyUI(LoopbackServer):
    """Call `close()` to stop it; `executions` lists every prompt id it actually ran."""

    def __init__(self, step_seconds: float = 0.02, blur_seconds: float = 0.2) -> None:
        self.step_seconds = step_seconds
        self.blur_seconds = blur_seconds
        self.checkpoints = ["sd_xl_base_1.0.safetensors", "SD15\\v1-5-pruned-emaonly.safetensors",
                            "corrupt.safetensors"]  # fmt: skip
        self.loras = ["detail_tweaker.safetensors", "styles/ink.safetensors"]
        self.prompts: list[dict[str, Any]] = []  # every accepted POST /prompt body
        self.executions: list[str] = []
        self.interrupts: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.history: dict[str, dict[str, Any]] = {}
        self.files: dict[tuple[str, str, str], bytes] = {}  # (type, subfolder, name) -> bytes
        self.pending: list[list[Any]] = []
        self.running: list[Any] | None = None
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.number = 0
        self.counter = 0
        self.interrupt_flag = False
        self.last_prompt: dict[str, Any] | None = None
        super().__init__()

    async def setup(self) -> None:
        self.wakeup = asyncio.Event()
        self.worker = asyncio.create_task(self._worker())
        # As ComfyUI's PromptServer: execution only queues its messages, a publish loop
        # sends them; a client that stops reading (a frozen process) delays messages,
        # never the execution or its history.
        self.messages: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.publisher = asyncio.create_task(self._publish_loop())

    async def teardown(self) -> None:
        self.worker.cancel()
        self.publisher.cancel()
        for socket in list(self.sockets.values()):
            await socket.close()

    def middlewares(self) -> list[Any]:
        @web.middleware
        async def origin_check(request: web.Request, handler: Any) -> web.StreamResponse:
            origin = request.headers.get("Origin")
            if origin and origin.split("://", 1)[-1] != request.headers.get("Host"):
                return web.Response(status=403)
            return await handler(request)

        return [origin_check]

    def routes(self, app: web.Application) -> None:
        for prefix in ("", "/api"):  # ComfyUI serves every route bare and under /api
            app.router.add_get(prefix + "/system_stats", self.system_stats)
            app.router.add_get(prefix + "/models/{folder}", self.models)
            app.router.add_get(prefix + "/object_info/{node_class}", self.object_info)
            app.router.add_post(prefix + "/prompt", self.post_prompt)
            app.router.add_get(prefix + "/prompt", self.get_prompt)
            app.router.add_get(prefix + "/queue", self.get_queue)
            app.router.add_post(prefix + "/queue", self.post_queue)
            app.router.add_post(prefix + "/interrupt", self.interrupt)
            app.router.add_get(prefix + "/history", self.get_histories)
            app.router.add_get(prefix + "/history/{prompt_id}", self.get_history)
            app.router.add_get(prefix + "/view", self.view)
            app.router.add_post(prefix + "/upload/image", self.upload)
            app.router.add_get(prefix + "/ws", self.websocket)

    # ---- HTTP -------------------------------------------------------------

    async def system_stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"system": {"os": "posix", "comfyui_version": "0.3.64", "python_version": "3.12",
                        "pytorch_version": "2.13.0+cpu", "argv": ["main.py", "--cpu"],
                        "ram_total": 8 << 30, "ram_free": 4 << 30},
             "devices": [{"name": "cpu", "type": "cpu", "index": None}]}
        )  # fmt: skip

    async def object_info(self, request: web.Request) -> web.Response:
        """One node class's inputs ({} for a class it does not have, as ComfyUI answers);
        only KSampler here, whose combos carry the sampler and scheduler choices."""
        if request.match_info["node_class"] != "KSampler":
            return web.json_response({})
        tip = {"tooltip": "..."}
        required = {
            "model": ["MODEL", tip],
            "seed": ["INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                             "control_after_generate": True}],
            "steps": ["INT", {"default": 20, "min": 1, "max": 10000}],
            "cfg": ["FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1,
                              "round": 0.01}],
            "sampler_name": [list(KSAMPLER_SAMPLERS), tip],
            "scheduler": [list(KSAMPLER_SCHEDULERS), tip],
            "positive": ["CONDITIONING", tip],
            "negative": ["CONDITIONING", tip],
            "latent_image": ["LATENT", tip],
            "denoise": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}],
        }  # fmt: skip
        return web.json_response({"KSampler": {
            "input": {"required": required}, "input_order": {"required": list(required)},
            "output": ["LATENT"], "output_is_list": [False], "output_name": ["LATENT"],
            "name": "KSampler", "display_name": "KSampler", "description": "",
            "python_module": "nodes", "category": "sampling", "output_node": False,
            "output_tooltips": ["The denoised latent."],
        }})  # fmt: skip

    async def models(self, request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        listing = {"checkpoints": self.checkpoints, "loras": self.loras, "vae": []}
        if folder not in listing:
            return web.Response(status=404)
        return web.json_response(listing[folder])

    async def post_prompt(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return web.Response(status=500, text="500 Internal Server Error")
        if "prompt" not in body:
            error = _error("no_prompt", "No prompt provided", "No prompt provided")
            return web.json_response({"error": error, "node_errors": {}}, status=400)
        prompt = body["prompt"]
        problem = self._validate(prompt)
        if problem is not None:
            return web.json_response(problem, status=400)
        prompt_id = body.get("prompt_id") or str(uuid.uuid4())
        number = self.number
        self.number += 1
        extra = dict(body.get("extra_data") or {})
        if body.get("client_id"):
            extra["client_id"] = body["client_id"]
        outputs = [n for n, node in prompt.items() if NODES[node["class_type"]][1]]
        item = [number, prompt_id, prompt, extra, outputs]
        self.prompts.append(body)
        if body.get("front"):
            self.pending.insert(0, item)
        else:
            self.pending.append(item)
        self.wakeup.set()
        await self._send("status", self._status())
        return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": {}})

    def _validate(self, prompt: dict[str, Any]) -> dict[str, Any] | None:
        for node in prompt.values():
            kind = node.get("class_type") if isinstance(node, dict) else None
            if kind not in NODES:
                error = _error("invalid_prompt",
                               f"Cannot execute because node {kind} does not exist.",
                               f"Node ID '#{kind}'")  # fmt: skip
                return {"error": error, "node_errors": {}}
        outputs = [n for n, node in prompt.items() if NODES[node["class_type"]][1]]
        if not outputs:
            error = _error("prompt_no_outputs", "Prompt has no outputs")
            return {"error": error, "node_errors": {}}
        node_errors: dict[str, Any] = {}
        for node_id, node in prompt.items():
            errors = self._node_errors(node)
            if errors:
                node_errors[node_id] = {"errors": errors, "dependent_outputs": outputs,
                                        "class_type": node["class_type"]}  # fmt: skip
        if node_errors:
            error = _error("prompt_outputs_failed_validation", "Prompt outputs failed validation")
            return {"error": error, "node_errors": node_errors}
        return None

    def _node_errors(self, node: dict[str, Any]) -> list[dict[str, Any]]:
        inputs = node.get("inputs") or {}
        errors = []
        choices = {"ckpt_name": self.checkpoints, "lora_name": self.loras,
                   "sampler_name": SAMPLERS, "scheduler": SCHEDULERS}  # fmt: skip
        for name in NODES[node["class_type"]][0]:
            if name not in inputs:
                errors.append(_error("required_input_missing", "Required input is missing",
                                     name, input_name=name))  # fmt: skip
                continue
            value = inputs[name]
            if name in choices and value not in choices[name]:
                errors.append(_error("value_not_in_list", "Value not in list",
                                     f"{name}: '{value}' not in {choices[name]}",
                                     input_name=name, received_value=value))  # fmt: skip
            elif name in MINIMUMS and isinstance(value, int) and value < MINIMUMS[name]:
                errors.append(_error("value_smaller_than_min", "Value smaller than min",
                                     f"{name}, {value} < {MINIMUMS[name]}",
                                     input_name=name, received_value=value))  # fmt: skip
        return errors

    async def get_prompt(self, request: web.Request) -> web.Response:
        return web.json_response(self._status()["status"])

    async def get_queue(self, request: web.Request) -> web.Response:
        running = [self.running] if self.running else []
        return web.json_response({"queue_running": running, "queue_pending": self.pending})

    async def post_queue(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("clear"):
            self.pending.clear()
        for prompt_id in body.get("delete") or []:
            self.deleted.append(prompt_id)
            self.pending = [item for item in self.pending if item[1] != prompt_id]
        return web.Response(status=200)

    async def interrupt(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        self.interrupts.append(body)
        wanted = body.get("prompt_id")
        if self.running is not None and (wanted is None or wanted == self.running[1]):
            self.interrupt_flag = True
        return web.Response(status=200)

    async def get_histories(self, request: web.Request) -> web.Response:
        """ComfyUI's `get_history(max_items)`: the newest `max_items` entries, oldest first."""
        items = list(self.history.items())
        if "max_items" in request.query:
            items = items[max(0, len(items) - int(request.query["max_items"])) :]
        return web.json_response(dict(items))

    async def get_history(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry else {})

    async def view(self, request: web.Request) -> web.Response:
        name = request.query.get("filename", "")
        if name.startswith("/") or ".." in name:
            return web.Response(status=400)
        key = (request.query.get("type", "output"), request.query.get("subfolder", ""), name)
        if key not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[key], content_type="image/png")

    async def upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        image = form["image"]
        assert isinstance(image, web.FileField)
        name = image.filename
        self.files[("input", "", name)] = image.file.read()
        return web.json_response({"name": name, "subfolder": "", "type": "input"})

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        old = self.sockets.pop(sid, None)
        if old is not None:
            await old.close()
        self.sockets[sid] = socket
        try:
            await socket.send_json({"type": "status", "data": {**self._status(), "sid": sid}})
            async for message in socket:
                if message.type == WSMsgType.ERROR:
                    break
        finally:
            if self.sockets.get(sid) is socket:
                del self.sockets[sid]
        return socket

    # ---- execution --------------------------------------------------------

    def _status(self) -> dict[str, Any]:
        remaining = len(self.pending) + (1 if self.running else 0)
        return {"status": {"exec_info": {"queue_remaining": remaining}}}

    async def _send(self, kind: str, data: dict[str, Any], sid: str | None = None) -> None:
        self.messages.put_nowait(("json", kind, data, sid))

    async def _send_preview(self, sid: str | None) -> None:
        self.messages.put_nowait(("preview", sid))

    async def _publish_loop(self) -> None:
        while True:
            message = await self.messages.get()
            with contextlib.suppress(ConnectionError, RuntimeError):
                if message[0] == "json":
                    await self._deliver(*message[1:])
                else:
                    await self._deliver_preview(message[1])

    async def _deliver(self, kind: str, data: dict[str, Any], sid: str | None = None) -> None:
        """To `sid` only when given (dropped if it is not connected), else to every socket."""
        targets = (
            [self.sockets[sid]]
            if sid in self.sockets
            else []
            if sid
            else list(self.sockets.values())
        )
        for socket in targets:
            if not socket.closed:
                await socket.send_json({"type": kind, "data": data})

    async def _deliver_preview(self, sid: str | None) -> None:
        frame = struct.pack(">II", 1, 2) + png((9, 9, 9), (8, 8), {})
        targets = [self.sockets[sid]] if sid in self.sockets else list(self.sockets.values())
        for socket in targets:
            if not socket.closed:
                await socket.send_bytes(frame)

    async def _worker(self) -> None:
        while True:
            while not self.pending:
                self.wakeup.clear()
                await self.wakeup.wait()
            self.running = self.pending.pop(0)
            try:
                await self._execute(self.running)
            finally:
                self.running = None
                self.interrupt_flag = False
                await self._send("status", self._status())

    async def _execute(self, item: list[Any]) -> None:
        _, prompt_id, prompt, extra, _ = item
        sid = extra.get("client_id")
        messages: list[list[Any]] = []

        async def client_event(kind: str, data: dict[str, Any]) -> None:
            messages.append([kind, data])
            if sid:
                await self._send(kind, data, sid)

        now = lambda: int(time.time() * 1000)  # noqa: E731
        await client_event("execution_start", {"prompt_id": prompt_id, "timestamp": now()})
        if prompt == self.last_prompt:  # ComfyUI's node cache: nothing runs again
            await client_event("execution_cached", {"nodes": list(prompt), "prompt_id": prompt_id,
                                                    "timestamp": now()})  # fmt: skip
            outputs = self.history[self.last_id]["outputs"] if self.last_id else {}
            await self._finish(prompt_id, item, outputs, messages, sid, success=True)
            return
        await client_event("execution_cached", {"nodes": [], "prompt_id": prompt_id,
                                                "timestamp": now()})  # fmt: skip
        self.executions.append(prompt_id)
        values: dict[str, Any] = {}
        outputs: dict[str, Any] = {}
        for node_id in _order(prompt):
            node = prompt[node_id]
            await self._send("executing", {"node": node_id, "display_node": node_id,
                                           "prompt_id": prompt_id})  # fmt: skip
            try:
                values[node_id] = await self._run_node(node, values, prompt_id, node_id, sid)
            except _Interrupted:
                data = {"prompt_id": prompt_id, "node_id": node_id,
                        "node_type": node["class_type"], "executed": list(values),
                        "timestamp": now()}  # fmt: skip
                messages.append(["execution_interrupted", data])
                await self._send("execution_interrupted", data)
                await self._finish(prompt_id, item, outputs, messages, sid, success=False)
                return
            except RuntimeError as e:
                data = {"prompt_id": prompt_id, "node_id": node_id,
                        "node_type": node["class_type"], "executed": list(values),
                        "exception_message": str(e), "exception_type": "RuntimeError",
                        "traceback": [], "current_inputs": {}, "current_outputs": {},
                        "timestamp": now()}  # fmt: skip
                await client_event("execution_error", data)
                await self._finish(prompt_id, item, outputs, messages, sid, success=False)
                return
            if node["class_type"] in ("SaveImage", "PreviewImage"):
                outputs[node_id] = {"images": values[node_id]}
                await self._send(
                    "executed",
                    {
                        "node": node_id,
                        "display_node": node_id,
                        "output": outputs[node_id],
                        "prompt_id": prompt_id,
                    },
                )
        self.last_prompt, self.last_id = prompt, prompt_id
        await client_event("execution_success", {"prompt_id": prompt_id, "timestamp": now()})
        await self._finish(prompt_id, item, outputs, messages, sid, success=True)

    last_id: str | None = None

    async def _finish(
        self,
        prompt_id: str,
        item: list[Any],
        outputs: dict[str, Any],
        messages: list[list[Any]],
        sid: str | None,
        success: bool,
    ) -> None:
        self.history[prompt_id] = {
            "prompt": item,
            "outputs": outputs,
            "status": {"status_str": "success" if success else "error", "completed": success,
                       "messages": messages},
            "meta": {n: {"node_id": n, "display_node": n} for n in outputs},
        }  # fmt: skip
        if sid:  # the classic "done" signal, after history is written
            await self._send("executing", {"node": None, "prompt_id": prompt_id}, sid)

    async def _run_node(
        self, node: dict[str, Any], values: dict[str, Any], prompt_id: str, node_id: str,
        sid: str | None,
    ) -> Any:  # fmt: skip
        kind, inputs = node["class_type"], node["inputs"]
        args = {k: values[v[0]] if isinstance(v, list) else v for k, v in inputs.items()}
        if kind == "KSampler":
            for step in range(args["steps"]):
                if self.interrupt_flag:
                    raise _Interrupted
                await asyncio.sleep(self.step_seconds)
                await self._send(
                    "progress",
                    {
                        "value": step + 1,
                        "max": args["steps"],
                        "prompt_id": prompt_id,
                        "node": node_id,
                    },
                )
                await self._send_preview(sid)
            return {**args["latent_image"], "color": (args["seed"] % 256, 100, 0)}
        if kind == "ImageBlur":
            await asyncio.sleep(self.blur_seconds)
            if self.interrupt_flag:
                raise _Interrupted
            return args["image"]
        if kind in ("SaveImage", "PreviewImage"):
            return self._save(args["images"], args.get("filename_prefix", "ComfyUI"),
                              "output" if kind == "SaveImage" else "temp")  # fmt: skip
        return self._compute(kind, args)

    def _compute(self, kind: str, args: dict[str, Any]) -> Any:
        """Nodes that take no time: what they pass on is just size, count and colour."""
        if kind == "CheckpointLoaderSimple" and args["ckpt_name"] == "corrupt.safetensors":
            raise RuntimeError("Error while deserializing header: HeaderTooLarge")
        if kind in ("EmptyLatentImage", "EmptyImage"):
            return {"size": (args["width"], args["height"]), "count": args["batch_size"],
                    "color": (0, 0, 200)}  # fmt: skip
        if kind == "LoadImage":
            with Image.open(io.BytesIO(self.files[("input", "", args["image"])])) as image:
                return {"size": image.size, "count": 1, "color": (0, 200, 0)}
        if kind == "RepeatLatentBatch":
            return {**args["samples"], "count": args["samples"]["count"] * args["amount"]}
        if kind == "StringConcatenate":
            return f"{args['string_a']}{args['delimiter']}{args['string_b']}"
        passes = {"VAEDecode": "samples", "VAEEncode": "pixels", "ImageInvert": "image"}
        if kind in passes:
            return args[passes[kind]]
        return kind  # conditioning, LoRA-patched model/clip: nothing observable

    def _save(self, images: dict[str, Any], prefix: str, kind: str) -> list[dict[str, str]]:
        """Writes PNGs with the `prompt` (and `workflow`) chunks ComfyUI's SaveImage adds."""
        assert self.running is not None
        chunks = {"prompt": json.dumps(self.running[2])}
        pnginfo = self.running[3].get("extra_pnginfo") or {}
        if "workflow" in pnginfo:
            chunks["workflow"] = json.dumps(pnginfo["workflow"])
        saved = []
        for _ in range(images["count"]):
            self.counter += 1
            name = f"{prefix}_{self.counter:05}_.png"
            self.files[(kind, "", name)] = png(images["color"], images["size"], chunks)
            saved.append({"filename": name, "subfolder": "", "type": kind})
        return saved

    def wait_for_running(self, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while self.running is None:
            if time.monotonic() > deadline:
                raise AssertionError("the fake never started a prompt")
            time.sleep(0.01)
        return str(self.running[1])


class _Interrupted(Exception):
    pass


def _order(prompt: dict[str, Any]) -> list[str]:
    """Nodes in dependency order (inputs before the nodes that use them)."""
    ordered: list[str] = []

    def visit(node_id: str) -> None:
        if node_id in ordered:
            return
        for value in prompt[node_id]["inputs"].values():
            if isinstance(value, list) and value and str(value[0]) in prompt:
                visit(str(value[0]))
        ordered.append(node_id)

    for node_id in prompt:
        visit(node_id)
    return ordered
