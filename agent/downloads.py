"""Downloads on a node, with the coordinator's own downloader (resumable, verified):

- a model's `huggingface:` files from models.yml, fetched before the model first
  starts (a job for it waits, seeing the bytes); several jobs or starts for the
  same model share one download, and a failed one is remembered for
  `RETRY_AFTER_S` so the jobs queued behind it fail with its reason at once;
- DownloadCommands from the coordinator (`sq download ... --node N`), into the
  node's models folder — including models of the coordinator's library, read over
  gRPC (ModelsService.ReadModelFile) and resumed by offset after a cut.

Each is reported to the coordinator as DownloadUpdate messages, so `sq downloads`
shows them, and a finished file is registered there as a location on this node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx

from stablequeue.v1 import models_pb2, processes_pb2
from stablequeue_agent.config import AgentConfig, ModelConfig
from stablequeue_coordinator.downloads import sources
from stablequeue_coordinator.downloads.fetch import (
    DownloadFailed,
    confined,
    fetch_chunks,
    partial_path,
)
from stablequeue_coordinator.errors import InvalidArgument
from stablequeue_coordinator.library.civitai import DEFAULT_URL, CivitaiClient, CivitaiUnavailable
from stablequeue_coordinator.library.classify import EXTENSIONS

log = logging.getLogger(__name__)
RETRY_AFTER_S = 60.0
REPORT_EVERY_S = 0.25
Progress = Callable[[int, int], None]
Send = Callable[[processes_pb2.DownloadUpdate], None]
# A coordinator model file's bytes from an offset (sha256, offset); raises
# ConnectionError for a cut worth resuming.
ReadModel = Callable[[str, int], AsyncIterator[bytes]]


def missing_files(model: ModelConfig, base_dir: Path) -> list[str]:
    """The model's `huggingface:` files not on disk (paths relative to base_dir)."""
    if model.huggingface is None:
        return []
    missing = []
    for f in model.huggingface.files:
        path = (base_dir / f.dest / f.path).resolve()
        if not path.exists():
            missing.append(str(Path(f.dest) / f.path))
    return missing


def needed_files(model: ModelConfig, base_dir: Path, models_dir: Path) -> list[str]:
    """Model files the args name (relative to `base_dir`) that are missing, are not
    provided by the `huggingface:` block, and lie in `models_dir` (where the
    coordinator can deliver them): their paths relative to `models_dir`."""
    provided = set()
    if model.huggingface is not None:
        provided = {(base_dir / f.dest / f.path).resolve() for f in model.huggingface.files}
    needed = []
    for arg in model.args:
        if "${" in arg or Path(arg).suffix.lower() not in EXTENSIONS:
            continue
        path = (base_dir / arg).resolve()
        if path in provided or path.exists() or not path.is_relative_to(models_dir):
            continue
        needed.append(path.relative_to(models_dir).as_posix())
    return needed


MODEL_FLAGS = ("-m", "--model", "--diffusion-model")


def model_file(model: ModelConfig, key: str, base_dir: Path) -> str:
    """The checkpoint the model's args load (the value after -m, --model or
    --diffusion-model, `${MODEL}` read as its key), absolute; "" when none is named."""
    args = [arg.replace("${MODEL}", key) for arg in model.args]
    for i, arg in enumerate(args):
        flag, _, value = arg.partition("=")
        if flag in MODEL_FLAGS and value:
            return str((base_dir / value).resolve())
        if arg in MODEL_FLAGS and i + 1 < len(args) and "${" not in args[i + 1]:
            return str((base_dir / args[i + 1]).resolve())
    return ""


