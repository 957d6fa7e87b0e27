"""The dispatcher: one task that owns scheduling, and one task per running attempt.

It sleeps until something could change a decision — a submit, a finished or
cancelled job, a server registered/enabled/resumed or coming up, the queue
resumed, a retry delay running out — then plans with `policy.plan` over a
snapshot and starts the chosen attempts. There is no polling delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from stablequeue.v1 import queue_pb2
from stablequeue_coordinator.backends.base import Attempt, Backend, Image, ServerConfig
from stablequeue_coordinator.common import random_uuid, utcnow
from stablequeue_coordinator.dispatch.policy import JobView, ServerView, choose_server, plan
from stablequeue_coordinator.errors import BackendRejected, BackendUnavailable, FailedPrecondition
from stablequeue_coordinator.kinds import APP_FROM_PB
from stablequeue_coordinator.library.service import ModelLibrary
from stablequeue_coordinator.nodes.service import node_row
from stablequeue_coordinator.outputs.store import ResultStore
from stablequeue_coordinator.queue.attempts import DispatchRow
from stablequeue_coordinator.queue.convert import STAGE_TO_PB
from stablequeue_coordinator.queue.service import QueueService
from stablequeue_coordinator.queue.states import JobStage, JobStatus
from stablequeue_coordinator.servers.service import (
    Health,
    HealthState,
    ServerService,
    ServerState,
)

log = logging.getLogger(__name__)
LOOKAHEAD = 200
MAX_FRESH = 1000
SLOT_WAIT = "waiting for a free slot"
MAX_REASONS = 50  # waiting jobs told why, on a round at most every NOTE_DELAY_S
NOTE_DELAY_S = 0.5
# At most this many newly submitted jobs are told why they wait per NOTE_DELAY_S
# while no server can take work: a burst of thousands would otherwise cost a row
# update each (measured: submit throughput fell by a fifth).
FRESH_REASONS = 20
PREVIEW_EVERY_S = 0.5
SPACE_CHECK_S = 2.0  # how often a full output disk is looked at again
SPACE_MARGIN = 1 << 20
# Events that can change a decision. A status change only can when a job (re)enters
# the queue (retry, re-queue); a job leaving a server wakes us from its attempt.
WAKING_EVENTS = {
    queue_pb2.JOB_EVENT_TYPE_SUBMITTED,
    queue_pb2.JOB_EVENT_TYPE_MOVED,
    queue_pb2.JOB_EVENT_TYPE_UNSPECIFIED,  # pause / resume
}


@dataclass(frozen=True)
class DispatchSettings:
    max_attempts: int = 3
    attempt_timeout: float = 1800.0
    retry_backoff: float = 2.0
    retry_backoff_max: float = 60.0


@dataclass
class Running:
    job: queue_pb2.Job
    server: ServerState
    attempt: Attempt
    backend: Backend
    task: asyncio.Task[None] | None = None
    cancelled_by_user: bool = False
    # The backend has answered: its images are being saved, and the server is free for
    # its next job meanwhile (it does not wait for our disk and database) — for one
    # such job per server: see `occupied`.
    answered: bool = False


def occupied(running: Iterable[Running]) -> Counter[str]:
    """The slots each server's jobs take: every job it works on, and each answered job
    being saved beyond its first. Saves that fall behind (a slow disk, a busy machine)
    then hold the server back instead of piling up answered jobs that a crash would
    make it run again."""
    taken: Counter[str] = Counter()
    saving: set[str] = set()  # servers with an answered job that takes no slot
    for r in running:
        alias = r.server.row.alias
        if r.answered and alias not in saving:
            saving.add(alias)
        else:
            taken[alias] += 1
    return taken


class Dispatcher:
    """Takes pending jobs to servers and runs them.

    Args:
        queue: the queue service (its listener hook wakes us).
        servers: the server registry.
        results: where images go.
        backends: builds the adapter for a server.
    """

    def __init__(
        self,
        queue: QueueService,
        servers: ServerService,
        results: ResultStore,
        backends: Callable[[ServerConfig], Backend],
        settings: DispatchSettings,
        library: ModelLibrary | None = None,
        places: Callable[[], list[ServerState]] | None = None,
    ) -> None:
        self._queue = queue
        self._servers = servers
        self._results = results
        self._backends = backends
        self._settings = settings
        self._wake = asyncio.Event()
        self._running: dict[str, Running] = {}
        # False once this coordinator lost its lease (PostgreSQL fail-over): backends are
        # then told nothing more (see Attempt.check_ours).
        self.may_act: Callable[[], bool] = lambda: True
        self._adapters: dict[str, tuple[ServerConfig, Backend]] = {}  # by server alias
        self._library = library
        # More places to run jobs than registered servers (node agents' models).
        self._places = places or (lambda: [])
        # Per job placed this round: (model SHA-256, reference -> alias -> backend name).
        self._names: dict[str, tuple[str, dict[str, dict[str, str]]]] = {}
        self._waiting: dict[str, str] = {}
        self._fresh: list[queue_pb2.Job] = []  # submitted since the last round
        self._later: dict[str, str] = {}  # why fresh jobs wait, written after NOTE_DELAY_S
        self._noting: asyncio.Task[None] | None = None
        self._space_watch: asyncio.Task[None] | None = None
        # Whether a delayed retry may have been added or become due since the retry
        # timer was set (the store is only asked then, not on every round).
        self._retries_changed = True
        # The pending jobs the last store read found in queue order, less those begun
        # since (see `_candidates`); None once something may have changed them.
        self._lookahead: list[DispatchRow] | None = None
        self._lookahead_all = False  # it held every dispatchable job
        self._lookahead_gen = 0  # counts invalidations (a read under way is then stale)
        # Rounds look past the jobs the free slots can take, to tell waiting jobs
        # why, at most once per NOTE_DELAY_S (a round per answer would redo it for
        # each job: measured ~0.17 ms of CPU per job); a later round is then due.
        self._tell_at = 0.0
        self._tell_timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False
        queue.on_event(self._on_job_event)
        servers.on_change(self.wake)

    def wake(self) -> None:
        self._wake.set()

    def running_on(self, alias: str) -> int:
        """How many of the server's slots its jobs take (see `occupied`)."""
        return occupied(r for r in self._running.values() if r.server.row.alias == alias)[alias]

    async def start(self) -> None:
        """Recovers jobs a previous run left PROCESSING, then starts dispatching."""
        await self._recover()
        self._task = asyncio.create_task(self._loop(), name="sq-dispatcher")
        self.wake()

    async def close(self) -> None:
        """Stops dispatching. Running jobs stay PROCESSING and are recovered at the next start."""
        self._closing = True
        mine = [self._task, self._noting, self._space_watch]
        tasks = [t for t in [*mine, *(r.task for r in self._running.values())] if t]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for timer in (self._timer, self._tell_timer):
            if timer:
                timer.cancel()
        for _, backend in self._adapters.values():
            await backend.close()
        self._adapters.clear()

    # ---- deciding ---------------------------------------------------------

    def _on_job_event(self, job: queue_pb2.Job | None, kind: int) -> None:
        if (
            kind != queue_pb2.JOB_EVENT_TYPE_STATUS
            or job is None
            or (
                job.status in (queue_pb2.JOB_STATUS_PENDING, queue_pb2.JOB_STATUS_CANCELLED)
                and job.stage != queue_pb2.JOB_STAGE_WAITING_FOR_SERVER
            )
        ):  # a submit, move, pause, delete, re-queue or cancel: read the queue again
            self._forget_lookahead()
        if job is not None and job.status == queue_pb2.JOB_STATUS_CANCELLED:
            running = self._running.get(job.id)
            if running is not None and running.task is not None:
                running.cancelled_by_user = True
                running.task.cancel()
        if job is not None and job.status != queue_pb2.JOB_STATUS_PENDING:
            self._waiting.pop(job.id, None)
        elif (
            kind == queue_pb2.JOB_EVENT_TYPE_SUBMITTED
            and job is not None
            and len(self._fresh) < MAX_FRESH
        ):
            self._fresh.append(job)
        if kind in WAKING_EVENTS or (
            kind == queue_pb2.JOB_EVENT_TYPE_STATUS
            and job is not None
            and job.status == queue_pb2.JOB_STATUS_PENDING
            and job.stage != queue_pb2.JOB_STAGE_WAITING_FOR_SERVER
        ):
            self.wake()

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._dispatch()
            except Exception:  # a bad round must not stop dispatching
                log.exception("dispatch round failed")
                await asyncio.sleep(1.0)
                self.wake()

    async def _dispatch(self) -> None:
        states = {s.row.alias: s for s in [*await self._servers.list(), *self._places()]}
        busy = occupied(self._running.values())
        views = [self._view(s, busy[alias]) for alias, s in states.items()]
        fresh, self._fresh = self._fresh, []
        # Nothing can start without a free slot: skip the queue scan (submits wake
        # us constantly, and that scan would tax every one of them); just tell the
        # jobs submitted since the last round why they wait.
        no_slot = not any(
            v.up and v.enabled and not v.paused and v.running < v.capacity for v in views
        )
        if no_slot and not fresh:
            return
        paused = await self._queue.is_paused() or bool(self._queue.held)
        if paused or no_slot:
            why_paused = self._queue.held or "the queue is paused"
            for job in fresh[: max(0, FRESH_REASONS - len(self._later))]:
                self._later[job.id] = (
                    why_paused if paused else choose_server(views, _job_view(job))[1]
                )
            if self._later and (self._noting is None or self._noting.done()):
                self._noting = asyncio.create_task(self._note_later())
            return
        # Jobs begun in an earlier round stay PENDING in the store until their
        # attempt's start commits: they are ours already, not candidates.
        # Look as deep as the free slots can use (a job for a particular server may
        # sit behind others), plus the waiting jobs that get a reason.
        free = sum(max(0, v.capacity - v.running) for v in views if v.up and v.enabled)
        telling = self._telling()
        depth = min(LOOKAHEAD, (MAX_REASONS if telling else 0) + 20 * free) + len(self._running)
        aliases = list(states)
        candidates = [row for row in await self._candidates(depth) if row[0] not in self._running]
        if not telling:  # jobs alike beyond the free slots would only wait, and say so later
            candidates = first_alike(candidates, free + 1)
        jobs = [await self._placed(row, aliases) for row in candidates]
        decided = plan(views, jobs, max_waiting=MAX_REASONS if telling else 0)
        placed = {job_id for job_id, _ in decided.assignments}
        for job in jobs:  # names are only kept for jobs that start now
            if job.id not in placed:
                self._names.pop(job.id, None)
        for job_id, alias in decided.assignments:
            self._begin(job_id, states[alias])
            self._waiting.pop(job_id, None)
        if self._lookahead is not None and placed:
            self._lookahead = [row for row in self._lookahead if row[0] not in placed]
        await self._note_waiting(decided.waiting)
        if self._retries_changed:
            self._retries_changed = False
            await self._schedule_retry_wake()

    def _telling(self) -> bool:
        """Whether this round tells the waiting jobs why; if not, a round comes when it may."""
        now = asyncio.get_running_loop().time()
        if now >= self._tell_at:
            self._tell_at = now + NOTE_DELAY_S
            return True
        if self._tell_timer is None:
            self._tell_timer = asyncio.get_running_loop().call_at(self._tell_at, self._tell_due)
        return False

    def _tell_due(self) -> None:
        self._tell_timer = None
        self.wake()

    async def _candidates(self, depth: int) -> list[DispatchRow]:
        """The first `depth` dispatchable jobs in queue order. A server freed by an answer
        needs the next job at once: while nothing but our own starts and finishes has
        changed the queue, the last read serves (less the jobs begun since), and the
        store is read only when that runs short. A stale candidate costs nothing worse
        than a refused claim: the claim's conditional UPDATE decides."""
        cached = self._lookahead
        if cached is not None and (self._lookahead_all or len(cached) >= depth):
            return cached[:depth]
        generation = self._lookahead_gen
        rows = await self._queue.dispatchable(depth)
        if generation == self._lookahead_gen:
            self._lookahead, self._lookahead_all = list(rows), len(rows) < depth
        return rows

    def _forget_lookahead(self) -> None:
        self._lookahead = None
        self._lookahead_gen += 1

    async def _note_later(self) -> None:
        """Writes the reasons gathered over NOTE_DELAY_S in one transaction (a burst of
        submits must not cost a write each)."""
        await asyncio.sleep(NOTE_DELAY_S)
        reasons, self._later = self._later, {}
        try:
            await self._note_waiting(reasons)
        except Exception:  # only a display hint: never let it break dispatching
            log.exception("could not record why jobs wait")

    async def _note_waiting(self, reasons: dict[str, str]) -> None:
        """Records why jobs wait. Merely waiting for a busy server's turn is what QUEUED
        already says: that is written only to clear an earlier reason (one write per
        job saved while the queue drains)."""
        changed = {}
        for job_id, reason in reasons.items():
            if reason.startswith(SLOT_WAIT):
                reason = ""
                if job_id not in self._waiting:
                    continue
            if self._waiting.get(job_id) != reason:
                changed[job_id] = reason
        if changed:
            for job_id, reason in changed.items():
                if reason:
                    self._waiting[job_id] = reason
                else:
                    self._waiting.pop(job_id, None)
            await self._queue.note_waiting(changed)

    async def _placed(self, row: DispatchRow, aliases: list[str]) -> JobView:
        """The job with the servers that have its model and LoRAs (from the library), and
        the names each server uses for them (kept for `_begin`)."""
        job_id, app, target, model, loras, files = row
        if files:
            return await self._placed_files(job_id, app, target, files, aliases)
        if self._library is None or not (model or loras):
            return JobView(job_id, app, target, model, loras)
        allowed = set(aliases)
        sha = ""
        names: dict[str, dict[str, str]] = {}  # what the job names -> alias -> backend name
        for reference in (model, *loras):
            if not reference:
                continue
            placement = await self._library.hosts_for(reference)
            if placement is None:
                return JobView(job_id, app, target, model, loras)
            names[reference] = placement.hosts
            if reference == model:
                sha = placement.sha256
            # Servers that reported no inventory (or, for a LoRA, no LoRAs) stay eligible.
            reporting = (
                self._library.inventoried if reference == model else self._library.lora_hosts
            )
            allowed = {a for a in allowed if a in placement.hosts or a not in reporting}
        self._names[job_id] = (sha, names)
        return JobView(job_id, app, target, model, loras, frozenset(allowed))

    async def _placed_files(
        self,
        job_id: str,
        app: str,
        target: str,
        files: tuple[tuple[str, str], ...],
        aliases: list[str],
    ) -> JobView:
        """A workflow that lists its files runs only where the library has every one (by
        SHA-256); each server's missing files are its reason, and the names it uses for
        them are kept for `_begin` (the backend rewrites the workflow's inputs)."""
        names: dict[str, dict[str, str]] = {}
        lacking: dict[str, list[str]] = {alias: [] for alias in aliases}
        for sha, name in files:
            placement = None if self._library is None else await self._library.hosts_for(sha)
            hosts = placement.hosts if placement is not None and placement.sha256 == sha else {}
            names[sha] = hosts
            for alias in aliases:
                if alias not in hosts:
                    lacking[alias].append(name)
        allowed = frozenset(a for a, missing in lacking.items() if not missing)
        missing = tuple((a, ", ".join(m)) for a, m in lacking.items() if m)
        self._names[job_id] = ("", names)
        return JobView(job_id, app, target, hosts=allowed, missing=missing)

    def _view(self, state: ServerState, running: int) -> ServerView:
        row, health = state.row, state.health
        return ServerView(
            alias=row.alias,
            kind=row.kind,
            up=health.state is HealthState.UP,
            enabled=row.enabled,
            paused=row.paused,
            running=running,
            capacity=row.max_concurrency,
            loaded_model=health.loaded_model,
            down_reason=health.reason if health.state is HealthState.DOWN else "",
            model_names=health.model_names,
            loras=health.loras,
        )

    async def _schedule_retry_wake(self) -> None:
        when = await self._queue.next_retry_at()
        if self._timer:
            self._timer.cancel()
            self._timer = None
        if when is not None:
            delay = max(0.0, (when - utcnow()).total_seconds()) + 0.01
            self._timer = asyncio.get_running_loop().call_later(delay, self._retry_due)

    def _retry_due(self) -> None:
        self._retries_changed = True
        self._forget_lookahead()  # a delayed job is now dispatchable
        self.wake()

    # ---- running ----------------------------------------------------------

    def _begin(self, job_id: str, server: ServerState) -> None:
        """Starts an attempt; the full job is loaded when `QueueService.start` claims it."""
        job = queue_pb2.Job(id=job_id)
        backend = self._adapter(server)
        attempt = Attempt(job, random_uuid(), lambda p: None)
        attempt.may_send = lambda: self.may_act()
        sha, names = self._names.pop(job_id, ("", {}))
        alias = server.row.alias
        attempt.model_sha256 = sha
        attempt.names = {ref: hosts[alias] for ref, hosts in names.items() if alias in hosts}
        running = Running(job, server, attempt, backend)
        attempt.on_progress = self._progress_relay(running)

        async def on_stage(stage: JobStage, reason: str) -> None:
            running.job.stage, running.job.reason = STAGE_TO_PB[stage], reason  # (progress events)
            await self._queue.note(job_id, JobStatus.PROCESSING, stage, reason)

        attempt.on_stage = on_stage
        self._running[job.id] = running
        running.task = asyncio.create_task(self._attempt(running), name=f"sq-job-{job.id}")

    async def _attempt(self, running: Running) -> None:
        async def work() -> None:
            try:
                started = await self._queue.start(
                    running.job.id,
                    running.server.row.alias,
                    running.attempt.task_id,
                    running.attempt.model_sha256,
                )
            except BaseException:  # not claimed: if still pending, it is a candidate again
                self._forget_lookahead()
                raise
            running.job = running.attempt.job = started
            # asyncio.timeout keeps a user's cancel that lands as the backend finishes
            # (Python 3.11's wait_for would return the result and lose it).
            async with asyncio.timeout(self._settings.attempt_timeout):
                images = await running.backend.run(running.attempt)
            self._answered(running)
            await self._complete(running, images)

        await self._supervise(running, work())

    def _answered(self, running: Running) -> None:
        """The server is done with the job: the next one may go to it at once."""
        running.answered = True
        self.wake()

    async def _supervise(self, running: Running, work: Coroutine[Any, Any, None]) -> None:
        """Runs one attempt (or its recovery) and turns each way it can end into a job state."""
        job, alias = running.job, running.server.row.alias
        try:
            await work
        except asyncio.CancelledError:
            await self._on_cancelled(running)
        except FailedPrecondition:
            pass  # cancelled meanwhile: its new state stands
        except TimeoutError:
            await asyncio.shield(self._interrupt(running))
            await self._retry_or_fail(
                running, f"attempt timed out after {self._settings.attempt_timeout:g} s"
            )
        except BackendUnavailable as e:
            self._servers.mark_down(alias, e.message)
            await self._retry_or_fail(running, e.message)
        except BackendRejected as e:
            await self._end(job.id, JobStatus.FAILED, e.message)
        except Exception as e:
            log.exception("job %s failed on %s", job.id, alias)
            await self._end(job.id, JobStatus.FAILED, f"internal error: {type(e).__name__}")
        finally:
            if not self._closing and self._running.get(job.id) is running:
                del self._running[job.id]
                self.wake()
            await self._release(running)

    def _adapter(self, server: ServerState) -> Backend:
        """The server's adapter, shared by its attempts (one connection pool per server)."""
        cached = self._adapters.get(server.row.alias)
        if cached is not None and cached[0] == server.config:
            return cached[1]
        backend = self._backends(server.config)
        # A replaced adapter (the server's settings changed) is closed by its last attempt.
        self._adapters[server.row.alias] = (server.config, backend)
        return backend

    async def _release(self, running: Running) -> None:
        """Closes the attempt's adapter if it was replaced and no other attempt uses it."""
        current = self._adapters.get(running.server.row.alias)
        if current is not None and current[1] is running.backend:
            return  # still the server's adapter: close() closes it
        if any(r.backend is running.backend for r in self._running.values() if r is not running):
            return  # another attempt still needs it
        await running.backend.close()

    async def _complete(self, running: Running, images: list[Image]) -> None:
        """Writes the images, then stores their records and completes the job at once.
        No room for them: the job goes back to the queue and dispatching is held until
        there is (nothing else would be written either)."""
        model = running.job.spec.params.model if running.job.spec.HasField("params") else ""
        saving = self._results.prepare(running.job, running.server.row.alias, images, model)
        try:
            # The files are written first, on the image threads, which then hand the
            # completion to the store thread: one wake-up of the event loop, at the end.
            await self._queue.finish(
                running.job.id,
                JobStatus.COMPLETED,
                f"{len(images)} image(s)",
                also=lambda connection: self._results.add(connection, saving.records),
                first=(self._results.writer, saving.write),
            )
        except OSError as e:  # from writing the files: nothing was stored
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            needed = sum(len(image.data) for image in images)
            await self._out_of_space(running, needed)
        except FailedPrecondition:  # cancelled meanwhile: its images are not kept
            await self._results.discard(saving.records)

    async def _out_of_space(self, running: Running, needed: int) -> None:
        root = self._results.root
        free = await asyncio.to_thread(lambda: shutil.disk_usage(root).free)
        await self._queue.hold(
            f"the output disk is full ({root}: {free / 2**20:,.1f} MiB free); dispatching "
            "resumes by itself when there is room"
        )
        with contextlib.suppress(FailedPrecondition):
            await self._queue.finish(
                running.job.id, JobStatus.PENDING,
                "its images could not be written (output disk full); it runs again when "
                "there is room",
            )  # fmt: skip
        if self._space_watch is None or self._space_watch.done():
            self._space_watch = asyncio.create_task(self._await_space(needed))

    async def _await_space(self, needed: int) -> None:
        """Releases the hold once the output folder has room for what failed (twice
        over, and a margin), checking every SPACE_CHECK_S."""
        want = 2 * needed + SPACE_MARGIN
        while True:
            await asyncio.sleep(SPACE_CHECK_S)
            try:
                free = await asyncio.to_thread(lambda: shutil.disk_usage(self._results.root).free)
            except OSError:
                continue
            if free >= want:
                await self._queue.hold("")
                self.wake()
                return

    async def _end(self, job_id: str, status: JobStatus, reason: str) -> None:
        with contextlib.suppress(FailedPrecondition):  # a user cancel got there first
            await self._queue.finish(job_id, status, reason)

    async def _retry_or_fail(self, running: Running, reason: str) -> None:
        attempts = running.job.attempts
        if attempts >= self._settings.max_attempts:
            await self._end(
                running.job.id, JobStatus.FAILED, f"gave up after {attempts} attempts: {reason}"
            )
            return
        delay = min(
            self._settings.retry_backoff * 2 ** (attempts - 1), self._settings.retry_backoff_max
        )
        self._retries_changed = True
        with contextlib.suppress(FailedPrecondition):
            await self._queue.finish(
                running.job.id,
                JobStatus.PENDING,
                f"attempt {attempts} failed ({reason}); retrying in {delay:g} s",
                not_before=utcnow() + timedelta(seconds=delay),
            )
        self._retries_changed = True  # again: a round may have run before the commit
        self.wake()

    async def _on_cancelled(self, running: Running) -> None:
        """A user cancel interrupts the backend; a shutdown leaves the job for recovery."""
        if running.cancelled_by_user:
            if not running.answered:  # else the server may be on its next job already
                await asyncio.shield(self._interrupt(running))
        elif not self._closing:
            raise asyncio.CancelledError

    async def _interrupt(self, running: Running) -> None:
        try:
            await running.backend.cancel(running.attempt)
        except Exception as e:  # best effort: the job's state is already decided
            log.warning(
                "job %s: interrupting %s failed: %s", running.job.id, running.server.row.alias, e
            )

    def _progress_relay(self, running: Running) -> Callable[[queue_pb2.JobProgress], None]:
        last_preview = 0.0
        shown = queue_pb2.JobProgress()  # the preview watchers see now

        def relay(progress: queue_pb2.JobProgress) -> None:
            # A new preview at most every PREVIEW_EVERY_S; in between, updates carry
            # the one shown, so a watcher's preview never disappears between frames.
            nonlocal last_preview
            now = time.monotonic()
            if progress.preview_image and now - last_preview >= PREVIEW_EVERY_S:
                last_preview = now
                shown.preview_image, shown.preview_mime = (
                    progress.preview_image, progress.preview_mime,
                )  # fmt: skip
            elif shown.preview_image:
                progress.preview_image, progress.preview_mime = (
                    shown.preview_image, shown.preview_mime,
                )  # fmt: skip
            else:
                progress.ClearField("preview_image")
                progress.ClearField("preview_mime")
            self._queue.report_progress(running.job, progress)

        return relay

    # ---- recovery ---------------------------------------------------------

    async def _recover(self) -> None:
        states = {s.row.alias: s for s in await self._servers.list()}
        for job, task_id in await self._queue.interrupted():
            server = states.get(job.server)
            if server is None and ":" in job.server:  # a node's model: the node may be back
                server = ServerState(node_row(job.server), Health())
            if server is None or not task_id:
                await self._requeue_after_restart(job)
                continue
            backend = self._adapter(server)
            attempt = Attempt(job, task_id, lambda p: None)
            attempt.may_send = lambda: self.may_act()
            running = Running(job, server, attempt, backend)
            attempt.on_progress = self._progress_relay(running)
            self._running[job.id] = running
            running.task = asyncio.create_task(self._resume(running), name=f"sq-recover-{job.id}")

    async def _resume(self, running: Running) -> None:
        async def work() -> None:
            async with asyncio.timeout(self._settings.attempt_timeout):
                images = await running.backend.recover(running.attempt)
            self._answered(running)
            if images is None:
                await self._requeue_after_restart(running.job)
            else:
                log.info("job %s recovered from %s", running.job.id, running.server.row.alias)
                await self._complete(running, images)

        await self._supervise(running, work())

    async def _requeue_after_restart(self, job: queue_pb2.Job) -> None:
        with contextlib.suppress(FailedPrecondition):
            await self._queue.finish(
                job.id, JobStatus.PENDING, "re-queued: the coordinator restarted during its attempt"
            )


def first_alike(rows: list[DispatchRow], keep: int) -> list[DispatchRow]:
    """`rows` less those beyond the first `keep` asking for the same (app, server,
    model, LoRAs, files): a farm's queue is mostly batches of one spec, and placing
    each candidate of a round (20 per free slot) cost more than the rest of it."""
    seen: Counter[tuple[object, ...]] = Counter()
    kept = []
    for row in rows:
        alike = row[1:]
        if seen[alike] < keep:
            seen[alike] += 1
            kept.append(row)
    return kept


def _job_view(job: queue_pb2.Job) -> JobView:
    model = job.spec.params.model if job.spec.HasField("params") else ""
    return JobView(
        id=job.id, app=APP_FROM_PB[job.spec.app], target=job.spec.target_server, model=model
    )
