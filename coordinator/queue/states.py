"""The job state machine: status and stage, in the pattern of `statemachine`.

Nothing but `transition()` assigns a job's status, and nothing but it and
`move_stage()` its stage — save the dispatcher's claims and finishes, single
conditional UPDATEs whose columns come from `transition_values()`, the same rules."""

from __future__ import annotations

import logging
from datetime import datetime
from enum import StrEnum
from typing import Any

from stablequeue_coordinator.common import utcnow
from stablequeue_coordinator.errors import FailedPrecondition
from stablequeue_coordinator.statemachine import Machine
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


JOB_STATUS: Machine[JobStatus] = Machine.of(
    "job",
    {
        JobStatus.PENDING: {JobStatus.PROCESSING, JobStatus.CANCELLED},
        # PROCESSING -> PENDING is a re-queue (transient failure, shutdown, node lost).
        JobStatus.PROCESSING: {
            JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.PENDING,
        },
        JobStatus.FAILED: {JobStatus.PENDING},  # a retry
        JobStatus.CANCELLED: {JobStatus.PENDING},  # a retry
        JobStatus.COMPLETED: set(),
    },
)  # fmt: skip
ALLOWED = JOB_STATUS.allowed
TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

# The stages a job in each status can be at.
STAGES_OF: dict[JobStatus, frozenset[JobStage]] = {
    JobStatus.PENDING: frozenset({JobStage.QUEUED, JobStage.WAITING_FOR_SERVER}),
    JobStatus.PROCESSING: frozenset({
        JobStage.WAITING_FOR_SERVER, JobStage.DOWNLOADING_MODEL, JobStage.STARTING_MODEL,
        JobStage.LOADING_MODEL, JobStage.GENERATING, JobStage.SAVING,
    }),
    **{status: frozenset({JobStage.DONE}) for status in TERMINAL},
}  # fmt: skip
# A stage moves within its status, or to a stage of a status the status moves to.
JOB_STAGE: Machine[JobStage] = Machine.of(
    "job stage",
    {
        stage: {
            new
            for status, stages in STAGES_OF.items()
            if stage in stages
            for next_status in {status, *ALLOWED[status]}
            for new in STAGES_OF[next_status]
        }
        for stage in JobStage
    },
)


def transition(
    job: JobRow,
    new: JobStatus,
    *,
    stage: JobStage,
    reason: str,
    now: datetime | None = None,
) -> JobStatus:
    """Moves `job` to `new` after checking the move is allowed; the caller commits.

    Returns the previous status. The caller publishes the event once committed. A
    retry (FAILED/CANCELLED -> PENDING) starts the attempts over.

    Raises:
        FailedPrecondition: the move is not in `JOB_STATUS` (a race a user can cause:
            a cancel beside a finish), or `stage` is not one of `new` (a bug: logged).
    """
    old = JobStatus(job.status)
    if not JOB_STATUS.allows(old, new):
        raise FailedPrecondition(f"job {job.id} is {old.value}; it cannot become {new.value}")
    values = transition_values(job.id, new, stage, reason, now, was=JobStage(job.stage))
    for column, value in values.items():
        setattr(job, column, value)
    if new is JobStatus.PROCESSING:
        job.attempts += 1
    elif new is JobStatus.PENDING and old in TERMINAL:
        job.attempts = 0
    log_transition(job.id, old, new, stage, reason)
    return old


def transition_values(
    job_id: str,
    new: JobStatus,
    stage: JobStage,
    reason: str,
    now: datetime | None = None,
    *,
    was: JobStage | None = None,
) -> dict[str, Any]:
    """The columns a move to `new` sets, but `attempts` (one more when it starts
    PROCESSING, none again when a finished job is retried): for `transition`, and for
    the dispatcher's statements that make the move in one conditional UPDATE whose
    WHERE names the status it leaves. `was`: the stage it leaves, when known (logs).

    Raises:
        FailedPrecondition: `stage` is not one of `new` (a bug: logged).
    """
    if stage not in STAGES_OF[new]:
        JOB_STAGE.refuse(job_id, was or stage, stage, f"not a stage of {new.value}")
        raise FailedPrecondition(f"job {job_id}: {stage.value} is not a stage of {new.value}")
    now = now or utcnow()
    values: dict[str, Any] = {
        "status": new.value, "stage": stage.value, "reason": reason, "updated_at": now,
    }  # fmt: skip
    if new is JobStatus.PROCESSING:
        values.update(started_at=now, finished_at=None)
    elif new in TERMINAL:
        values["finished_at"] = now
    else:  # back to PENDING
        values.update(started_at=None, finished_at=None)
    return values


def log_transition(
    job_id: str, old: JobStatus, new: JobStatus, stage: JobStage, reason: str
) -> None:
    if log.isEnabledFor(logging.INFO):
        log.info("job %s: %s -> %s (%s) %s", job_id, old.value, new.value, stage.value, reason)


def move_stage(job: JobRow, stage: JobStage, reason: str, now: datetime | None = None) -> bool:
    """Sets what a job does within its status and why; the caller commits.

    Returns False when nothing changed: the same stage and reason, or a stage its
    status cannot have (a bug, logged loudly).
    """
    status = JobStatus(job.status)
    if (job.stage, job.reason) == (stage.value, reason):
        return False
    old = JobStage(job.stage)
    if stage not in STAGES_OF[status]:
        JOB_STAGE.refuse(job.id, old, stage, f"not a stage of {status.value}")
        return False
    if not JOB_STAGE.check(job.id, old, stage, reason):
        return False
    job.stage, job.reason, job.updated_at = stage.value, reason, now or utcnow()
    return True