class NodeDownloads:
    """Args:
    models_dir: where coordinator-sent downloads go (their `dest` is relative to it).
    send: delivers a DownloadUpdate to the coordinator (dropped while disconnected).
    on_files: called with a model key once its files are all present.
    """

    def __init__(
        self,
        models_dir: Path,
        send: Send,
        on_files: Callable[[str], None] = lambda key: None,
        civitai: CivitaiClient | None = None,
        read_model: ReadModel | None = None,
    ) -> None:
        self._models_dir = models_dir.resolve()
        self._read_model = read_model
        self._send = send
        self._on_files = on_files
        # The same settings as the coordinator's (SQ_CIVITAI_URL, SQ_CIVITAI_TOKEN).
        self._civitai = civitai or CivitaiClient(
            os.environ.get("SQ_CIVITAI_URL", DEFAULT_URL), os.environ.get("SQ_CIVITAI_TOKEN", "")
        )
        self._http = httpx.AsyncClient(
            follow_redirects=True, timeout=httpx.Timeout(60.0, connect=10.0)
        )
        self._models: dict[str, asyncio.Task[None]] = {}
        self._listeners: dict[str, set[Progress]] = defaultdict(set)
        self._failed: dict[str, tuple[float, str]] = {}
        self._commands: dict[str, tuple[asyncio.Task[None], sources.Job]] = {}

    async def close(self) -> None:
        tasks = [*self._models.values(), *(task for task, _ in self._commands.values())]
        for _, job in self._commands.values():
            job.cancelled.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._http.aclose()
        await self._civitai.close()

    # ---- a model's files ------------------------------------------------------

    async def ensure_files(
        self, key: str, config: AgentConfig, on_progress: Progress | None = None
    ) -> None:
        """Returns once the model's `huggingface:` files are on disk, downloading them
        (once, however many callers wait) if needed.

        Raises:
            DownloadFailed: the download failed (now or within the last minute).
        """
        model = config.models[key]
        if not missing_files(model, config.base_dir):
            return
        failed = self._failed.get(key)
        if failed is not None and time.monotonic() - failed[0] < RETRY_AFTER_S:
            raise DownloadFailed(failed[1])
        if on_progress is not None:
            self._listeners[key].add(on_progress)
        try:
            task = self._models.get(key)
            if task is None or task.done():
                task = asyncio.create_task(self._fetch_model(key, model, config.base_dir))
                self._models[key] = task
            await asyncio.shield(task)
        finally:
            if on_progress is not None:
                self._listeners[key].discard(on_progress)

    async def _fetch_model(self, key: str, model: ModelConfig, base_dir: Path) -> None:
        assert model.huggingface is not None
        source = model.huggingface
        download_id = uuid.uuid4().hex
        shown = f"hf://{source.repo} for {key}"
        report = self._reporter(download_id, shown, key, self._listeners[key])
        by_dest: dict[str, list[str]] = defaultdict(list)
        for f in source.files:
            by_dest[f.dest].append(f.path)
        fetched: list[sources.Fetched] = []
        log.info("model %s: downloading %s from Hugging Face", key, ", ".join(
            f.path for f in source.files))  # fmt: skip
        report(models_pb2.DOWNLOAD_STATE_DOWNLOADING)
        try:
            for dest, files in by_dest.items():
                folder = (base_dir / dest).resolve()
                folder.mkdir(parents=True, exist_ok=True)
                job = sources.Job(download_id, [folder], "", on_progress=report.progress)
                fetched += await asyncio.to_thread(
                    sources.from_huggingface, job, source.repo, files, source.revision
                )
        except (DownloadFailed, InvalidArgument) as e:
            reason = f"download of {key}'s files failed: {e}"
            self._failed[key] = (time.monotonic(), reason)
            report(models_pb2.DOWNLOAD_STATE_FAILED, error=reason)
            log.warning("model %s: %s", key, reason)
            raise DownloadFailed(reason) from e
        self._failed.pop(key, None)
        report(models_pb2.DOWNLOAD_STATE_COMPLETED, fetched=fetched)
        log.info("model %s: its files are here", key)
        self._on_files(key)

    # ---- coordinator commands -----------------------------------------------

    def start(self, command: processes_pb2.DownloadCommand) -> None:
        """Begins a download the coordinator asked for; its updates are the answer."""
        source = (f"hf://{command.repo} {' '.join(command.files)}" if command.repo else
                  command.url.split("?", 1)[0] or f"civitai:{command.civitai}")  # fmt: skip
        report = self._reporter(command.download_id, source, "", set())
        job = sources.Job(command.download_id, [self._models_dir], command.dest,
                          command.sha256, on_progress=report.progress)  # fmt: skip
        task = asyncio.create_task(self._run_command(command, job, report))
        self._commands[command.download_id] = (task, job)
        task.add_done_callback(lambda _: self._commands.pop(command.download_id, None))

    async def _run_command(
        self, command: processes_pb2.DownloadCommand, job: sources.Job, report: _Reporter
    ) -> None:
        report(models_pb2.DOWNLOAD_STATE_DOWNLOADING)
        try:
            if command.repo:
                fetched = await asyncio.to_thread(
                    sources.from_huggingface, job, command.repo, list(command.files),
                    command.revision,
                )  # fmt: skip
            elif command.url:
                fetched = await sources.from_url(self._http, job, command.url)
            elif command.library_sha256:
                fetched = await self._from_coordinator(command, job)
            else:
                fetched = await sources.from_civitai(
                    self._http, self._civitai, job, command.civitai
                )
        except (DownloadFailed, InvalidArgument, CivitaiUnavailable) as e:
            report(models_pb2.DOWNLOAD_STATE_FAILED, error=str(e))
            return
        except (asyncio.CancelledError, sources.Cancelled):
            await asyncio.to_thread(self._remove_partials, job)
            report(models_pb2.DOWNLOAD_STATE_CANCELLED)
            return
        report(models_pb2.DOWNLOAD_STATE_COMPLETED, fetched=fetched)
        self._on_files("")  # a model's needed file may have arrived

    @property
    def models_dir(self) -> Path:
        return self._models_dir

    async def _from_coordinator(
        self, command: processes_pb2.DownloadCommand, job: sources.Job
    ) -> list[sources.Fetched]:
        """A model of the coordinator's library, over gRPC, resumed by offset after a cut."""
        if self._read_model is None:
            raise DownloadFailed("this agent cannot read from the coordinator")
        target = confined([self._models_dir], command.dest, command.library_name)
        sha = command.library_sha256
        hashes = await fetch_chunks(
            lambda offset: self._read_model(sha, offset),  # type: ignore[misc]
            command.library_size, target, partial_path(target, job.id), sha256=sha,
            on_progress=job.on_progress, retry_on=(ConnectionError,),
        )  # fmt: skip
        return [sources.Fetched(target, hashes, f"coordinator:{sha}")]

    async def cancel(self, download_id: str) -> None:
        entry = self._commands.get(download_id)
        if entry is None:
            return
        task, job = entry
        job.cancelled.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    def _remove_partials(self, job: sources.Job) -> None:
        folder = (self._models_dir / job.dest).resolve()
        if folder.is_relative_to(self._models_dir) and folder.is_dir():
            for partial in folder.rglob(f"*.{job.id[:12]}.incomplete"):
                partial.unlink(missing_ok=True)

    # ---- reporting ------------------------------------------------------------

    def _reporter(self, download_id: str, source: str, model: str,
                  listeners: set[Progress]) -> _Reporter:  # fmt: skip
        return _Reporter(asyncio.get_running_loop(), self._send, download_id, source, model,
                         listeners)  # fmt: skip


