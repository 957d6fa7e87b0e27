"""The dispatcher's side of the queue: claiming a pending job for a server, noting
what a running attempt does, ending or re-queueing it, and what is ready to run.

Used by the dispatcher (and tests drive it directly); every change is committed
before it is published, through the queue's own plumbing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, or_, update
from sqlmodel import Session, col, select

from stablequeue.v1 import queue_pb2
from stablequeue.v1.queue_pb2 import JobEventType as ET
from stablequeue_coordinator.common import timestamp, utcnow
from stablequeue_coordinator.errors import FailedPrecondition, NotFound
from stablequeue_coordinator.queue.states import JobStage, JobStatus, move_stage, transition
from stablequeue_coordinator.store.tables import JobRow, SettingRow

if TYPE_CHECKING:
    from stablequeue_coordinator.queue.events import EventBus
    from stablequeue_coordinator.store.db import Database

PAUSED_SETTING = "queue.paused"
# What scheduling reads of a pending job (see Attempts.dispatchable).
DispatchRow = tuple[str, str, str, str, tuple[str, ...], tuple[tuple[str, str], ...]]


class Attempts:
    """The dispatcher-facing half of `QueueService` (which it is mixed into)."""

    _db: Database
    _bus: EventBus
    _progress: dict[str, queue_pb2.JobProgress]
    _paused: bool | None

    if TYPE_CHECKING:  # QueueService's plumbing, which every change goes through

        async def _change(
            self, work: Callable[[Session], JobRow], kind: int, *, full: bool = False
        ) -> queue_pb2.Job: ...

        def _publish(self, row: JobRow, kind: int) -> queue_pb2.Job: ...

    async def start(
        self, job_id: str, server: str, task_id: str = "", model_sha256: str = ""
    ) -> queue_pb2.Job:
        """Marks a pending job PROCESSING on `server` (one more attempt).

        `task_id` is the id the backend will know the attempt by; it is stored
        before the backend hears of it, so a restart can look for it.
        """

        def work(session: Session) -> JobRow:
            # The claim: a conditional update as the transaction's first statement. It
            # takes the row's lock (PostgreSQL) or the write lock (SQLite) and matches only
            # while the job is pending, so of two claims exactly one wins; the other
            # waits, then matches nothing. (A read first would not do: SQLite runs it
            # outside the transaction, and both claims saw PENDING.)
            claimed = session.exec(
                update(JobRow)  # type: ignore[call-overload]
                .where(col(JobRow.id) == job_id, col(JobRow.status) == JobStatus.PENDING.value)
                .values(updated_at=JobRow.updated_at)
            )
            row = get_job(session, job_id)
            if claimed.rowcount != 1:
                raise FailedPrecondition(f"job {job_id} is {row.status}, not pending")
            transition(row, JobStatus.PROCESSING, stage=JobStage.GENERATING, reason="")
            row.server = server
            row.backend_task_id = task_id or None
            row.model_sha256 = model_sha256 or None
            session.add(row)
            return row

        return await self._change(work, ET.JOB_EVENT_TYPE_STATUS, full=True)

    async def finish(
        self,
        job_id: str,
        status: JobStatus,
        reason: str = "",
        not_before: datetime | None = None,
        also: Callable[[Session], None] | None = None,
    ) -> queue_pb2.Job:
        """Ends a running job (COMPLETED / FAILED) or re-queues it (PENDING, after `not_before`).

        `also` runs in the same transaction (the dispatcher stores a job's result
        records with its completion: both or neither).

        Raises:
            FailedPrecondition: the job is no longer running (e.g. a user cancelled it).
        """

        def work(session: Session) -> JobRow:
            row = get_job(session, job_id)
            stage = JobStage.QUEUED if status is JobStatus.PENDING else JobStage.DONE
            transition(row, status, stage=stage, reason=reason)
            if status is JobStatus.PENDING:
                row.not_before = not_before
                row.backend_task_id = None
            session.add(row)
            if also is not None:
                also(session)
            return row

        job = await self._change(work, ET.JOB_EVENT_TYPE_STATUS)
        self._progress.pop(job_id, None)
        return job

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

        Only what scheduling needs: this runs on every dispatch round, and building
        full Job messages for the whole lookahead was most of a round's cost.
        """

        def query(session: Session) -> list[DispatchRow]:
            now = utcnow()
            stmt = (
                select(JobRow.id, JobRow.app, JobRow.target_server, JobRow.spec)
                .where(JobRow.status == JobStatus.PENDING.value)
                .where(or_(col(JobRow.not_before).is_(None), col(JobRow.not_before) <= now))
                .order_by(col(JobRow.priority).desc(), col(JobRow.position), col(JobRow.id))
                .limit(limit)
            )
            found = []
            for job_id, app, target, blob in session.exec(stmt):
                spec = queue_pb2.JobSpec.FromString(blob)
                params = spec.params if spec.HasField("params") else queue_pb2.GenerationParams()
                loras = tuple(lora.name for lora in params.loras)
                files = tuple((m.sha256, m.name) for m in spec.models)
                found.append((job_id, app, target or "", params.model, loras, files))
            return found

        return await self._db.run(query)

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


def get_job(session: Session, job_id: str) -> JobRow:
    row = session.get(JobRow, job_id) if job_id else None
    if row is None:
        raise NotFound(f"no job with id {job_id!r}")
    return row


def _shown(progress: queue_pb2.JobProgress) -> tuple[int, int, float, int]:
    """What a watcher sees of a progress report, preview aside."""
    eta = round(progress.eta_seconds) if progress.eta_seconds >= 0 else -1
    return progress.step, progress.total_steps, round(progress.fraction, 3), eta
