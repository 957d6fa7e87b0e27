"""The job state machine. Nothing but `transition()` assigns a job's status."""

from __future__ import annotations

import logging
from datetime import datetime
from enum import StrEnum

from stablequeue_coordinator.common import utcnow
from stablequeue_coordinator.errors import FailedPrecondition
from stablequeue_coordinator.store.tables import JobRow

log = logging.getLogger(__name__)


class JobStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobStage(StrEnum):
    QUEUED = "queued"
    WAITING_FOR_SERVER = "waiting_for_server"
    DOWNLOADING_MODEL = "downloading_model"
    STARTING_MODEL = "starting_model"
    LOADING_MODEL = "loading_model"
    GENERATING = "generating"
    SAVING = "saving"
    DONE = "done"


TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.PROCESSING, JobStatus.CANCELLED}),
    # PROCESSING -> PENDING is a re-queue (transient failure, shutdown, node lost).
    JobStatus.PROCESSING: frozenset(
        {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.PENDING}
    ),
    JobStatus.FAILED: frozenset({JobStatus.PENDING}),
    JobStatus.CANCELLED: frozenset({JobStatus.PENDING}),
    JobStatus.COMPLETED: frozenset(),
}


def transition(
    job: JobRow,
    new: JobStatus,
    *,
    stage: JobStage,
    reason: str,
    now: datetime | None = None,
) -> JobStatus:
    """Moves `job` to `new` after checking the move is allowed; the caller commits.

    Returns the previous status. The caller publishes the event once committed.

    Raises:
        FailedPrecondition: the move is not in `ALLOWED`.
    """
    old = JobStatus(job.status)
    if new not in ALLOWED[old]:
        raise FailedPrecondition(f"job {job.id} is {old.value}; it cannot become {new.value}")
    now = now or utcnow()
    job.status = new.value
    job.stage = stage.value
    job.reason = reason
    job.updated_at = now
    if new is JobStatus.PROCESSING:
        job.started_at = now
        job.attempts += 1
        job.finished_at = None
    elif new in TERMINAL:
        job.finished_at = now
    else:  # back to PENDING
        job.started_at = None
        job.finished_at = None
    log.info("job %s: %s -> %s (%s) %s", job.id, old.value, new.value, stage.value, reason)
    return old
