"""The download queue: each download a stored record with a state, bytes, speed and ETA;
at most `concurrency` at once; unfinished ones resume after a restart; finished
files registered in the library with the hashes computed on the way in.

A download for a node is carried out by its agent (DownloadCommand) with the same
downloader; its DownloadUpdate messages keep the record.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlmodel import Session, col, select

from stablequeue.v1 import models_pb2, processes_pb2
from stablequeue_coordinator.common import Background, timestamp, utcnow
from stablequeue_coordinator.downloads import sources
from stablequeue_coordinator.downloads.fetch import DownloadFailed, confined, shown_url
from stablequeue_coordinator.errors import FailedPrecondition, InvalidArgument, NotFound
from stablequeue_coordinator.library.civitai import CivitaiClient
from stablequeue_coordinator.library.hashing import FileHashes
from stablequeue_coordinator.library.service import ModelLibrary
from stablequeue_coordinator.statemachine import Machine
from stablequeue_coordinator.store.db import Database
from stablequeue_coordinator.store.tables import DownloadRow, ModelRow

log = logging.getLogger(__name__)


class DownloadState(StrEnum):
    QUEUED = "queued"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


_RUNNING = (DownloadState.QUEUED, DownloadState.DOWNLOADING, DownloadState.VERIFYING)
# Unfinished states move among themselves (a restart re-queues; a download of several
# files verifies one and fetches the next; an agent repeats its state with progress)
# and to any end; an end is final.
DOWNLOAD: Machine[DownloadState] = Machine.of(
    "download", {**{state: set(DownloadState) for state in _RUNNING},
                 **{state: set() for state in set(DownloadState) - set(_RUNNING)}},
)  # fmt: skip
TERMINAL = DOWNLOAD.terminal
STATES = {
    state.value: getattr(models_pb2, f"DOWNLOAD_STATE_{state.name}") for state in DownloadState
}
NAMES = {number: DownloadState(name) for name, number in STATES.items()}
SAVE_EVERY_S = 2.0  # progress written to the store (a restart shows where it was)
WATCH_EVERY_S = 0.25  # progress events to watchers
SPEED_WINDOW_S = 5.0
REPO = re.compile(r"[\w.-]+(/[\w.-]+)?")
SHA256 = re.compile(r"[0-9a-fA-F]{64}")
HF_SOURCE = re.compile(r"hf://(?P<repo>[\w.-]+/[\w.-]+)/(?P<file>.+)@(?P<rev>[^@]+)")
NODE_RETRY_AFTER_S = 60.0


@dataclass
class Live:
    row: DownloadRow
    job: sources.Job | None = None
    task: asyncio.Task[None] | None = None
    samples: collections.deque[tuple[float, int]] = field(
        default_factory=lambda: collections.deque(maxlen=64)
    )
    watchers: set[asyncio.Queue[models_pb2.Download | None]] = field(default_factory=set)
    saved_at: float = 0.0
    told_at: float = 0.0
    cancelling: bool = False


class DownloadService:
    """Args:
    nodes: sends DownloadCommands to agents (None: node downloads are refused).
    """

    def __init__(
        self,
        db: Database,
        library: ModelLibrary,
        civitai: CivitaiClient,
        concurrency: int = 2,
        nodes: Any = None,
    ) -> None:
        self._db = db
        self._library = library
        self._civitai = civitai
        self._nodes = nodes
        self._slots = asyncio.Semaphore(concurrency)
        self._background = Background("a download's state update")
        self._live: dict[str, Live] = {}
        self._http = httpx.AsyncClient(
            follow_redirects=True, timeout=httpx.Timeout(60.0, connect=10.0)
        )
        self._closing = False
        # Downloads of files node models need: (node, path) -> download id, and
        # recent failures (so the jobs behind a failed one fail with its reason).
        self._node_files: dict[tuple[str, str], str] = {}
        self._node_failures: dict[tuple[str, str], tuple[float, str]] = {}

    # ---- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        """Resumes the downloads a previous run left unfinished."""

        def unfinished(session: Session) -> list[DownloadRow]:
            rows = session.exec(
                select(DownloadRow).where(col(DownloadRow.state).not_in(TERMINAL))
            ).all()
            for row in rows:
                session.expunge(row)
            return list(rows)

        for row in await self._db.run(unfinished):
            if row.node:  # its agent resumes it, or it is lost with the node
                await self._move(Live(row), DownloadState.FAILED, "the coordinator restarted "
                                 "during this node download; start it again")  # fmt: skip
                continue
            log.info("download %s (%s) resumes", row.id, row.shown)
            live = Live(row)
            await self._move(live, DownloadState.QUEUED)
            self._spawn(live)

    async def close(self) -> None:
        """Stops the running downloads; their records and partial files stay for a resume."""
        self._closing = True
        tasks = [live.task for live in self._live.values() if live.task is not None]
        for live in self._live.values():
            if live.job is not None:
                live.job.cancelled.set()  # a Hugging Face thread stops at its next report
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._background.wait()
        await self._http.aclose()

    # ---- requests -----------------------------------------------------------

    async def begin(self, request: models_pb2.StartDownloadRequest) -> models_pb2.Download:
        """Validates and queues a download.

        Raises:
            InvalidArgument: which field and why. NotFound/FailedPrecondition: the node.
        """
        kind, source, shown = self._check(request)
        now = utcnow()
        row = DownloadRow(
            id=uuid.uuid4().hex, state=DownloadState.QUEUED.value, kind=kind,
            source=json.dumps(source),
            shown=shown, dest=request.dest, sha256=request.sha256.lower(), node=request.node,
            created_at=now, updated_at=now,
        )  # fmt: skip
        if request.node:
            node = self._nodes.get(request.node) if self._nodes is not None else None
            if node is None:
                raise NotFound(f"no node named {request.node!r} has connected")
            if not node.connected:
                raise FailedPrecondition(f"node {request.node} is offline")
        if kind == "library":  # which file, and its size, before anything is stored
            model, path = await self._library.local_file(request.library.reference)
            size = (await asyncio.to_thread(path.stat)).st_size
            source.update(sha256=model.sha256, name=path.name, size=size)
            row.source, row.bytes_total = json.dumps(source), size
            row.sha256 = row.sha256 or model.sha256
        await self._db.run(lambda s: s.add(row.model_copy()))
        live = Live(row)
        if request.node:
            self._live[row.id] = live
            await self._send_to_node(live, source)
        else:
            self._spawn(live)
        log.info("download %s queued: %s", row.id, shown)
        return self.to_pb(live)

    async def get(self, download_id: str) -> models_pb2.Download:
        live = self._live.get(download_id)
        if live is not None:
            return self.to_pb(live)
        row = await self._db.run(lambda s: s.get(DownloadRow, download_id))
        if row is None:
            raise NotFound(f"no download {download_id!r}")
        return self.to_pb(Live(row))

    async def list(self, states: list[int]) -> list[models_pb2.Download]:
        names = [NAMES[s] for s in states if s in NAMES]

        def read(session: Session) -> list[DownloadRow]:
            query = select(DownloadRow).order_by(col(DownloadRow.created_at).desc())
            if names:
                query = query.where(col(DownloadRow.state).in_(names))
            return list(session.exec(query.limit(500)).all())

        return [self.to_pb(self._live.get(row.id) or Live(row)) for row in await self._db.run(read)]

    async def cancel(self, download_id: str) -> models_pb2.Download:
        """Stops a download and removes its partial file; a finished one is left as it is."""
        live = self._live.get(download_id)
        if live is None:
            return await self.get(download_id)  # finished already (or NotFound)
        live.cancelling = True
        if live.job is not None:
            live.job.cancelled.set()
        if live.row.node:
            await self._cancel_on_node(live)
        elif live.task is not None:
            live.task.cancel()
            await asyncio.gather(live.task, return_exceptions=True)
        await self._move(live, DownloadState.CANCELLED)
        return self.to_pb(live)

    async def watch(self, download_id: str) -> AsyncIterator[models_pb2.Download]:
        """The download now, then as it changes, until it ends."""
        live = self._live.get(download_id)
        if live is None:
            yield await self.get(download_id)
            return
        queue: asyncio.Queue[models_pb2.Download | None] = asyncio.Queue()
        live.watchers.add(queue)
        try:
            now = self.to_pb(live)
            yield now
            while NAMES[now.state] not in TERMINAL:
                update = await queue.get()
                if update is None:
                    return
                now = update
                yield now
        finally:
            live.watchers.discard(queue)

    # ---- files a node's model needs ------------------------------------------

    async def for_node_file(self, node: str, path: str) -> str:
        """The download bringing `path` (relative to the node's models folder) to
        `node`, started if none is under way: from the coordinator's own copy, else
        from the Civitai version or URL the library recorded for that file name.

        Raises:
            DownloadFailed: the library knows no source, or a recent try failed.
        """
        key = (node, path)
        running = self._node_files.get(key)
        if running is not None and running in self._live:
            return running
        failed = self._node_failures.get(key)
        if failed is not None and time.monotonic() - failed[0] < NODE_RETRY_AFTER_S:
            raise DownloadFailed(failed[1])
        request = await self._source_for(PurePosixPath(path).name)
        request.dest, request.node = str(PurePosixPath(path).parent), node
        try:
            download = await self.begin(request)
        except (InvalidArgument, NotFound, FailedPrecondition) as e:
            raise DownloadFailed(f"{path} cannot be sent to {node}: {e}") from e
        self._node_files[key] = download.id
        return download.id

    def node_file_failed(self, node: str, path: str, reason: str) -> None:
        self._node_failures[(node, path)] = (time.monotonic(), reason)

    async def _source_for(self, name: str) -> models_pb2.StartDownloadRequest:
        model = await self._library.resolve(name)
        if model is None:
            raise DownloadFailed(f"the model library knows no file named {name}")
        request = models_pb2.StartDownloadRequest(sha256=model.sha256)
        try:
            await self._library.local_file(model.sha256)
            request.library.reference = model.sha256
            return request
        except NotFound:
            pass
        hf = HF_SOURCE.fullmatch(model.source_url or "")
        if model.civitai_version_id:
            request.civitai.reference = str(model.civitai_version_id)
        elif hf is not None:
            request.huggingface.repo = hf["repo"]
            request.huggingface.files.append(hf["file"])
            request.huggingface.revision = hf["rev"]
        elif model.source_url.startswith(("http://", "https://")):
            request.url.url = model.source_url
        else:
            raise DownloadFailed(f"{name}: the coordinator has no copy and the library knows "
                                 "no Civitai, Hugging Face or URL origin for it")  # fmt: skip
        return request

    # ---- checking a request -------------------------------------------------

    def _check(self, request: models_pb2.StartDownloadRequest) -> tuple[str, dict[str, Any], str]:
        kind = request.WhichOneof("source")
        if request.sha256 and not SHA256.fullmatch(request.sha256):
            raise InvalidArgument("sha256", "must be 64 hexadecimal digits")
        if request.node:
            dest = PurePosixPath(request.dest.replace("\\", "/"))
            if dest.is_absolute() or ".." in dest.parts:
                raise InvalidArgument("dest", "on a node, a folder inside its models folder "
                                              "(relative, without '..')")  # fmt: skip
        if kind == "huggingface":
            return self._check_huggingface(request)
        if kind == "url":
            url = request.url.url
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise InvalidArgument("url.url", "must be an http:// or https:// URL")
            self._confine(request, sources.url_file_name(url))
            return kind, {"url": url}, shown_url(url)
        if kind == "library":
            if not request.node:
                raise InvalidArgument("node", "a library model is sent to a node: name one")
            if not request.library.reference.strip():
                raise InvalidArgument("library.reference", "required")
            return (
                kind,
                {"reference": request.library.reference},
                f"library:{request.library.reference}",
            )
        if kind == "civitai":
            version = sources.civitai_version_id(request.civitai.reference)
            self._confine(request, "x")
            return kind, {"reference": request.civitai.reference}, f"civitai:{version}"
        raise InvalidArgument("source", "one of huggingface, url, civitai or library is required")

    def _check_huggingface(
        self, request: models_pb2.StartDownloadRequest
    ) -> tuple[str, dict[str, Any], str]:
        hf = request.huggingface
        if not REPO.fullmatch(hf.repo):
            raise InvalidArgument("huggingface.repo", f"{hf.repo!r} is not OWNER/NAME")
        if not hf.files:
            raise InvalidArgument("huggingface.files", "name at least one file")
        if request.sha256 and len(hf.files) > 1:
            raise InvalidArgument("sha256", "one hash cannot verify several files")
        for name in hf.files:
            self._confine(request, name)
        source = {"repo": hf.repo, "files": list(hf.files), "revision": hf.revision}
        rev = f"@{hf.revision}" if hf.revision else ""
        return "huggingface", source, f"hf://{hf.repo}{rev} {' '.join(hf.files)}"

    def _confine(self, request: models_pb2.StartDownloadRequest, name: str) -> None:
        if request.node:
            relative = PurePosixPath(name.replace("\\", "/"))
            if relative.is_absolute() or ".." in relative.parts:
                raise InvalidArgument("name", f"{name!r} is not a plain file name")
            return
        confined(self._library.roots, request.dest, name)

    # ---- running one (on the coordinator) ----------------------------------

    def _spawn(self, live: Live) -> None:
        self._live[live.row.id] = live
        live.task = asyncio.create_task(self._run(live), name=f"sq-download-{live.row.id}")

    async def _run(self, live: Live) -> None:
        loop = asyncio.get_running_loop()
        row = live.row

        def progress(done: int, total: int) -> None:  # from the loop or a worker thread
            loop.call_soon_threadsafe(self._progress, live, done, total)

        live.job = sources.Job(
            row.id, self._library.roots, row.dest, row.sha256, on_progress=progress,
            on_verifying=lambda: loop.call_soon_threadsafe(
                self._soon, self._move(live, DownloadState.VERIFYING)
            ),
        )  # fmt: skip
        try:
            async with self._slots:
                await self._move(live, DownloadState.DOWNLOADING)
                fetched = await self._fetch(row, live.job)
                await self._move(live, DownloadState.VERIFYING)
                models = [await self._register(f) for f in fetched]
            row.dest_path = str(fetched[0].path)
            row.model_id = models[0]
            await self._move(live, DownloadState.COMPLETED)
            log.info("download %s completed: %s", row.id, row.dest_path)
        except (DownloadFailed, InvalidArgument) as e:
            await self._move(live, DownloadState.FAILED, str(e))
            log.warning("download %s failed: %s", row.id, e)
        except (asyncio.CancelledError, sources.Cancelled):
            if live.cancelling:
                await asyncio.to_thread(self._remove_partials, row)
                return
            raise  # the coordinator is stopping: resumed at the next start

    async def _fetch(self, row: DownloadRow, job: sources.Job) -> list[sources.Fetched]:
        source = json.loads(row.source)
        if row.kind == "url":
            return await sources.from_url(self._http, job, source["url"])
        if row.kind == "civitai":
            return await sources.from_civitai(self._http, self._civitai, job, source["reference"])
        return await asyncio.to_thread(
            sources.from_huggingface, job, source["repo"], source["files"], source["revision"]
        )

    async def _register(self, fetched: sources.Fetched) -> str:
        model, problems = await self._library.register(fetched.path, fetched.hashes)
        for problem in problems:
            log.warning("downloaded %s: %s", fetched.path, problem)
        if not model.source_url and fetched.source_url:

            def remember(session: Session) -> None:
                stored = session.get(ModelRow, model.sha256)
                if stored is not None and not stored.source_url:
                    stored.source_url = fetched.source_url
                    session.add(stored)

            await self._db.run(remember)
        return model.sha256

    def _remove_partials(self, row: DownloadRow) -> None:
        with contextlib.suppress(InvalidArgument):
            folder = confined(self._library.roots, row.dest, "x").parent
            for partial in folder.rglob(f"*.{row.id[:12]}.incomplete"):
                partial.unlink(missing_ok=True)

    # ---- nodes --------------------------------------------------------------

    async def _send_to_node(self, live: Live, source: dict[str, Any]) -> None:
        row = live.row
        command = processes_pb2.DownloadCommand(
            download_id=row.id, repo=source.get("repo", ""), files=source.get("files", []),
            revision=source.get("revision", ""), url=source.get("url", ""),
            civitai=source.get("reference", "") if row.kind == "civitai" else "",
            dest=row.dest, sha256=row.sha256, library_sha256=source.get("sha256", ""),
            library_name=source.get("name", ""), library_size=source.get("size", 0),
        )  # fmt: skip
        await self._nodes.send(row.node, processes_pb2.CoordinatorCommand(download=command))

    async def _cancel_on_node(self, live: Live) -> None:
        command = processes_pb2.CoordinatorCommand(
            cancel_download=processes_pb2.CancelDownloadCommand(download_id=live.row.id)
        )
        with contextlib.suppress(Exception):  # an offline node has stopped it anyway
            await self._nodes.send(live.row.node, command)

    async def node_update(self, node: str, update: processes_pb2.DownloadUpdate) -> None:
        """A DownloadUpdate from `node`'s agent (for a download we or it started)."""
        live = self._live.get(update.download_id)
        if live is None:
            if update.state in (models_pb2.DOWNLOAD_STATE_COMPLETED,
                                models_pb2.DOWNLOAD_STATE_FAILED):  # fmt: skip
                stored = await self._db.run(lambda s: s.get(DownloadRow, update.download_id))
                if stored is not None:
                    return  # already final
            now = utcnow()
            row = DownloadRow(
                id=update.download_id, state=DownloadState.QUEUED.value, kind="node", source="{}",
                shown=update.source or f"for {update.model}", node=node, created_at=now,
                updated_at=now,
            )  # fmt: skip
            await self._db.run(lambda s: s.add(row.model_copy()))
            live = self._live[row.id] = Live(row)
        if update.bytes_total or update.bytes_done:
            self._progress(live, update.bytes_done, update.bytes_total)
        state = NAMES.get(update.state)
        if state is None:
            return
        if state is DownloadState.COMPLETED and update.files:
            live.row.dest_path = update.files[0].path
            live.row.model_id = update.files[0].sha256
            for f in update.files:
                hashes = FileHashes(f.sha256, f.autov1, f.autov3, f.blake3)
                await self._library.register_remote(node, f.path, hashes, f.size)
        await self._move(live, state, update.error)

    def node_lost(self, node: str) -> None:
        """A node went offline: its downloads are over."""
        for live in list(self._live.values()):
            if live.row.node == node and live.row.state not in TERMINAL:
                self._soon(self._move(live, DownloadState.FAILED, f"node {node} went offline"))

    # ---- state --------------------------------------------------------------

    def _progress(self, live: Live, done: int, total: int) -> None:
        now = time.monotonic()
        live.row.bytes_done, live.row.bytes_total = done, total or live.row.bytes_total
        live.samples.append((now, done))
        while live.samples and now - live.samples[0][0] > SPEED_WINDOW_S:
            live.samples.popleft()
        if now - live.told_at >= WATCH_EVERY_S:
            live.told_at = now
            self._tell(live)
        if now - live.saved_at >= SAVE_EVERY_S:
            live.saved_at = now
            self._soon(self._save(live))

    def _soon(self, work: Coroutine[Any, Any, None]) -> None:
        """Runs `work` in a task the service keeps (and `close()` awaits)."""
        self._background.spawn(work)

    async def _move(self, live: Live, state: DownloadState, error: str = "") -> None:
        """The one place a download's state changes: checked against `DOWNLOAD`,
        stored, told to its watchers; an end also releases them."""
        old = DownloadState(live.row.state)
        if old in TERMINAL:  # a late report (an agent's, a thread's) after the end
            log.debug("download %s is %s; %s ignored", live.row.id, old, state)
            return
        if not DOWNLOAD.check(live.row.id, old, state, error):
            return
        live.row.state = state.value
        if state in TERMINAL:
            live.row.error = error
        await self._save(live)
        self._tell(live)
        if state in TERMINAL:
            for queue in live.watchers:
                queue.put_nowait(None)
            self._live.pop(live.row.id, None)

    async def _save(self, live: Live) -> None:
        row = live.row
        row.updated_at = utcnow()
        values = row.model_dump()

        def write(session: Session) -> None:
            stored = session.get(DownloadRow, row.id)
            if stored is not None:
                for key, value in values.items():
                    setattr(stored, key, value)
                session.add(stored)

        await self._db.run(write)

    def _tell(self, live: Live) -> None:
        if live.watchers:
            message = self.to_pb(live)
            for queue in live.watchers:
                queue.put_nowait(message)

    def to_pb(self, live: Live) -> models_pb2.Download:
        row = live.row
        speed = eta = 0.0
        if len(live.samples) >= 2 and row.state == DownloadState.DOWNLOADING:
            (t0, b0), (t1, b1) = live.samples[0], live.samples[-1]
            speed = (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
            if speed > 0 and row.bytes_total:
                eta = max(0.0, (row.bytes_total - row.bytes_done) / speed)
        return models_pb2.Download(
            id=row.id, state=STATES[row.state], source=row.shown, dest_path=row.dest_path,
            bytes_done=row.bytes_done, bytes_total=row.bytes_total, bytes_per_second=speed,
            eta_seconds=eta, error=row.error, model_id=row.model_id,
            created_at=timestamp(row.created_at), updated_at=timestamp(row.updated_at),
            node=row.node,
        )  # fmt: skip