class _Reporter:
    """Sends a download's updates (progress at most every REPORT_EVERY_S) and tells
    the jobs waiting for it. `progress` may be called from a worker thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, send: Send, download_id: str,
                 source: str, model: str, listeners: set[Progress]) -> None:  # fmt: skip
        self._loop = loop
        self._send = send
        self._id = download_id
        self._source = source
        self._model = model
        self._listeners = listeners
        self._sent_at = 0.0
        self.done = self.total = 0

    def progress(self, done: int, total: int) -> None:
        self._loop.call_soon_threadsafe(self._progress, done, total)

    def _progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        for listener in list(self._listeners):
            listener(done, total)
        now = time.monotonic()
        if now - self._sent_at >= REPORT_EVERY_S or (total and done >= total):
            self._sent_at = now
            self(models_pb2.DOWNLOAD_STATE_DOWNLOADING)

    def __call__(
        self, state: int, error: str = "", fetched: list[sources.Fetched] | None = None
    ) -> None:
        update = processes_pb2.DownloadUpdate(
            download_id=self._id, state=state, bytes_done=self.done, bytes_total=self.total,
            error=error, source=self._source, model=self._model,
        )  # fmt: skip
        for f in fetched or []:
            with contextlib.suppress(OSError):
                update.files.append(processes_pb2.DownloadedFile(
                    path=str(f.path), sha256=f.hashes.sha256, size=f.path.stat().st_size,
                    autov1=f.hashes.autov1, autov3=f.hashes.autov3, blake3=f.hashes.blake3,
                ))  # fmt: skip
        self._send(update)
