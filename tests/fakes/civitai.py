"""A Civitai API fake (PROTOCOLS.md §4) on loopback: versions by hash, previews, 404, 429."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from tests.fakes.forge import png
from tests.fakes.loopback import LoopbackServer


class FakeCivitai(LoopbackServer):
    """`versions` maps an uppercase hash (any kind) to a model-version answer."""

    def __init__(self) -> None:
        self.versions: dict[str, dict[str, Any]] = {}
        self.by_id: dict[int, dict[str, Any]] = {}
        self.requests: list[tuple[float, str, str]] = []  # (time, path, Authorization)
        self.busy = 0  # answer 429 this many times first
        super().__init__()

    @property
    def api(self) -> str:
        return self.url + "/api/v1"

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/model-versions/by-hash/{hash}", self.by_hash)
        app.router.add_get("/api/v1/model-versions/{id:\\d+}", self.version_by_id)
        app.router.add_get("/images/{name}", self.image)

    async def by_hash(self, request: web.Request) -> web.Response:
        self.requests.append(
            (time.monotonic(), request.path, request.headers.get("Authorization", ""))
        )
        if self.busy > 0:
            self.busy -= 1
            return web.Response(status=429, text="Too Many Requests")
        version = self.versions.get(request.match_info["hash"].upper())
        if version is None:
            return web.json_response({"error": "Model not found"}, status=404)
        return web.json_response(version)

    async def version_by_id(self, request: web.Request) -> web.Response:
        self.requests.append(
            (time.monotonic(), request.path, request.headers.get("Authorization", ""))
        )
        version = self.by_id.get(int(request.match_info["id"]))
        if version is None:
            return web.json_response(
                {"error": f"No model version with id {request.match_info['id']}"}, status=404
            )
        return web.json_response(version)

    async def image(self, request: web.Request) -> web.Response:
        self.requests.append((time.monotonic(), request.path, ""))
        return web.Response(body=png((200, 10, 10), size=32), content_type="image/png")

    def version(self, sha256: str, name: str, model_id: int, version_id: int) -> dict[str, Any]:
        """Registers a version for `sha256` (by SHA-256 and AutoV2, as Civitai indexes both)."""
        answer = {
            "id": version_id, "modelId": model_id, "name": "v2.0", "baseModel": "SDXL 1.0",
            "description": "<p>from civitai</p>", "trainedWords": ["castle", "moat"],
            "model": {"name": name, "type": "Checkpoint", "nsfw": False},
            "files": [{"name": "x.safetensors", "hashes": {"SHA256": sha256.upper(),
                       "AutoV2": sha256[:10].upper()}, "primary": True}],
            "images": [{"url": f"{self.url}/images/{version_id}.png", "width": 32}],
        }  # fmt: skip
        self.versions[sha256.upper()] = answer
        self.versions[sha256[:10].upper()] = answer
        return answer
