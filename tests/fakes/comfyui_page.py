"""ComfyUI's own page, served the way ComfyUI 0.3.64 serves it, over the ComfyUI fake.

The frontend is the real one: the `comfyui-frontend-package` wheel from PyPI (the
version ComfyUI pins, 1.27.10, and a current one), unpacked into a cache outside the
checkout. Around it, the routes the page calls while it boots and runs, answered as
ComfyUI answers them (seen on a running ComfyUI 0.3.64, PROTOCOLS.md §6 and §12):
users, settings, userdata, i18n, extensions (the frontend's core files and custom
nodes' web files), object_info for the nodes of ComfyUI's default workflow, and the
fake's /prompt, /queue, /history, /view and websocket. Custom-node routes (our
extension's, from the stand-in `server.PromptServer`) are served bare and under /api,
and what the extension pushes with `send_sync` goes out over the page's websocket.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes.comfyui import SAMPLERS, SCHEDULERS, FakeComfyUI

CACHE = Path.home() / ".cache" / "stablequeue-tests" / "comfyui-frontend"
PINNED = "1.27.10"  # ComfyUI 0.3.64's requirements.txt
CURRENT = "1.58.1"  # the newest on PyPI when this was written


def frontend(version: str) -> Path:
    """The frontend's static folder for `version`, downloaded from PyPI once.

    Raises:
        RuntimeError: pip could not fetch it (the message says why).
    """
    target = CACHE / version
    static = target / "comfyui_frontend_package" / "static"
    if (static / "index.html").is_file():
        return static
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    spec = f"comfyui-frontend-package=={version}"
    ran = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels), spec],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    found = sorted(wheels.glob(f"comfyui_frontend_package-{version}-*.whl"))
    if ran.returncode != 0 or not found:
        raise RuntimeError(f"pip download {spec} failed: {ran.stderr.strip()[-500:]}")
    partial = target.with_name(f".{version}.partial")
    with zipfile.ZipFile(found[0]) as wheel:
        wheel.extractall(partial)
    partial.rename(target)
    return static


def _int(default: int, low: int, high: int, **extra: Any) -> list[Any]:
    return ["INT", {"default": default, "min": low, "max": high, **extra}]


def object_info(checkpoints: list[str]) -> dict[str, Any]:
    """GET /object_info for the nodes of ComfyUI's default workflow, as 0.3.64 answers
    (the seed input declares control_after_generate, which makes the page add the
    "control after generate" widget)."""

    def node(name: str, display: str, required: dict[str, Any], output: list[str],
             category: str, output_node: bool = False) -> dict[str, Any]:  # fmt: skip
        return {
            "input": {"required": required},
            "input_order": {"required": list(required)},
            "output": output,
            "output_is_list": [False] * len(output),
            "output_name": output,
            "name": name,
            "display_name": display,
            "description": "",
            "python_module": "nodes",
            "category": category,
            "output_node": output_node,
        }

    # The core loaders the frontend maps model folders to (its model library and
    # asset checks look them up; ComfyUI always has them): one file list each.
    loaders = {
        "ImageOnlyCheckpointLoader": ("ckpt_name", checkpoints, ["CLIP_VISION", "MODEL", "VAE"]),
        "LoraLoaderModelOnly": ("lora_name", [], ["MODEL"]),
        "VAELoader": ("vae_name", [], ["VAE"]),
        "ControlNetLoader": ("control_net_name", [], ["CONTROL_NET"]),
        "UNETLoader": ("unet_name", [], ["MODEL"]),
        "UpscaleModelLoader": ("model_name", [], ["UPSCALE_MODEL"]),
        "StyleModelLoader": ("style_model_name", [], ["STYLE_MODEL"]),
        "GLIGENLoader": ("gligen_name", [], ["GLIGEN"]),
        "CLIPVisionLoader": ("clip_name", [], ["CLIP_VISION"]),
    }
    found = {
        name: node(name, name, {key: [files, {}]}, outputs, "loaders")
        for name, (key, files, outputs) in loaders.items()
    }
    found["LoraLoader"] = node(
        "LoraLoader", "Load LoRA",
        {"model": ["MODEL", {}], "clip": ["CLIP", {}], "lora_name": [[], {}],
         "strength_model": ["FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01}],
         "strength_clip": ["FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01}]},
        ["MODEL", "CLIP"], "loaders",
    )  # fmt: skip
    return found | {
        "CheckpointLoaderSimple": node(
            "CheckpointLoaderSimple",
            "Load Checkpoint",
            {"ckpt_name": [checkpoints, {}]},
            ["MODEL", "CLIP", "VAE"],
            "loaders",
        ),
        "CLIPTextEncode": node(
            "CLIPTextEncode",
            "CLIP Text Encode (Prompt)",
            {"text": ["STRING", {"multiline": True, "dynamicPrompts": True}], "clip": ["CLIP", {}]},
            ["CONDITIONING"],
            "conditioning",
        ),
        "EmptyLatentImage": node(
            "EmptyLatentImage",
            "Empty Latent Image",
            {
                "width": _int(512, 16, 16384, step=8),
                "height": _int(512, 16, 16384, step=8),
                "batch_size": _int(1, 1, 4096),
            },
            ["LATENT"],
            "latent",
        ),
        "KSampler": node(
            "KSampler",
            "KSampler",
            {
                "model": ["MODEL", {}],
                "seed": _int(0, 0, 18446744073709551615, control_after_generate=True),
                "steps": _int(20, 1, 10000),
                "cfg": [
                    "FLOAT",
                    {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01},
                ],
                "sampler_name": [SAMPLERS, {}],
                "scheduler": [SCHEDULERS, {}],
                "positive": ["CONDITIONING", {}],
                "negative": ["CONDITIONING", {}],
                "latent_image": ["LATENT", {}],
                "denoise": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}],
            },
            ["LATENT"],
            "sampling",
        ),
        "VAEDecode": node(
            "VAEDecode",
            "VAE Decode",
            {"samples": ["LATENT", {}], "vae": ["VAE", {}]},
            ["IMAGE"],
            "latent",
        ),
        "SaveImage": node(
            "SaveImage",
            "Save Image",
            {"images": ["IMAGE", {}], "filename_prefix": ["STRING", {"default": "ComfyUI"}]},
            [],
            "image",
            output_node=True,
        ),
    }


class ComfyUIPage(FakeComfyUI):
    """ComfyUI with its real frontend (`static`) and custom nodes' routes and web
    folders (`custom`: folder name -> (PromptServer stand-in or None, web folder))."""

    def __init__(self, static: Path, custom: dict[str, tuple[Any, Path]]) -> None:
        self.static, self.custom = static, custom
        self.settings: dict[str, Any] = {"Comfy.TutorialCompleted": True}
        self.userdata: dict[str, bytes] = {}
        super().__init__()
        for prompt_server, _ in custom.values():
            if prompt_server is not None:  # send_sync -> the page's websocket
                prompt_server.forward = self._forward

    def _forward(self, event: str, data: Any, sid: str | None) -> None:
        self.loop.call_soon_threadsafe(lambda: self.loop.create_task(self._send(event, data, sid)))

    def routes(self, app: web.Application) -> None:
        super().routes(app)
        for prefix in ("", "/api"):
            app.router.add_get(prefix + "/users", self.users)
            app.router.add_get(prefix + "/settings", self.get_settings)
            app.router.add_post(prefix + "/settings", self.post_settings)
            app.router.add_get(prefix + "/settings/{id}", self.get_setting)
            app.router.add_post(prefix + "/settings/{id}", self.post_setting)
            app.router.add_get(prefix + "/userdata", self.list_userdata)
            app.router.add_get(prefix + "/userdata/{file}", self.get_userdata)
            app.router.add_post(prefix + "/userdata/{file}", self.post_userdata)
            app.router.add_get(prefix + "/i18n", self.empty_object)
            app.router.add_get(prefix + "/features", self.features)
            app.router.add_get(prefix + "/extensions", self.extensions)
            app.router.add_get(prefix + "/object_info", self.get_object_info)
            app.router.add_get(prefix + "/embeddings", self.empty_list)
            app.router.add_get(prefix + "/experiment/models", self.empty_list)
            app.router.add_get(prefix + "/workflow_templates", self.empty_object)
            app.router.add_get(prefix + "/global_subgraphs", self.empty_object)
        app.router.add_get("/internal/folder_paths", self.empty_object)
        for name, (prompt_server, web_dir) in self.custom.items():
            app.router.add_static(f"/extensions/{name}/", web_dir)
            if prompt_server is not None:
                for route in prompt_server.routes:
                    if isinstance(route, web.RouteDef):
                        app.router.add_route(route.method, route.path, route.handler)
                        app.router.add_route(route.method, "/api" + route.path, route.handler)
        app.router.add_get("/", self.index)
        app.router.add_static("/", self.static)

    async def index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(self.static / "index.html", headers={"Cache-Control": "no-cache"})

    async def users(self, request: web.Request) -> web.Response:
        return web.json_response({"storage": "server", "migrated": True})

    async def get_settings(self, request: web.Request) -> web.Response:
        return web.json_response(self.settings)

    async def post_settings(self, request: web.Request) -> web.Response:
        self.settings.update(await request.json())
        return web.Response(status=200)

    async def get_setting(self, request: web.Request) -> web.Response:
        return web.json_response(self.settings.get(request.match_info["id"]))

    async def post_setting(self, request: web.Request) -> web.Response:
        self.settings[request.match_info["id"]] = await request.json()
        return web.Response(status=200)

    async def list_userdata(self, request: web.Request) -> web.Response:
        folder = request.query.get("dir", "").strip("/")
        names = [n.removeprefix(folder + "/") for n in self.userdata if n.startswith(folder + "/")]
        if not names:
            return web.Response(status=404, text="Directory not found")
        return web.json_response(names)

    async def get_userdata(self, request: web.Request) -> web.Response:
        data = self.userdata.get(request.match_info["file"])
        return web.Response(body=data) if data is not None else web.Response(status=404)

    async def post_userdata(self, request: web.Request) -> web.Response:
        self.userdata[request.match_info["file"]] = await request.read()
        return web.json_response({"path": request.match_info["file"]})

    async def empty_object(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def empty_list(self, request: web.Request) -> web.Response:
        return web.json_response([])

    async def features(self, request: web.Request) -> web.Response:
        return web.json_response({"supports_preview_metadata": False, "max_upload_size": 100 << 20})

    async def extensions(self, request: web.Request) -> web.Response:
        """Every .js file of the frontend's own extensions and of custom nodes' web folders."""
        core = self.static / "extensions"
        files = [f"/extensions/{p.relative_to(core).as_posix()}" for p in core.rglob("*.js")]
        for name, (_, web_dir) in self.custom.items():
            files += [f"/extensions/{name}/{p.relative_to(web_dir).as_posix()}"
                      for p in web_dir.rglob("*.js")]  # fmt: skip
        return web.json_response(files)

    async def get_object_info(self, request: web.Request) -> web.Response:
        return web.json_response(object_info(self.checkpoints))


def default_workflow(checkpoint: str) -> dict[str, Any]:
    """ComfyUI's default graph (as frontend 1.27 draws it) in the UI workflow format:
    checkpoint → two prompts → empty latent → KSampler (seed: randomize) → decode → save."""
    nodes = [
        (4, "CheckpointLoaderSimple", [checkpoint], [],
         [("MODEL", [1]), ("CLIP", [3, 5]), ("VAE", [8])]),
        (6, "CLIPTextEncode", ["a lighthouse at dusk"], [("clip", 3)], [("CONDITIONING", [4])]),
        (7, "CLIPTextEncode", ["blurry"], [("clip", 5)], [("CONDITIONING", [6])]),
        (5, "EmptyLatentImage", [64, 64, 1], [], [("LATENT", [2])]),
        (3, "KSampler", [156680208700286, "randomize", 2, 8, "euler", "normal", 1],
         [("model", 1), ("positive", 4), ("negative", 6), ("latent_image", 2)], [("LATENT", [7])]),
        (8, "VAEDecode", [], [("samples", 7), ("vae", 8)], [("IMAGE", [9])]),
        (9, "SaveImage", ["ComfyUI"], [("images", 9)], []),
    ]  # fmt: skip
    types = {"model": "MODEL", "clip": "CLIP", "positive": "CONDITIONING",
             "negative": "CONDITIONING", "latent_image": "LATENT", "samples": "LATENT",
             "vae": "VAE", "images": "IMAGE"}  # fmt: skip
    links: list[list[Any]] = []
    ui_nodes = []
    for order, (node_id, kind, values, inputs, outputs) in enumerate(nodes):
        ui_nodes.append({
            "id": node_id, "type": kind, "pos": [100 + 260 * (order % 4), 100 + 300 * (order // 4)],
            "size": [240, 160], "flags": {}, "order": order, "mode": 0,
            "inputs": [{"name": n, "type": types[n], "link": link} for n, link in inputs],
            "outputs": [{"name": t, "type": t, "links": ids, "slot_index": i}
                        for i, (t, ids) in enumerate(outputs)],
            "properties": {"Node name for S&R": kind}, "widgets_values": values,
        })  # fmt: skip
    sources = {
        link: (n[0], slot) for n in nodes for slot, (_, ids) in enumerate(n[4]) for link in ids
    }
    for node_id, _, _, inputs, _ in nodes:
        for slot, (name, link) in enumerate(inputs):
            origin, origin_slot = sources[link]
            links.append([link, origin, origin_slot, node_id, slot, types[name]])
    return {"last_node_id": 9, "last_link_id": 9, "nodes": ui_nodes, "links": sorted(links),
            "groups": [], "config": {}, "extra": {}, "version": 0.4}  # fmt: skip
