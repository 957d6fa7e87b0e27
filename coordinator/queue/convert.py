"""Conversions between stored rows and contract messages."""

from __future__ import annotations

from typing import Any

from stablequeue.v1 import queue_pb2
from stablequeue_coordinator.common import timestamp
from stablequeue_coordinator.queue.states import JobStage, JobStatus
from stablequeue_coordinator.store.tables import JobRow

STATUS_TO_PB = {
    JobStatus.PENDING: queue_pb2.JOB_STATUS_PENDING,
    JobStatus.PROCESSING: queue_pb2.JOB_STATUS_PROCESSING,
    JobStatus.COMPLETED: queue_pb2.JOB_STATUS_COMPLETED,
    JobStatus.FAILED: queue_pb2.JOB_STATUS_FAILED,
    JobStatus.CANCELLED: queue_pb2.JOB_STATUS_CANCELLED,
}
STATUS_FROM_PB = {v: k for k, v in STATUS_TO_PB.items()}
STAGE_TO_PB = {stage: queue_pb2.JobStage.Value(f"JOB_STAGE_{stage.name}") for stage in JobStage}
# By the stored text, as rows hold them (an Enum lookup per field showed in the profile
# of every submit, claim and finish).
STORED_STATUS_TO_PB = {status.value: pb for status, pb in STATUS_TO_PB.items()}
STORED_STAGE_TO_PB = {stage.value: pb for stage, pb in STAGE_TO_PB.items()}


def job_to_pb(
    row: JobRow | Any, progress: queue_pb2.JobProgress | None = None, *, full: bool = False
) -> queue_pb2.Job:
    """A job message from a stored row (or any record with the same attributes).

    Init image bytes are left out (their count is kept) unless `full`: lists,
    events and submit replies would otherwise echo megabytes per job.
    """
    job = queue_pb2.Job(
        id=row.id,
        status=STORED_STATUS_TO_PB[row.status],
        stage=STORED_STAGE_TO_PB[row.stage],
        reason=row.reason,
        position=row.position,
        attempts=row.attempts,
        server=row.server or "",
        submitted_by=row.submitted_by,
        idempotency_key=row.idempotency_key or "",
        batch_id=row.batch_id or "",
        batch_index=row.batch_index,
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
        started_at=timestamp(row.started_at),
        finished_at=timestamp(row.finished_at),
        progress=progress,
        model_sha256=getattr(row, "model_sha256", None) or "",
    )
    job.spec.ParseFromString(row.spec)
    if job.spec.HasField("params") and job.spec.params.init_images:
        job.init_image_count = len(job.spec.params.init_images)
        if not full:
            del job.spec.params.init_images[:]
    # The stored spec keeps the priority it was submitted with; the row is current.
    job.spec.priority = row.priority
    return job
