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
from collections.abc import Callable
from pathlib import Path

import psutil

from agent.config import AgentConfig
from agent.process import ModelProcess, StartFailed, State

log = logging.getLogger(__name__)
MAX_CRASHES = 5
CRASH_WINDOW_S = 300.0
IDLE_CHECK_S = 0.25
StateListener = Callable[[str, State, str], None]


class Supervisor:
    """Args:
    config: the validated models.yml.
    work_dir: logs and the record of running children live here.
    free_vram_mb: reports free VRAM (None: no GPU figures, no eviction).
    on_state: called with (model, state, detail) on every transition.
    """

    def __init__(
        self,
        config: AgentConfig,
        work_dir: Path,
        free_vram_mb: Callable[[], int] | None = None,
        on_state: StateListener | None = None,
        grace: float = 5.0,
        restart_backoff: float = 1.0,
        restart_backoff_max: float = 60.0,
    ) -> None:
        self.config = config
        self._record = work_dir / "children.json"
        self._free_vram = free_vram_mb
        self._on_state = on_state
        self._backoff = restart_backoff
        self._backoff_max = restart_backoff_max
        self.processes = {
            key: ModelProcess(key, model, config.base_dir, work_dir / "logs", self._changed, grace)
            for key, model in config.models.items()
        }
        self.in_flight: dict[str, int] = dict.fromkeys(config.models, 0)
        self.last_used: dict[str, float] = dict.fromkeys(config.models, 0.0)
        self._crashes: dict[str, list[float]] = {key: [] for key in config.models}
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle: asyncio.Task[None] | None = None
        self._closing = False

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
        for task in [*self._tasks, *([self._idle] if self._idle else [])]:
            task.cancel()
        await asyncio.gather(*(p.stop() for p in self.processes.values()))
        self._write_record()

    # ---- jobs -------------------------------------------------------------

    async def ensure_ready(self, key: str) -> ModelProcess:
        """The model, started if needed (evicting idle ones for VRAM first).

        Raises:
            KeyError: no such model. StartFailed: it could not start.
        """
        process = self.processes[key]
        self.last_used[key] = time.monotonic()
        if process.state is not State.READY:
            await self._make_room(key)
            await process.start()
        return process

    def job_started(self, key: str) -> None:
        self.in_flight[key] += 1
        self.last_used[key] = time.monotonic()

    def job_finished(self, key: str) -> None:
        self.in_flight[key] = max(0, self.in_flight[key] - 1)
        self.last_used[key] = time.monotonic()

    # ---- policies ---------------------------------------------------------

    async def _idle_loop(self) -> None:
        while True:
            await asyncio.sleep(IDLE_CHECK_S)
            now = time.monotonic()
            for key, process in self.processes.items():
                model = self.config.models[key]
                if (
                    model.mode == "on_demand"
                    and process.state is State.READY
                    and self.in_flight[key] == 0
                    and now - self.last_used[key] >= model.idle_timeout
                ):
                    log.info("model %s idle for %g s: stopping", key, model.idle_timeout)
                    await process.stop()

    async def _make_room(self, key: str) -> None:
        need = self.config.models[key].vram_mb
        if not need or self._free_vram is None:
            return
        idle = sorted(
            (k for k, p in self.processes.items()
             if k != key and p.state is State.READY and self.in_flight[k] == 0
             and self.config.models[k].mode == "on_demand"),
            key=lambda k: self.last_used[k],
        )  # fmt: skip
        while self._free_vram() < need and idle:
            victim = idle.pop(0)
            log.info("model %s needs %d MB of VRAM: stopping idle %s", key, need, victim)
            await self.processes[victim].stop()

    async def _start_preload(self, key: str) -> None:
        with contextlib.suppress(StartFailed):
            await self.processes[key].start()

    def _changed(self, key: str, state: State, detail: str) -> None:
        if state in (State.READY, State.STOPPED):
            self._write_record()
        if self._on_state is not None:
            self._on_state(key, state, detail)
        if (
            state is State.FAILED
            and not self._closing
            and self.config.models[key].mode == "preload"
        ):
            self._spawn(self._restart(key, detail))

    async def _restart(self, key: str, detail: str) -> None:
        now = time.monotonic()
        crashes = [t for t in self._crashes[key] if now - t < CRASH_WINDOW_S] + [now]
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
