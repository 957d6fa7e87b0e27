"""The dispatcher's side of the queue: claiming a pending job for a server, noting
what a running attempt does, ending or re-queueing it, and what is ready to run.

Used by the dispatcher (and tests drive it directly); every change is committed
before it is published, through the queue's own plumbing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Connection, Row, bindparam, func, or_, update
from sqlmodel import Session, col, select

from stablequeue.v1 import queue_pb2
from stablequeue.v1.queue_pb2 import JobEventType as ET
from stablequeue_coordinator.common import timestamp, utcnow
from stablequeue_coordinator.errors import FailedPrecondition, NotFound, StableQueueError
from stablequeue_coordinator.queue.states import (
    JobStage,
    JobStatus,
    log_transition,
    move_stage,
    transition_values,
)
from stablequeue_coordinator.queue.tally import JobTally
from stablequeue_coordinator.store.hot import Fetched, HotStatement
from stablequeue_coordinator.store.tables import JobRow, SettingRow

if TYPE_CHECKING:
    from stablequeue_coordinator.queue.events import EventBus
    from stablequeue_coordinator.store.db import Database, Prepared

PAUSED_SETTING = "queue.paused"
JOBS = JobRow.__table__  # type: ignore[attr-defined]
ONE_MORE_ATTEMPT = JOBS.c.attempts + 1
STATUS_OF = select(JOBS.c.status).where(JOBS.c.id == bindparam("w_id"))
_MOVES: dict[tuple[Any, ...], HotStatement] = {}  # see _move_statement
# What scheduling reads of a pending job (see Attempts.dispatchable).
DispatchRow = tuple[str, str, str, str, tuple[str, ...], tuple[tuple[str, str], ...]]
# What of a job's spec scheduling reads: model, LoRA names, required files.
SchedulingNeeds = tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]]


class Attempts:
    """The dispatcher-facing half of `QueueService` (which it is mixed into)."""

    _db: Database
    _bus: EventBus
    _progress: dict[str, queue_pb2.JobProgress]
    _paused: bool | None
    tally: JobTally
    _scheduling: dict[str, SchedulingNeeds]  # by job id, for the jobs of the last lookahead

    if TYPE_CHECKING:  # QueueService's plumbing, which every change goes through

        def _publish(self, row: JobRow | Row[Any], kind: int) -> queue_pb2.Job: ...

        def to_pb(self, row: JobRow | Row[Any], *, full: bool = False) -> queue_pb2.Job: ...

        async def _add_images(self, job: queue_pb2.Job) -> None: ...

    async def start(
        self, job_id: str, server: str, task_id: str = "", model_sha256: str = ""
    ) -> queue_pb2.Job:
        """Marks a pending job PROCESSING on `server` (one more attempt).

        `task_id` is the id the backend will know the attempt by; it is stored
        before the backend hears of it, so a restart can look for it.
        """
        values = transition_values(job_id, JobStatus.PROCESSING, JobStage.GENERATING, "")
        values.update(
            attempts=ONE_MORE_ATTEMPT,
            server=server,
            backend_task_id=task_id or None,
            model_sha256=model_sha256 or None,
        )
        row = await self._db.group(
            lambda connection: _move(connection, job_id, JobStatus.PENDING, values, self.tally)
        )
        if isinstance(row, StableQueueError):
            raise row
        log_transition(job_id, JobStatus.PENDING, JobStatus.PROCESSING, JobStage.GENERATING, "")
        job = self._publish(row, ET.JOB_EVENT_TYPE_STATUS)
        full = queue_pb2.Job()  # the published one is the watchers' own
        if job.init_image_count:
            full = self.to_pb(row, full=True)
            await self._add_images(full)
        else:
            full.CopyFrom(job)
        return full

    async def finish(
        self,
        job_id: str,
        status: JobStatus,
        reason: str = "",
        not_before: datetime | None = None,
        also: Callable[[Connection], None] | None = None,
        first: Prepared | None = None,
    ) -> queue_pb2.Job:
        """Ends a running job (COMPLETED / FAILED) or re-queues it (PENDING, after `not_before`).

        `also` runs in the same transaction (the dispatcher stores a job's result
        records with its completion: both or neither); `first` before it, off the
        store thread (their image files written: see `Database.group`).

        Raises:
            FailedPrecondition: the job is no longer running (e.g. a user cancelled it).
        """
        stage = JobStage.QUEUED if status is JobStatus.PENDING else JobStage.DONE
        values = transition_values(job_id, status, stage, reason)
        if status is JobStatus.PENDING:
            values.update(not_before=not_before, backend_task_id=None)

        def work(connection: Connection) -> Fetched | StableQueueError:
            row = _move(connection, job_id, JobStatus.PROCESSING, values, self.tally)
            if also is not None and not isinstance(row, StableQueueError):
                also(connection)
            return row

        row = await self._db.group(work, first=first)
        if isinstance(row, StableQueueError):
            raise row
        log_transition(job_id, JobStatus.PROCESSING, status, stage, reason)
        self._progress.pop(job_id, None)
        return self._publish(row, ET.JOB_EVENT_TYPE_STATUS)

    async def note(self, job_id: str, status: JobStatus, stage: JobStage, reason: str) -> None:
        """Updates what a job in `status` is doing and why; nothing if its status moved on."""

        def work(session: Session) -> JobRow | None:
            row = session.get(JobRow, job_id)
            if row is None or row.status != status.value:
                return None
            if not move_stage(row, stage, reason):
                return None
            session.add(row)
            return row

        row = await self._db.run(work)
        if row is not None:
            self._publish(row, ET.JOB_EVENT_TYPE_STATUS)

    async def note_waiting(self, reasons: dict[str, str]) -> None:
        """Marks pending jobs WAITING_FOR_SERVER with why (an empty reason: back to
        QUEUED), in one transaction."""

        def work(session: Session) -> list[JobRow]:
            now, changed = utcnow(), []
            rows = session.exec(select(JobRow).where(col(JobRow.id).in_(list(reasons))))
            for row in rows:
                reason = reasons[row.id]
                if row.status != JobStatus.PENDING.value:
                    continue
                if move_stage(row, JobStage.WAITING_FOR_SERVER, reason, now):
                    session.add(row)
                    changed.append(row)
            return changed

        if reasons:
            for row in await self._db.run(work):
                self._publish(row, ET.JOB_EVENT_TYPE_STATUS)

    async def dispatchable(self, limit: int) -> list[DispatchRow]:
        """(id, app, target server, model, LoRA names, required files as (sha256, name))
        of the first `limit` pending jobs in queue order whose retry delay has passed.

        Only what scheduling needs: this runs on every dispatch round. A job's spec
        never changes, so what scheduling reads of it is parsed once and kept while
        the job stays in the lookahead; a round reads the specs of new jobs only.
        """

        def query(connection: Connection) -> list[tuple[str, str, str | None, bytes | None]]:
            now = utcnow()
            first = connection.execute(
                select(JOBS.c.id, JOBS.c.app, JOBS.c.target_server)
                .where(JOBS.c.status == JobStatus.PENDING.value)
                .where(or_(JOBS.c.not_before.is_(None), JOBS.c.not_before <= now))
                .order_by(JOBS.c.priority.desc(), JOBS.c.position, JOBS.c.id)
                .limit(limit)
            ).all()
            new = [job_id for job_id, _, _ in first if job_id not in known]
            specs = dict(
                connection.execute(select(JOBS.c.id, JOBS.c.spec).where(JOBS.c.id.in_(new))).all()
                if new
                else ()
            )
            return [(job_id, app, target, specs.get(job_id)) for job_id, app, target in first]

        known = self._scheduling
        found, kept = [], {}
        for job_id, app, target, blob in await self._db.group(query):
            needs = known[job_id] if blob is None else _scheduling_needs(blob)
            kept[job_id] = needs
            found.append((job_id, app, target or "", *needs))
        self._scheduling = kept
        return found

    async def next_retry_at(self) -> datetime | None:
        """When the earliest delayed pending job becomes dispatchable."""
        return await self._db.run(
            lambda s: s.exec(
                select(func.min(JobRow.not_before)).where(
                    JobRow.status == JobStatus.PENDING.value, col(JobRow.not_before).is_not(None)
                )
            ).one()
        )

    async def interrupted(self) -> list[tuple[queue_pb2.Job, str]]:
        """Jobs left PROCESSING by a previous run, with their backend task ids."""

        def query(session: Session) -> list[JobRow]:
            stmt = select(JobRow).where(JobRow.status == JobStatus.PROCESSING.value)
            return list(session.exec(stmt))

        found = []
        for row in await self._db.run(query):
            job = self.to_pb(row, full=True)
            await self._add_images(job)
            found.append((job, row.backend_task_id or ""))
        return found

    async def is_paused(self) -> bool:
        """Whether the whole queue is paused (read once, then kept: only this process
        changes it)."""

        def read(session: Session) -> bool:
            row = session.get(SettingRow, PAUSED_SETTING)
            return row is not None and bool(json.loads(row.value))

        if self._paused is None:
            self._paused = await self._db.run(read)
        return self._paused

    def report_progress(self, job: queue_pb2.Job, progress: queue_pb2.JobProgress) -> None:
        """Records and publishes live progress (not persisted: it is stale on restart).
        A report that changes nothing a watcher sees (same step, fraction, whole-second
        ETA, no new preview) is not published."""
        previous = self._progress.get(job.id)
        self._progress[job.id] = progress
        if (
            previous is not None
            and progress.preview_image == previous.preview_image
            and _shown(previous) == _shown(progress)
        ):
            return
        if self._bus.wants(job.id):
            event_job = queue_pb2.Job()
            event_job.CopyFrom(job)
            event_job.progress.CopyFrom(progress)
            self._bus.publish_job(
                queue_pb2.JobEvent(
                    type=ET.JOB_EVENT_TYPE_PROGRESS, job=event_job, time=timestamp(utcnow())
                )
            )


def _move(
    connection: Connection,
    job_id: str,
    leaving: JobStatus,
    values: dict[str, Any],
    tally: JobTally,
) -> Fetched | StableQueueError:
    """The dispatcher's moves of a job, as one conditional UPDATE that returns the row:
    it matches only while the job is still in `leaving`, and being the transaction's
    first statement it takes the row's lock (PostgreSQL) or the write lock (SQLite),
    so of two claims exactly one wins; the other waits, then matches nothing. (A read
    first would not do: SQLite runs it outside the transaction, and both claims saw
    PENDING.) A job that moved on meanwhile (a user's cancel) is the error returned,
    not raised, so the writes grouped with it commit."""
    plain = {f"v_{k}": v for k, v in values.items() if not isinstance(v, ColumnElement)}
    row = _move_statement(leaving, tuple(values.items())).first(
        connection, {"w_id": job_id, **plain}
    )
    if row is not None:
        tally.change(row.submitted_by, leaving.value, row.status)
        return row
    now = connection.execute(STATUS_OF, {"w_id": job_id}).scalar()
    if now is None:
        return NotFound(f"no job with id {job_id!r}")
    return FailedPrecondition(f"job {job_id} is {now}, not {leaving.value}")


def _move_statement(leaving: JobStatus, values: tuple[tuple[str, Any], ...]) -> HotStatement:
    """The UPDATE for a move setting these columns, built once per shape (the columns,
    and SQL expressions such as ONE_MORE_ATTEMPT as they are): the hot path then
    skips building, keying and compiling a statement on every job (see `HotStatement`)."""
    shape = (leaving, tuple((k, v if isinstance(v, ColumnElement) else None) for k, v in values))
    statement = _MOVES.get(shape)
    if statement is None:
        assigned = {
            k: v if isinstance(v, ColumnElement) else bindparam(f"v_{k}", type_=JOBS.c[k].type)
            for k, v in values
        }
        statement = _MOVES[shape] = HotStatement(
            update(JOBS)
            .where(JOBS.c.id == bindparam("w_id"), JOBS.c.status == leaving.value)
            .values(assigned)
            .returning(*JOBS.c)
        )
    return statement


def _scheduling_needs(blob: bytes) -> SchedulingNeeds:
    spec = queue_pb2.JobSpec.FromString(blob)
    params = spec.params if spec.HasField("params") else queue_pb2.GenerationParams()
    loras = tuple(lora.name for lora in params.loras)
    return params.model, loras, tuple((m.sha256, m.name) for m in spec.models)


def _shown(progress: queue_pb2.JobProgress) -> tuple[int, int, float, int]:
    """What a watcher sees of a progress report, preview aside."""
    eta = round(progress.eta_seconds) if progress.eta_seconds >= 0 else -1
    return progress.step, progress.total_steps, round(progress.fraction, 3), eta
