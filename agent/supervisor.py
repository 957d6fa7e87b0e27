"""All of a node's model processes: on-demand starts, idle stops, preload restarts,
VRAM-based eviction, and cleanup of children a crashed agent left behind.

- `on_demand` models start when a job needs them (`ensure_ready`) and stop after
  `idle_timeout` with no job in flight — never while one runs.
- `preload` models start with the agent and are restarted after a crash with
  exponential backoff (capped); one that crashes `MAX_CRASHES` times within
  `CRASH_WINDOW_S` stays FAILED with its last output.
- When a model needs more VRAM than is free, idle on-demand models are stopped
  first, least recently used first.
- Each child's pid and start time are recorded; a restarted agent ends the
  children its predecessor left (only if pid *and* start time still match).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil

from stablequeue_agent.config import AgentConfig, ModelConfig
from stablequeue_agent.process import ModelProcess, StartFailed, State
from stablequeue_coordinator.downloads.fetch import DownloadFailed

log = logging.getLogger(__name__)
MAX_CRASHES = 5
CRASH_WINDOW_S = 300.0
IDLE_CHECK_S = 0.25
StateListener = Callable[[str, State, str], None]


class Supervisor:
    """Args:
    config: the validated models.yml.
    work_dir: logs and the record of running children live here.
    free_vram_mb: reports free VRAM (None, or it returning None: no eviction).
    on_state: called with (model, state, detail) on every transition.
    prepare: called before a model starts (its files are downloaded); raising
        DownloadFailed fails the start with that reason.
    """

    def __init__(
        self,
        config: AgentConfig,
        work_dir: Path,
        free_vram_mb: Callable[[], int | None] | None = None,
        on_state: StateListener | None = None,
        grace: float = 5.0,
        restart_backoff: float = 1.0,
        restart_backoff_max: float = 60.0,
        prepare: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        self._prepare = prepare
        self._record = work_dir / "children.json"
        self._free_vram = free_vram_mb
        self._on_state = on_state
        self._backoff = restart_backoff
        self._backoff_max = restart_backoff_max
        self._logs = work_dir / "logs"
        self._grace = grace
        self.processes = {key: self._process(key, model) for key, model in config.models.items()}
        self.in_flight: dict[str, int] = dict.fromkeys(config.models, 0)
        self.last_used: dict[str, float] = dict.fromkeys(config.models, 0.0)
        self._crashes: dict[str, list[float]] = {key: [] for key in config.models}
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle: asyncio.Task[None] | None = None
        # When the idle check last looked at every model (monotonic; 0.0 before the
        # first): what shows that a model was left running on purpose.
        self.idle_checked_at = 0.0
        self._closing = False
        # Models being replaced after a reload: a job for one waits for its new process.
        self._replacing: dict[str, asyncio.Task[None]] = {}
        self._quiet: dict[str, asyncio.Event] = {}  # set when a model's last job ends

    def _process(self, key: str, model: ModelConfig) -> ModelProcess:
        return ModelProcess(
            key, model, self.config.base_dir, self._logs, self._changed, self._grace
        )

    async def start(self) -> None:
        """Ends leftovers of a previous agent, starts preload models, watches idleness."""
        await asyncio.to_thread(end_orphans, self._record)
        self._idle = asyncio.create_task(self._idle_loop())
        for key, model in self.config.models.items():
            if model.mode == "preload":
                self._spawn(self._start_preload(key))

    async def close(self) -> None:
        """Stops every child (the agent is going away)."""
        self._closing = True
        tasks = [*self._tasks, *([self._idle] if self._idle else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(p.stop() for p in self.processes.values()))
        self._write_record()

    # ---- jobs -------------------------------------------------------------

    async def ensure_ready(self, key: str) -> ModelProcess:
        """The model, started if needed (evicting idle ones for VRAM first).

        Raises:
            KeyError: no such model. StartFailed: it could not start.
        """
        if key not in self.config.models:
            raise KeyError(key)
        if key in self._replacing:
            await asyncio.shield(self._replacing[key])
        process = self.processes[key]
        self.last_used[key] = time.monotonic()
        if process.state is not State.READY:
            await self._prepared(key, process)
            await self._make_room(key)
            await process.start()
        return process

    async def _prepared(self, key: str, process: ModelProcess) -> None:
        if self._prepare is None:
            return
        try:
            await self._prepare(key)
        except DownloadFailed as e:
            process.fail(str(e))
            raise StartFailed(str(e)) from e

    def job_started(self, key: str) -> None:
        self.in_flight[key] += 1
        self.last_used[key] = time.monotonic()
        self._jobs_changed(key)

    def job_finished(self, key: str) -> None:
        self.in_flight[key] = max(0, self.in_flight[key] - 1)
        self.last_used[key] = time.monotonic()
        if not self.in_flight[key] and key in self._quiet:
            self._quiet[key].set()
        self._jobs_changed(key)

    def _jobs_changed(self, key: str) -> None:
        """Listeners hear the new job count as a (same-state) report."""
        process = self.processes.get(key)
        if process is not None and self._on_state is not None:
            self._on_state(key, process.state, process.detail)

    async def interrupt(self, key: str) -> None:
        """Ends whatever the model's server is doing by stopping it; a preload model is
        started again, an on-demand one waits for its next job."""
        await self.processes[key].stop()
        if self.config.models[key].mode == "preload" and not self._closing:
            self._spawn(self._start_preload(key))

    # ---- reloading models.yml ------------------------------------------------

    def reload(self, config: AgentConfig) -> tuple[list[str], list[str], list[str]]:
        """Applies a new models.yml: models that did not change keep running untouched;
        changed and removed ones are stopped once their running jobs finish (a changed
        one then comes back with its new settings: preload at once, on-demand at its
        next job); new preload models start. Returns (added, changed, removed)."""
        old = self.config.models
        added = [k for k in config.models if k not in old]
        removed = [k for k in old if k not in config.models]
        changed = [k for k in config.models if k in old and config.models[k] != old[k]]
        self.config = config
        for key in added:
            self.processes[key] = self._process(key, config.models[key])
            self.in_flight[key], self.last_used[key], self._crashes[key] = 0, 0.0, []
            if config.models[key].mode == "preload":
                self._spawn(self._start_preload(key))
        for key in changed + removed:
            task = asyncio.ensure_future(self._replace(key, config.models.get(key)))
            self._replacing[key] = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return added, changed, removed

    async def _replace(self, key: str, model: ModelConfig | None) -> None:
        try:
            if self.in_flight.get(key):
                self._quiet[key] = asyncio.Event()
                await self._quiet[key].wait()
            await self.processes[key].stop()
            if model is None:
                for table in (self.processes, self.in_flight, self.last_used, self._crashes):
                    table.pop(key, None)  # type: ignore[attr-defined]
                return
            self.processes[key] = self._process(key, model)
            self._crashes[key] = []
            self._changed(key, State.STOPPED, "models.yml changed")
        finally:
            self._replacing.pop(key, None)
            self._quiet.pop(key, None)
        if model.mode == "preload" and not self._closing:
            await self._start_preload(key)

    # ---- policies ---------------------------------------------------------

    async def _idle_loop(self) -> None:
        while True:
            await asyncio.sleep(IDLE_CHECK_S)
            now = time.monotonic()
            for key, process in list(self.processes.items()):
                model = self.config.models.get(key)
                if (
                    model is not None
                    and model.mode == "on_demand"
                    and process.state is State.READY
                    and self.in_flight[key] == 0
                    and now - self.last_used[key] >= model.idle_timeout
                ):
                    log.info("model %s idle for %g s: stopping", key, model.idle_timeout)
                    await process.stop()
            self.idle_checked_at = now

    async def _make_room(self, key: str) -> None:
        need = self.config.models[key].vram_mb
        if not need or self._free_vram is None:
            return
        idle = sorted(
            (k for k, p in self.processes.items()
             if k != key and p.state is State.READY and self.in_flight[k] == 0
             and k in self.config.models and self.config.models[k].mode == "on_demand"),
            key=lambda k: self.last_used[k],
        )  # fmt: skip
        free = self._free_vram()
        while free is not None and free < need and idle:
            victim = idle.pop(0)
            log.info("model %s needs %d MB of VRAM, %d MB free: stopping idle %s",
                     key, need, free, victim)  # fmt: skip
            await self.processes[victim].stop()
            free = self._free_vram()

    def reserved_vram_mb(self) -> int:
        """The VRAM the models started or starting claim (their `vram_mb`)."""
        return sum(
            self.config.models[k].vram_mb
            for k, p in self.processes.items()
            if k in self.config.models and p.state in (State.STARTING, State.READY)
        )

    async def _start_preload(self, key: str) -> None:
        process = self.processes.get(key)
        if process is not None:  # (not removed by a reload meanwhile)
            with contextlib.suppress(StartFailed):
                await self._prepared(key, process)
                await process.start()

    def _changed(self, key: str, state: State, detail: str) -> None:
        if state is not State.STOPPING:  # a child is recorded from its start (pid known)
            self._write_record()
        if self._on_state is not None:
            self._on_state(key, state, detail)
        model = self.config.models.get(key)
        if (
            state is State.FAILED
            and not self._closing
            and model is not None
            and model.mode == "preload"
            and key not in self._replacing
        ):
            self._spawn(self._restart(key, detail))

    async def _restart(self, key: str, detail: str) -> None:
        now = time.monotonic()
        crashes = [t for t in self._crashes.get(key, []) if now - t < CRASH_WINDOW_S] + [now]
        self._crashes[key] = crashes
        if len(crashes) >= MAX_CRASHES:
            log.error("model %s failed %d times; leaving it stopped: %s", key, len(crashes), detail)
            return
        delay = min(self._backoff * 2 ** (len(crashes) - 1), self._backoff_max)
        log.warning("model %s failed (%s); restarting in %g s", key, detail, delay)
        await asyncio.sleep(delay)
        if not self._closing:
            await self._start_preload(key)

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- children left behind ------------------------------------------------

    def _write_record(self) -> None:
        children = {}
        for key, process in self.processes.items():
            if process.pid is not None and process.state in (State.STARTING, State.READY):
                with contextlib.suppress(psutil.Error):
                    started = psutil.Process(process.pid).create_time()
                    children[key] = {"pid": process.pid, "started": started}
        self._record.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._record.with_suffix(".tmp")
        tmp.write_text(json.dumps(children))
        os.replace(tmp, self._record)


def end_orphans(record: Path, grace: float = 3.0) -> list[int]:
    """Ends the process groups recorded by a previous agent that are still the same
    processes (pid and start time); returns their pids."""
    try:
        children = json.loads(record.read_text())
    except (OSError, ValueError):
        return []
    ended = []
    for entry in children.values():
        try:
            process = psutil.Process(int(entry["pid"]))
            if abs(process.create_time() - float(entry["started"])) > 0.01:
                continue  # the pid was reused by something else
        except (psutil.Error, KeyError, TypeError, ValueError):
            continue
        log.warning("ending model process %d left by a previous agent", process.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except psutil.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(psutil.Error):
                process.wait(grace)
        except psutil.Error:
            pass
        ended.append(process.pid)
    record.unlink(missing_ok=True)
    return ended
