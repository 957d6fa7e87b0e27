"""The queue service: every change to a job goes through here, is committed, then published."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

from sqlalchemy import func
from sqlmodel import Session, select

from coordinator.auth.principal import Principal
from coordinator.errors import FailedPrecondition, InvalidArgument, NotFound
from coordinator.queue import ordering, validation
from coordinator.queue.convert import STATUS_FROM_PB, job_to_pb, timestamp
from coordinator.queue.events import EventBus
from coordinator.queue.listing import JobQuery, list_page
from coordinator.queue.states import TERMINAL, JobStage, JobStatus, transition, utcnow
from coordinator.queue.submissions import Submission, SubmissionWriter, fingerprint, vary_seeds
from coordinator.store import Database
from coordinator.store.tables import JobRow, SettingRow
from stablequeue.v1 import queue_pb2

PAUSED_SETTING = "queue.paused"
SEED_KEYS = ("seed", "noise_seed")
ET = queue_pb2.JobEventType


class QueueService:
    """Owns jobs: submission, ordering, cancellation, state changes and their events.

    Args:
        db: the store.
        bus: where committed changes are published for watchers.
    """

    def __init__(self, db: Database, bus: EventBus) -> None:
        self._db = db
        self._bus = bus
        self._progress: dict[str, queue_pb2.JobProgress] = {}
        self._writer = SubmissionWriter(db)

    async def close(self) -> None:
        """Stops the submission writer (after the server has stopped taking calls)."""
        await self._writer.close()

    # ---- submitting -------------------------------------------------------

    async def submit(
        self, who: Principal, spec: queue_pb2.JobSpec, idempotency_key: str = ""
    ) -> tuple[queue_pb2.Job, bool]:
        """Stores one PENDING job. Returns it and whether it was newly created.

        Raises:
            InvalidArgument: a field breaks a rule.
            AlreadyExists: the idempotency key was used for a different request.
        """
        normalized = validation.normalize_spec(spec)
        validation.validate_idempotency_key(idempotency_key)
        submission = Submission(who, [normalized], idempotency_key, fingerprint(normalized, 1, 0))
        jobs, created = await self._store_submission(submission)
        return jobs[0], created

    async def submit_many(
        self,
        who: Principal,
        spec: queue_pb2.JobSpec,
        count: int,
        seed_mode: int,
        idempotency_key: str = "",
    ) -> tuple[list[queue_pb2.Job], bool]:
        """Stores `count` copies of a job in one transaction, varying seeds by `seed_mode`.

        Raises:
            InvalidArgument: a field breaks a rule.
            AlreadyExists: the idempotency key was used for a different request.
        """
        normalized = validation.normalize_spec(spec)
        validation.validate_count(count)
        validation.check_enum("seed_mode", queue_pb2.SeedMode, seed_mode, allow_zero=True)
        validation.validate_idempotency_key(idempotency_key)
        mode = seed_mode or queue_pb2.SEED_MODE_INCREMENT
        specs = vary_seeds(normalized, count, mode)
        submission = Submission(who, specs, idempotency_key, fingerprint(normalized, count, mode))
        return await self._store_submission(submission)

    async def _store_submission(self, submission: Submission) -> tuple[list[queue_pb2.Job], bool]:
        records, created = await self._writer.store(submission)
        if not created:
            return [self.to_pb(record) for record in records], False
        return [self._publish(record, ET.JOB_EVENT_TYPE_SUBMITTED) for record in records], True

    # ---- reading ----------------------------------------------------------

    async def get(self, who: Principal, job_id: str, *, full: bool = True) -> queue_pb2.Job:
        """The job, with init image bytes when `full`.

        Raises:
            NotFound: unknown id, or another caller's job (for non-admins).
        """
        row = await self._db.run(lambda s: _owned(s, who, job_id))
        return self.to_pb(row, full=full)

    async def list(self, who: Principal, query: JobQuery) -> tuple[list[queue_pb2.Job], str]:
        """One page of jobs and the token of the next page ("" on the last)."""
        query = query.restricted_to(who)
        rows, token = await self._db.run(lambda s: list_page(s, query))
        return [self.to_pb(row) for row in rows], token

    async def stats(self) -> queue_pb2.QueueStats:
        return await self._db.run(_stats)

    def to_pb(self, row: JobRow, *, full: bool = False) -> queue_pb2.Job:
        return job_to_pb(row, self._progress.get(row.id), full=full)

    # ---- changing ---------------------------------------------------------

    async def cancel(self, who: Principal, job_id: str) -> queue_pb2.Job:
        """Cancels a pending or running job; final.

        Raises:
            NotFound: unknown id.
            FailedPrecondition: the job already finished.
        """

        def work(session: Session) -> JobRow:
            row = _owned(session, who, job_id)
            if JobStatus(row.status) in TERMINAL:
                raise FailedPrecondition(f"job {job_id} is already {row.status}")
            transition(row, JobStatus.CANCELLED, stage=JobStage.DONE, reason=_by(who))
            session.add(row)
            return row

        return await self._change(work, ET.JOB_EVENT_TYPE_STATUS)

    async def retry(self, who: Principal, job_id: str) -> queue_pb2.Job:
        """Puts a failed or cancelled job back at the end of the queue, attempts reset."""

        def work(session: Session) -> JobRow:
            row = _owned(session, who, job_id)
            if row.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
                raise FailedPrecondition(
                    f"job {job_id} is {row.status}; only failed or cancelled jobs can be retried"
                )
            transition(row, JobStatus.PENDING, stage=JobStage.QUEUED, reason="retried")
            row.position = ordering.tail_position(session)
            row.attempts = 0
            row.server = None
            session.add(row)
            return row

        return await self._change(work, ET.JOB_EVENT_TYPE_STATUS)

    async def delete(self, who: Principal, job_id: str) -> None:
        """Deletes a finished job.

        Raises:
            FailedPrecondition: the job is pending or running (cancel it first).
        """

        def work(session: Session) -> JobRow:
            row = _owned(session, who, job_id)
            if JobStatus(row.status) not in TERMINAL:
                raise FailedPrecondition(
                    f"job {job_id} is {row.status}; cancel it before deleting it"
                )
            session.delete(row)
            return row

        await self._change(work, ET.JOB_EVENT_TYPE_DELETED)
        self._progress.pop(job_id, None)

    async def move(
        self, who: Principal, job_id: str, placement: int, anchor_id: str = ""
    ) -> queue_pb2.Job:
        """Moves a pending job to the front, the back, or next to another pending job.

        Raises:
            InvalidArgument: unknown placement, or a missing/self anchor.
            NotFound: unknown job or anchor.
            FailedPrecondition: the job or the anchor is not pending.
        """
        validation.check_enum("placement", queue_pb2.MovePlacement, placement, allow_zero=False)
        relative = placement in (
            queue_pb2.MOVE_PLACEMENT_BEFORE,
            queue_pb2.MOVE_PLACEMENT_AFTER,
        )
        if relative and not anchor_id:
            raise InvalidArgument("anchor_id", "required for BEFORE and AFTER")
        if relative and anchor_id == job_id:
            raise InvalidArgument("anchor_id", "a job cannot move next to itself")

        def work(session: Session) -> JobRow:
            row = _pending(session, who, job_id, "moved")
            if placement == queue_pb2.MOVE_PLACEMENT_FRONT:
                row.position = ordering.head_position(session)
            elif placement == queue_pb2.MOVE_PLACEMENT_BACK:
                row.position = ordering.tail_position(session)
            else:
                anchor = _pending(session, who, anchor_id, "used as an anchor")
                before = placement == queue_pb2.MOVE_PLACEMENT_BEFORE
                row.position = ordering.position_beside(session, row, anchor, before=before)
                row.priority = anchor.priority
            row.updated_at = utcnow()
            session.add(row)
            return row

        return await self._change(work, ET.JOB_EVENT_TYPE_MOVED)

    async def set_priority(self, who: Principal, job_id: str, priority: int) -> queue_pb2.Job:
        validation.validate_priority("priority", priority)

        def work(session: Session) -> JobRow:
            row = _pending(session, who, job_id, "reprioritised")
            row.priority = priority
            row.updated_at = utcnow()
            session.add(row)
            return row

        return await self._change(work, ET.JOB_EVENT_TYPE_MOVED)

    async def set_paused(self, paused: bool, server: str = "") -> queue_pb2.QueueStats:
        """Pauses or resumes dispatching. Per-server pausing needs registered servers.

        Raises:
            NotFound: `server` is not a registered server.
        """
        if server:
            raise NotFound(f"server {server!r} is not registered")

        def work(session: Session) -> queue_pb2.QueueStats:
            session.merge(SettingRow(name=PAUSED_SETTING, value=json.dumps(paused)))
            session.flush()
            return _stats(session)

        stats = await self._db.run(work)
        self._bus.publish_stats(stats)
        return stats

    # ---- the dispatcher's side (used by dispatch; tests drive it directly) --

    async def start(self, job_id: str, server: str) -> queue_pb2.Job:
        """Marks a pending job PROCESSING on `server` (one more attempt)."""

        def work(session: Session) -> JobRow:
            row = _get(session, job_id)
            transition(row, JobStatus.PROCESSING, stage=JobStage.GENERATING, reason="")
            row.server = server
            session.add(row)
            return row

        return await self._change(work, ET.JOB_EVENT_TYPE_STATUS)

    async def finish(self, job_id: str, status: JobStatus, reason: str = "") -> queue_pb2.Job:
        """Ends a running job (COMPLETED / FAILED) or re-queues it (PENDING)."""

        def work(session: Session) -> JobRow:
            row = _get(session, job_id)
            stage = JobStage.QUEUED if status is JobStatus.PENDING else JobStage.DONE
            transition(row, status, stage=stage, reason=reason)
            session.add(row)
            return row

        job = await self._change(work, ET.JOB_EVENT_TYPE_STATUS)
        self._progress.pop(job_id, None)
        return job

    def report_progress(self, job: queue_pb2.Job, progress: queue_pb2.JobProgress) -> None:
        """Records and publishes live progress (not persisted: it is stale on restart)."""
        self._progress[job.id] = progress
        if self._bus.wants(job.id):
            event_job = queue_pb2.Job()
            event_job.CopyFrom(job)
            event_job.progress.CopyFrom(progress)
            self._bus.publish_job(
                queue_pb2.JobEvent(
                    type=ET.JOB_EVENT_TYPE_PROGRESS, job=event_job, time=timestamp(utcnow())
                )
            )

    # ---- watching ---------------------------------------------------------

    async def watch_job(self, who: Principal, job_id: str) -> AsyncIterator[queue_pb2.JobEvent]:
        """The job's current state, then every change, until it reaches a final state."""
        sub = self._bus.subscribe(job_id)
        try:
            job = await self.get(who, job_id, full=False)
            yield queue_pb2.JobEvent(
                type=ET.JOB_EVENT_TYPE_SNAPSHOT, job=job, time=timestamp(utcnow())
            )
            if STATUS_FROM_PB[job.status] in TERMINAL:
                return
            async for event in sub.events():
                yield event.job_event
                status = STATUS_FROM_PB.get(event.job_event.job.status)
                if event.job_event.type == ET.JOB_EVENT_TYPE_DELETED or status in TERMINAL:
                    return
        finally:
            self._bus.unsubscribe(sub)

    async def watch_queue(
        self, who: Principal, snapshot: bool, omit_previews: bool
    ) -> AsyncIterator[queue_pb2.QueueEvent]:
        """Every change (only the caller's own jobs for non-admins), after an optional snapshot."""
        sub = self._bus.subscribe(None)
        try:
            if snapshot:
                async for job in self._active_jobs(who):
                    yield queue_pb2.QueueEvent(
                        job_event=queue_pb2.JobEvent(
                            type=ET.JOB_EVENT_TYPE_SNAPSHOT, job=job, time=timestamp(utcnow())
                        )
                    )
            async for event in sub.events():
                if event.HasField("job_event"):
                    if not (who.is_admin or event.job_event.job.submitted_by == who.key_id):
                        continue
                    if omit_previews and event.job_event.job.progress.preview_image:
                        event = _without_preview(event)
                yield event
        finally:
            self._bus.unsubscribe(sub)

    async def _active_jobs(self, who: Principal) -> AsyncIterator[queue_pb2.Job]:
        query = JobQuery(
            statuses=(JobStatus.PROCESSING, JobStatus.PENDING), page_size=validation.MAX_COUNT
        )
        while True:
            jobs, token = await self.list(who, query)
            for job in jobs:
                yield job
            if not token:
                return
            query = query.after(token)

    # ---- plumbing ---------------------------------------------------------

    async def _change(self, work: Callable[[Session], JobRow], kind: int) -> queue_pb2.Job:
        row = await self._db.run(work)
        if JobStatus(row.status) is not JobStatus.PROCESSING:
            self._progress.pop(row.id, None)
        return self._publish(row, kind)

    def _publish(self, row: JobRow, kind: int) -> queue_pb2.Job:
        if not self._bus.wants(row.id):
            return self.to_pb(row)
        job = self.to_pb(row)
        self._bus.publish_job(queue_pb2.JobEvent(type=kind, job=job, time=timestamp(utcnow())))
        return job


