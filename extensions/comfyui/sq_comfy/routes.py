"""HTTP routes under /stablequeue/ on ComfyUI's own server (`PromptServer.instance`).

Every error is JSON `{"error": message}` with a fitting status, for the page's toast.
Queue changes are pushed to the page as a `stablequeue.queue` websocket event
(through `PromptServer.send_sync`); the page then reads `GET /stablequeue/jobs`.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import web
from sq_comfy import settings as config
from sq_comfy.inventory import Syncer
from sq_comfy.models import HashCache, references

from stablequeue import StableQueueError, workflow
from stablequeue.dashboard.feed import ACTIONS, QueueFeed, perform, unreachable
from stablequeue.text import describe, stage_name, status_name
from stablequeue.v1 import queue_pb2

log = logging.getLogger("stablequeue")
TARGETS = ("any", "this")
SEED_MODES = ("increment", "random", "fixed")
MAX_COUNT = 100
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def coordinator_error(settings: config.Settings, e: StableQueueError) -> web.Response:
    status = {
        grpc.StatusCode.UNAVAILABLE: 502,
        grpc.StatusCode.DEADLINE_EXCEEDED: 504,
        grpc.StatusCode.UNAUTHENTICATED: 401,
        grpc.StatusCode.PERMISSION_DENIED: 403,
        grpc.StatusCode.NOT_FOUND: 404,
        grpc.StatusCode.INVALID_ARGUMENT: 400,
        grpc.StatusCode.FAILED_PRECONDITION: 409,
    }.get(e.code, 502)
    return error(status, unreachable(settings.address or "SQ_ADDR", e))


def job_json(job: queue_pb2.Job) -> dict[str, Any]:
    """What the sidebar shows of a job."""
    return {
        "id": job.id,
        "status": status_name(job).lower(),
        "stage": stage_name(job),
        "reason": job.reason,
        "progress": round(job.progress.fraction, 4),
        "step": job.progress.step,
        "steps": job.progress.total_steps,
        "has_preview": bool(job.progress.preview_image),
        "server": job.server,
        "target": job.spec.target_server,
        "priority": job.spec.priority,
        "label": job.spec.label,
        "summary": describe(job, 80),
        "results": [{"id": r.id, "filename": r.filename, "mime": r.mime} for r in job.results],
    }


@dataclass(frozen=True)
class QueueRequest:
    """The options of POST /stablequeue/queue, checked (ValueError names the field)."""

    target: str
    priority: int
    count: int
    seed_mode: str
    label: str
    ui_workflow: dict[str, Any] | None

    @classmethod
    def parse(cls, body: dict[str, Any], settings: config.Settings) -> QueueRequest:
        target = body.get("target", "any")
        if not isinstance(target, str) or not target:
            raise ValueError("target: 'any', 'this' or a server alias")
        if target == "this":
            if not settings.alias:
                raise ValueError("target 'this': set this server's alias in the settings")
            target = settings.alias
        priority = body.get("priority", settings.priority)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ValueError("priority: a whole number within -1000 .. 1000")
        count = body.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
            raise ValueError(f"count: a whole number within 1 .. {MAX_COUNT}")
        seed_mode = body.get("seed_mode", "increment")
        if seed_mode not in SEED_MODES:
            raise ValueError(f"seed_mode: one of {', '.join(SEED_MODES)}")
        label = body.get("label") or "ComfyUI workflow"
        if not isinstance(label, str):
            raise ValueError("label: a string")
        ui_workflow = body.get("workflow")
        if ui_workflow is not None and not isinstance(ui_workflow, dict):
            raise ValueError("workflow: the UI workflow (app.graphToPrompt().workflow)")
        return cls(target, priority, count, seed_mode, label[:200], ui_workflow)


class Extension:
    """The routes and the background work, bound to one PromptServer."""

    def __init__(self, server: Any) -> None:
        self.server = server
        # Beside the settings file: the hashes outlive restarts, never the model files.
        self.cache = HashCache(config.path().parent / "stablequeue-hashes.json")
        self.syncer = Syncer(self.cache)
        # A queued prompt's files were just hashed: the coordinator needs those hashes
        # in this server's inventory before it can run the job here.
        self.cache.on_hashed = self.syncer.now
        self.feed: QueueFeed | None = None
        self._bridge: threading.Thread | None = None

    # ---- the queue feed, pushed to the page -------------------------------

    def ensure_feed(self) -> QueueFeed:
        if self.feed is None:
            self.feed = QueueFeed(lambda: config.load().client()).start()
            self._bridge = threading.Thread(target=self._push, name="sq-push", daemon=True)
            self._bridge.start()
        return self.feed

    def _push(self) -> None:
        seen = -1
        feed = self.feed
        assert feed is not None
        while not feed.stopped:
            version = feed.wait(seen, 30.0)
            if version != seen:
                seen = version
                self.server.send_sync("stablequeue.queue", {"version": version})

    def stop(self) -> None:
        if self.feed is not None:
            self.feed.stop()
        self.syncer.stop()

    # ---- routes -------------------------------------------------------------

    def add_routes(self) -> None:
        routes = self.server.routes
        routes.post("/stablequeue/queue")(self.queue)
        routes.get("/stablequeue/jobs")(self.jobs)
        routes.get("/stablequeue/jobs/{id}/preview")(self.preview)
        routes.post("/stablequeue/jobs/{id}/{action}")(self.act)
        routes.post("/stablequeue/pause")(self.pause)
        routes.post("/stablequeue/resume")(self.resume)
        routes.get("/stablequeue/results/{id}")(self.result)
        routes.get("/stablequeue/settings")(self.get_settings)
        routes.post("/stablequeue/settings")(self.set_settings)
        routes.post("/stablequeue/models")(self.models)
        routes.route("*", "/stablequeue/{tail:.*}")(self.unknown)

    async def unknown(self, request: web.Request) -> web.Response:
        return error(404, f"no StableQueue route {request.method} {request.path}")

    @staticmethod
    async def body(request: web.Request) -> dict[str, Any]:
        try:
            value = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise web.HTTPBadRequest(
                text=json.dumps({"error": "the body must be a JSON object"}),
                content_type="application/json",
            ) from None
        if not isinstance(value, dict):
            raise web.HTTPBadRequest(
                text=json.dumps({"error": "the body must be a JSON object"}),
                content_type="application/json",
            )
        return value

    async def models(self, request: web.Request) -> web.Response:
        """The model files a prompt names, with their hashes (computed if needed)."""
        body = await self.body(request)
        prompt = body.get("prompt")
        if not isinstance(prompt, dict) or not prompt:
            return error(400, "prompt: the API-format prompt (app.graphToPrompt().output)")
        found = references(prompt)
        hashes = await self.cache.ensure([r.path for r in found])
        return web.json_response(
            {
                "models": [
                    {"folder": r.folder, "name": r.name, "sha256": hashes[r.path]} for r in found
                ]
            }
        )

    async def queue(self, request: web.Request) -> web.Response:
        """Submits the page's prompt: {prompt, workflow?, target?, priority?, count?,
        seed_mode?, label?}. Model files it names go with their hashes."""
        body = await self.body(request)
        settings = config.load()
        prompt = body.get("prompt")
        if not isinstance(prompt, dict) or not prompt:
            return error(400, "prompt: the API-format prompt (app.graphToPrompt().output)")
        return await self._submit(body, prompt, settings)

    async def _submit(
        self, body: dict[str, Any], prompt: dict[str, Any], settings: config.Settings
    ) -> web.Response:
        try:
            ask = QueueRequest.parse(body, settings)
        except ValueError as e:
            return error(400, str(e))
        target, priority, count, seed_mode = ask.target, ask.priority, ask.count, ask.seed_mode
        label, ui_workflow = ask.label, ask.ui_workflow
        found = references(prompt)
        hashes = await self.cache.ensure([r.path for r in found])
        spec = workflow(
            prompt, server="" if target == "any" else target, priority=priority, label=label[:200]
        )
        for ref in found:
            spec.models.add(folder=ref.folder, name=ref.name, sha256=hashes[ref.path])
        if ui_workflow:
            spec.comfy_ui_workflow = json.dumps(ui_workflow)

        def submit() -> list[queue_pb2.Job]:
            with settings.client() as client:
                if count > 1:
                    return client.submit_many(spec, count, seed_mode)
                return [client.submit(spec)]

        try:
            jobs = await asyncio.get_running_loop().run_in_executor(None, submit)
        except StableQueueError as e:
            return coordinator_error(settings, e)
        self.ensure_feed()
        return web.json_response(
            {
                "jobs": [j.id for j in jobs],
                "models": [
                    {"folder": m.folder, "name": m.name, "sha256": m.sha256} for m in spec.models
                ],
            }
        )

    async def jobs(self, request: web.Request) -> web.Response:
        feed = self.ensure_feed()
        return web.json_response(
            {
                "connected": feed.connected,
                "error": feed.error,
                "paused": feed.stats.paused,
                "version": feed.version,
                "jobs": [job_json(j) for j in feed.ordered()],
            }
        )

    async def preview(self, request: web.Request) -> web.Response:
        job = self.ensure_feed().jobs.get(request.match_info["id"])
        if job is None or not job.progress.preview_image:
            return error(404, "no preview for this job (yet)")
        mime = job.progress.preview_mime or "image/png"
        return web.Response(body=job.progress.preview_image, content_type=mime)

    async def _call(self, verb: str, job_id: str, value: Any = None) -> web.Response:
        settings = config.load()

        def run() -> str:
            with settings.client() as client:
                return perform(client, verb, job_id, value)

        try:
            said = await asyncio.get_running_loop().run_in_executor(None, run)
        except StableQueueError as e:
            return coordinator_error(settings, e)
        return web.json_response({"message": said})

    async def act(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        if action not in ACTIONS or action in ("pause", "resume"):
            names = ", ".join(a for a in ACTIONS if a not in ("pause", "resume"))
            return error(404, f"unknown action {action!r}; one of {names}")
        value = None
        if action == "priority":
            value = (await self.body(request)).get("priority")
            if isinstance(value, bool) or not isinstance(value, int):
                return error(400, "priority: a whole number within -1000 .. 1000")
        return await self._call(action, request.match_info["id"], value)

    async def pause(self, request: web.Request) -> web.Response:
        return await self._call("pause", "")

    async def resume(self, request: web.Request) -> web.Response:
        return await self._call("resume", "")

    async def result(self, request: web.Request) -> web.Response:
        """A result image as stored (ComfyUI's own PNG chunks kept)."""
        settings = config.load()

        def fetch() -> tuple[bytes, str]:
            sink = io.BytesIO()
            with settings.client() as client:
                record = client.download_result(request.match_info["id"], sink)
            return sink.getvalue(), record.mime or "image/png"

        try:
            data, mime = await asyncio.get_running_loop().run_in_executor(None, fetch)
        except StableQueueError as e:
            return coordinator_error(settings, e)
        return web.Response(body=data, content_type=mime)

    async def get_settings(self, request: web.Request) -> web.Response:
        return web.json_response(config.load().public())

    async def set_settings(self, request: web.Request) -> web.Response:
        body = await self.body(request)
        try:
            updated = config.checked(config.load(), body)
        except config.SettingsError as e:
            return error(400, str(e))
        config.save(updated)
        self.syncer.now()
        return web.json_response(updated.public())


def setup(server: Any) -> Extension:
    """Adds the routes to ComfyUI's server and starts the model sync."""
    extension = Extension(server)
    extension.add_routes()
    extension.syncer.start()
    return extension
