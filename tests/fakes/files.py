"""A loopback file host for download tests: plain URLs with Range, the misbehaviours a
home connection meets, pre-signed redirects like Civitai's, and the Hugging Face
`resolve` endpoint as `huggingface_hub` uses it (PROTOCOLS.md §10).

- `GET /files/{name}`: the bytes of `files[name]`; `Range: bytes=N-` gives 206 with
  `Content-Range` unless `ignore_range`. `drop_after[name] = N` sends the full
  `Content-Length` then cuts the connection after N bytes (once per entry in
  `drops[name]`). `wrong[name]` serves other bytes of the same size. Every answer
  is recorded in `served` as (name, first byte, bytes sent).
- `GET /signed/{name}?sig=...`: the same file behind a pre-signed URL;
  `GET /redirect/{name}` answers 302 to it.
- `HEAD|GET /{org}/{repo}/resolve/{rev}/{path}`: Hugging Face, with `X-Repo-Commit`,
  `ETag` (the SHA-256, as the Hub gives LFS files) and `Content-Length`; files in
  `hf_redirect` answer 302 to `/signed/` with `X-Linked-Etag`/`X-Linked-Size`.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from typing import Any

from aiohttp import web

from tests.fakes.loopback import LoopbackServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FileHost(LoopbackServer):
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.drop_after: dict[str, int] = {}
        self.drops: dict[str, int] = {}
        self.wrong: set[str] = set()
        self.ignore_range = False
        self.hf_redirect: set[str] = set()
        self.delay = 0.0  # seconds between 64 KiB pieces (a slow line)
        self.served: list[tuple[str, int, int]] = []
        self.auth: list[str] = []  # Authorization headers received
        super().__init__()

    def add(self, name: str, data: bytes) -> str:
        """Serves `data` as `name`; returns its SHA-256."""
        self.files[name] = data
        return hashlib.sha256(data).hexdigest()

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/files/{name:.+}", self.file)
        app.router.add_get("/signed/{name:.+}", self.file)
        app.router.add_get("/redirect/{name:.+}", self.redirect)
        app.router.add_route("*", "/{org}/{repo}/resolve/{rev}/{path:.+}", self.resolve)
        app.router.add_get("/api/agent-harnesses", self.not_found)

    async def not_found(self, request: web.Request) -> web.Response:
        return web.Response(status=404)

    async def redirect(self, request: web.Request) -> web.Response:
        self.auth.append(request.headers.get("Authorization", ""))
        raise web.HTTPFound(f"/signed/{request.match_info['name']}?sig=secret-signature")

    async def file(self, request: web.Request) -> web.StreamResponse:
        self.auth.append(request.headers.get("Authorization", ""))
        return await self._send(request, request.match_info["name"])

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        self.auth.append(request.headers.get("Authorization", ""))
        repo = f"{request.match_info['org']}/{request.match_info['repo']}"
        name = f"{repo}/{request.match_info['path']}"
        data = self.files.get(name)
        if data is None:
            headers = {"X-Repo-Commit": COMMIT, "X-Error-Code": "EntryNotFound"}
            return web.Response(status=404, headers=headers, text="Entry not found")
        sha = hashlib.sha256(data).hexdigest()
        if name in self.hf_redirect:
            headers = {"X-Repo-Commit": COMMIT, "X-Linked-Etag": f'"{sha}"',
                       "X-Linked-Size": str(len(data)),
                       # Another host, like the Hub's CDN (huggingface_hub then drops
                       # the Authorization header and reads size and ETag from here).
                       "Location": f"http://localhost:{self.port}/signed/{name}?sig=s"}  # fmt: skip
            return web.Response(status=302, headers=headers)
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{sha}"'}
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(len(data))})
        return await self._send(request, name, headers)

    async def _send(
        self, request: web.Request, name: str, headers: dict[str, Any] | None = None
    ) -> web.StreamResponse:
        data = self.files.get(name)
        if data is None:
            return web.json_response({"error": "no such file"}, status=404)
        if name in self.wrong:
            data = bytes(b ^ 0x5A for b in data)
        start = 0
        wanted = request.headers.get("Range", "")
        response = web.StreamResponse(headers=headers or {})
        if wanted.startswith("bytes=") and not self.ignore_range:
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
            response.set_status(206)
            response.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        response.content_length = len(data) - start
        response.headers["Accept-Ranges"] = "bytes"
        await response.prepare(request)
        body = data[start:]
        cut = self.drop_after.get(name, -1)
        dropping = cut >= 0 and self.drops.get(name, 1) > 0
        if dropping:
            self.drops[name] = self.drops.get(name, 1) - 1
            body = body[:cut]
        sent = [0]
        try:
            await self._write(response, body, sent)
        finally:  # (also when the client goes away mid-file)
            self.served.append((name, start, sent[0]))
        if dropping:
            assert request.transport is not None
            request.transport.close()  # the line drops mid-file
            return response
        await response.write_eof()
        return response

    async def _write(self, response: web.StreamResponse, body: bytes, sent: list[int]) -> None:
        piece = 64 * 1024
        for at in range(0, len(body), piece):
            await response.write(body[at : at + piece])
            sent[0] += len(body[at : at + piece])
            if self.delay:
                await asyncio.sleep(self.delay)


def random_bytes(size: int, seed: int = 1) -> bytes:
    """`size` reproducible bytes that do not compress (like weights)."""
    return random.Random(seed).randbytes(size)
