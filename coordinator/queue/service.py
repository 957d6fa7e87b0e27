"""The queue service: every change to a job goes through here, is committed, then published."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, delete
from sqlmodel import Session, col, select

from stablequeue.v1 import queue_pb2
from stablequeue_coordinator.auth.principal import Principal
from stablequeue_coordinator.common import check_enum, timestamp, utcnow
from stablequeue_coordinator.dispatch.policy import ServerView, lacking_loras, model_matches
from stablequeue_coordinator.errors import FailedPrecondition, InvalidArgument, NotFound
from stablequeue_coordinator.outputs.store import result_to_pb
from stablequeue_coordinator.queue import ordering, submissions, validation
from stablequeue_coordinator.queue.attempts import PAUSED_SETTING, Attempts
from stablequeue_coordinator.queue.convert import STATUS_FROM_PB, job_to_pb
from stablequeue_coordinator.queue.events import EventBus
from stablequeue_coordinator.queue.listing import JobQuery, list_page
from stablequeue_coordinator.queue.states import (
    TERMINAL,
    JobStage,
    JobStatus,
    transition,
)
from stablequeue_coordinator.queue.submissions import (
    Submission,
    detach_init_images,
    fingerprint,
    vary_seeds,
)
from stablequeue_coordinator.queue.tally import JobTally
from stablequeue_coordinator.store import Database
from stablequeue_coordinator.store.tables import JobImageRow, JobRow, ServerRow, SettingRow

log = logging.getLogger(__name__)

SEED_KEYS = ("seed", "noise_seed")
ET = queue_pb2.JobEventType
# Called with the job (None for a pause/resume) and the event type.
Listener = Callable[[queue_pb2.Job | None, int], None]

if TYPE_CHECKING:
    from stablequeue_coordinator.library.service import ModelLibrary
    from stablequeue_coordinator.outputs.store import ResultStore
    from stablequeue_coordinator.servers.service import ServerService, ServerState


class QueueService(Attempts):
    """Owns jobs: submission, ordering, cancellation, state changes and their events.

    Args:
        db: the store.
        bus: where committed changes are published for watchers.
    """

    def __init__(
        self,
        db: Database,
        bus: EventBus,
        servers: ServerService | None = None,
        results: ResultStore | None = None,
        library: ModelLibrary | None = None,
    ) -> None:
        self._db = db
        self._library = library
        self._bus = bus
        self._servers = servers
        self._results = results
        self._progress: dict[str, queue_pb2.JobProgress] = {}
        self._listeners: list[Listener] = []
        self._paused: bool | None = None  # the queue-wide pause flag, once read
        self._scheduling = {}
        self.tally = JobTally()
        self._insert = submissions.inserter(self.tally)
        # The node agents' models as places (set by the server once nodes exist): they
        # count wherever a model is checked, beside the registered servers.
        self.node_places: Callable[[], list[ServerState]] = list
        self.held = ""  # why the coordinator holds dispatching itself (disk full)

    def on_event(self, listener: Listener) -> None:
        """Calls `listener(job, event type)` after every committed change (the dispatcher's cue)."""
        self._listeners.append(listener)

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
        await self._check_model(normalized)
        request_hash = fingerprint(normalized, 1, 0)
        images = detach_init_images(normalized)
        submission = Submission(who, [normalized], idempotency_key, request_hash, images)
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
        validation.validate_count(count, normalized)
        check_enum("seed_mode", queue_pb2.SeedMode, seed_mode, allow_zero=True)
        validation.validate_idempotency_key(idempotency_key)
        await self._check_model(normalized)
        mode = seed_mode or queue_pb2.SEED_MODE_INCREMENT
        request_hash = fingerprint(normalized, count, mode)
        images = detach_init_images(normalized)
        specs = vary_seeds(normalized, count, mode)
        submission = Submission(who, specs, idempotency_key, request_hash, images)
        return await self._store_submission(submission)

    async def _check_model(self, spec: queue_pb2.JobSpec) -> None:
        """Refuses a job whose model no server has — once every enabled server has
        reported its inventory (before that, nobody can tell).

        Raises:
            FailedPrecondition: naming the model.
        """
        model = spec.params.model if spec.HasField("params") else ""
        if not model or self._library is None or self._servers is None:
            return
        on_nodes = [
            p for p in self.node_places()
            if any(model_matches(n, model) for n in (p.health.loaded_model, *p.health.model_names))
        ]  # fmt: skip
        placement = await self._library.hosts_for(model)
        if on_nodes:  # a node has it as one of its models
            if placement is None:  # and only nodes do: they must have its LoRAs too
                self._check_node_loras(spec.params, on_nodes)
            return
        if placement is None:
            return
        enabled = {s.row.alias for s in await self._servers.list() if s.row.enabled}
        if not enabled or not enabled <= self._library.inventoried:
            return
        if not enabled & placement.hosts.keys():
            raise FailedPrecondition(
                f"model {model!r} is not on any server ({', '.join(sorted(enabled))}); "
                "see sq models list"
            )

    @staticmethod
    def _check_node_loras(params: queue_pb2.GenerationParams, places: list[ServerState]) -> None:
        """Refuses a job whose LoRAs no node serving its model has.

        Raises:
            FailedPrecondition: naming the LoRAs and what those nodes have.
        """
        names = [lora.name for lora in params.loras]
        lacking = {}
        for place in places:
            view = ServerView(place.row.alias, place.row.kind, True, loras=place.health.loras)
            missing = lacking_loras(view, names)
            if not missing:
                return
            lacking[place.row.alias] = missing
        some = sorted({f for p in places for f in (p.health.loras or ())})[:8]
        one = len(lacking) == 1
        raise FailedPrecondition(
            f"LoRA {', '.join(sorted({n for m in lacking.values() for n in m}))} is not on "
            f"{', '.join(lacking)}, the node model{'' if one else 's'} serving {params.model} "
            f"({'it has' if one else 'they have'} {', '.join(some) or 'no LoRAs'})"
        )

    async def _store_submission(self, submission: Submission) -> tuple[list[queue_pb2.Job], bool]:
        records, created = await submissions.store(self._db, self._insert, submission)
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
        job = self.to_pb(row, full=full)
        if full:
            await self._add_images(job)
            await self._add_results(job)
        return job

    async def _add_images(self, job: queue_pb2.Job) -> None:
        """Fills the init image placeholders of a job read whole from its batch's
        stored images (jobs stored before those existed hold theirs inline)."""
        images = job.spec.params.init_images if job.spec.HasField("params") else []
        if all(images):
            return
        stored = await self._db.run(
            lambda s: list(
                s.exec(
                    select(JobImageRow.idx, JobImageRow.data).where(
                        JobImageRow.batch_id == job.batch_id
                    )
                )
            )
        )
        by_index = dict(stored)
        for i in range(len(images)):
            if not images[i]:
                images[i] = by_index.get(i, b"")

    async def _add_results(self, job: queue_pb2.Job) -> None:
        if self._results is not None:
            job.results.extend(result_to_pb(r) for r in await self._results.for_job(job.id))

    async def list(self, who: Principal, query: JobQuery) -> tuple[list[queue_pb2.Job], str]:
        """One page of jobs and the token of the next page ("" on the last)."""
        query = query.restricted_to(who)
        rows, token = await self._db.run(lambda s: list_page(s, query))
        jobs = [self.to_pb(row) for row in rows]
        if self._results is not None:  # the records only: one query for the page
            done = [j.id for j in jobs if j.status == queue_pb2.JOB_STATUS_COMPLETED]
            found = await self._results.for_jobs(done)
            for job in jobs:
                job.results.extend(result_to_pb(r) for r in found.get(job.id, []))
        return jobs, token

    async def stats(self, who: Principal | None = None) -> queue_pb2.QueueStats:
        """Job counts by status and what is paused; for a caller other than an admin,
        counts of its own jobs only, and no server names."""
        mine = None if who is None or who.is_admin else who.key_id
        return self._with_hold(
            await self._db.run(lambda session: _stats(session, self.tally, mine))
        )

    def _with_hold(self, stats: queue_pb2.QueueStats) -> queue_pb2.QueueStats:
        if self.held:
            stats.paused, stats.pause_reason = True, self.held
        return stats

    async def hold(self, reason: str) -> None:
        """Holds dispatching for a reason of the coordinator's own ("" releases it):
        shown as a pause with that reason, never stored (a restart checks afresh)."""
        if reason == self.held:
            return
        self.held = reason
        log.warning("dispatching %s", f"held: {reason}" if reason else "resumes")
        self._bus.publish_stats(await self.stats())
        for listener in self._listeners:
            listener(None, ET.JOB_EVENT_TYPE_UNSPECIFIED)

    def to_pb(self, row: JobRow | Row[Any], *, full: bool = False) -> queue_pb2.Job:
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
            old = transition(row, JobStatus.CANCELLED, stage=JobStage.DONE, reason=_by(who))
            self.tally.change(row.submitted_by, old.value, row.status)
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
            old = transition(row, JobStatus.PENDING, stage=JobStage.QUEUED, reason="retried")
            self.tally.change(row.submitted_by, old.value, row.status)
            row.position = ordering.tail_position(session.connection())
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
            self.tally.change(row.submitted_by, row.status, None)
            if row.batch_id:
                session.flush()
                _forget_unused_images(session, row.batch_id)
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
        check_enum("placement", queue_pb2.MovePlacement, placement, allow_zero=False)
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
                row.position = ordering.tail_position(session.connection())
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
        """Pauses or resumes dispatching, for the whole queue or one server.

        Raises:
            NotFound: `server` is not a registered server.
        """
        if server:
            if self._servers is None:
                raise NotFound(f"server {server!r} is not registered")
            await self._servers.set_flag(server, "paused", paused)
            stats = await self._db.run(lambda session: _stats(session, self.tally))
        else:

            def work(session: Session) -> queue_pb2.QueueStats:
                session.merge(SettingRow(name=PAUSED_SETTING, value=json.dumps(paused)))
                session.flush()
                return _stats(session, self.tally)

            stats = await self._db.run(work)
            self._paused = paused
        stats = self._with_hold(stats)
        self._bus.publish_stats(stats)
        for listener in self._listeners:
            listener(None, ET.JOB_EVENT_TYPE_UNSPECIFIED)
        return stats

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
                elif event.HasField("stats") and not who.is_admin:
                    # The whole queue's counts and server names are not theirs to see.
                    paused = queue_pb2.QueueStats(paused=event.stats.paused)
                    event = queue_pb2.QueueEvent(stats=paused)
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

    async def _change(
        self, work: Callable[[Session], JobRow], kind: int, *, full: bool = False
    ) -> queue_pb2.Job:
        row = await self._db.run(work)
        if JobStatus(row.status) is not JobStatus.PROCESSING:
            self._progress.pop(row.id, None)
        job = self._publish(row, kind)
        if full:
            job = self.to_pb(row, full=True)
            await self._add_images(job)
        return job

    def _publish(self, row: JobRow | Row[Any], kind: int) -> queue_pb2.Job:
        job = self.to_pb(row)
        if self._bus.wants(row.id):
            self._bus.publish_job(queue_pb2.JobEvent(type=kind, job=job, time=timestamp(utcnow())))
        for listener in self._listeners:
            listener(job, kind)
        return job


def _forget_unused_images(session: Session, batch_id: str) -> None:
    """Deletes a batch's stored init images once none of its jobs is left."""
    if session.exec(select(JobRow.id).where(JobRow.batch_id == batch_id).limit(1)).first():
        return
    session.exec(delete(JobImageRow).where(col(JobImageRow.batch_id) == batch_id))  # type: ignore[call-overload]


def get_job(session: Session, job_id: str) -> JobRow:
    row = session.get(JobRow, job_id) if job_id else None
    if row is None:
        raise NotFound(f"no job with id {job_id!r}")
    return row


def _owned(session: Session, who: Principal, job_id: str) -> JobRow:
    row = get_job(session, job_id)
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


def _stats(
    session: Session, tally: JobTally, submitted_by: str | None = None
) -> queue_pb2.QueueStats:
    counts = tally.counts(session, submitted_by)
    paused = session.get(SettingRow, PAUSED_SETTING)
    paused_servers = (
        []
        if submitted_by is not None
        else session.exec(select(ServerRow.alias).where(col(ServerRow.paused))).all()
    )
    return queue_pb2.QueueStats(
        paused_servers=sorted(paused_servers),
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