def _get(session: Session, job_id: str) -> JobRow:
    row = session.get(JobRow, job_id) if job_id else None
    if row is None:
        raise NotFound(f"no job with id {job_id!r}")
    return row


def _owned(session: Session, who: Principal, job_id: str) -> JobRow:
    row = _get(session, job_id)
    if not who.is_admin and row.submitted_by != who.key_id:
        # Someone else's job looks exactly like a missing one.
        raise NotFound(f"no job with id {job_id!r}")
    return row


def _pending(session: Session, who: Principal, job_id: str, verb: str) -> JobRow:
    row = _owned(session, who, job_id)
    if row.status != JobStatus.PENDING:
        raise FailedPrecondition(f"job {job_id} is {row.status}; only pending jobs can be {verb}")
    return row


def _by(who: Principal) -> str:
    return f"cancelled by {who.name or who.key_id}"


def _stats(session: Session) -> queue_pb2.QueueStats:
    counts = dict(session.exec(select(JobRow.status, func.count()).group_by(JobRow.status)).all())
    paused = session.get(SettingRow, PAUSED_SETTING)
    return queue_pb2.QueueStats(
        pending=counts.get(JobStatus.PENDING.value, 0),
        processing=counts.get(JobStatus.PROCESSING.value, 0),
        completed=counts.get(JobStatus.COMPLETED.value, 0),
        failed=counts.get(JobStatus.FAILED.value, 0),
        cancelled=counts.get(JobStatus.CANCELLED.value, 0),
        paused=paused is not None and json.loads(paused.value),
    )


def _without_preview(event: queue_pb2.QueueEvent) -> queue_pb2.QueueEvent:
    copy = queue_pb2.QueueEvent()
    copy.CopyFrom(event)
    copy.job_event.job.progress.ClearField("preview_image")
    return copy
