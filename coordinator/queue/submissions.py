"""Storing submissions with group commit.

Concurrent SubmitJob calls are stored together (`Database.batched`): the
submissions that arrive while the store thread is busy go in one transaction,
so a burst of submits pays for one commit, not one each. Every caller is still
answered only after the transaction holding its jobs has committed. Job rows go
in with one multi-row INSERT rather than through ORM objects: submitting is the
queue's hot path.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from stablequeue.v1 import queue_pb2
from stablequeue_coordinator.auth.principal import Principal
from stablequeue_coordinator.common import random_hex, utcnow
from stablequeue_coordinator.errors import AlreadyExists, StableQueueError
from stablequeue_coordinator.kinds import APP_FROM_PB
from stablequeue_coordinator.queue import ordering
from stablequeue_coordinator.queue.states import JobStage, JobStatus
from stablequeue_coordinator.queue.tally import JobTally
from stablequeue_coordinator.store import Database
from stablequeue_coordinator.store.hot import HotStatement
from stablequeue_coordinator.store.tables import IdempotencyRow, JobImageRow, JobRow

log = logging.getLogger(__name__)

SEED_KEYS = ("seed", "noise_seed")
INLINE_JOBS = 4
JOBS = JobRow.__table__  # type: ignore[attr-defined]
IDEMPOTENCY = IdempotencyRow.__table__  # type: ignore[attr-defined]
JOB_IMAGES = JobImageRow.__table__  # type: ignore[attr-defined]
ADD_JOBS = HotStatement(insert(JOBS))  # the rows of `_job_values`


@dataclass(frozen=True)
class Submission:
    """A validated SubmitJob(s) request from one caller."""

    who: Principal
    specs: list[queue_pb2.JobSpec]
    idempotency_key: str
    request_hash: str
    # The init images every spec shares, stored once for the batch; each spec holds an
    # empty placeholder per image (see `detach_init_images`).
    init_images: tuple[bytes, ...] = ()


# What storing one submission gives back: its job records and whether they are new.
Stored = tuple[list[Any], bool]


def new_id() -> str:
    return random_hex(8)


def inserter(
    tally: JobTally,
) -> Callable[[Connection, list[Submission]], list[Stored | Exception]]:
    """`insert_batch` counting new jobs in `tally`: one function per queue, so its
    submissions group together (`Database.batched` groups by function)."""
    return functools.partial(insert_batch, tally=tally)


async def store(
    db: Database,
    insert: Callable[[Connection, list[Submission]], list[Stored | Exception]],
    submission: Submission,
) -> Stored:
    """Stores a submission; returns once the transaction holding it has committed
    (shared with the submissions and other writes that came meanwhile).

    Raises:
        AlreadyExists: the idempotency key was used for a different request.
    """
    # A few jobs may commit on the event loop while nothing else is under way (see
    # Database.batched); a big batch's transaction, or init images, would hold it up.
    inline = len(submission.specs) <= INLINE_JOBS and not submission.init_images
    outcome = await db.batched(insert, submission, inline=inline)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def insert_batch(
    connection: Connection, batch: list[Submission], tally: JobTally | None = None
) -> list[Stored | Exception]:
    """Stores every submission of `batch` in this transaction; a refused one spares the rest."""
    outcomes: list[Stored | Exception] = []
    position = ordering.tail_position(connection)
    now = utcnow()
    new_jobs: list[dict[str, Any]] = []
    new_keys: list[dict[str, Any]] = []
    new_images: list[dict[str, Any]] = []
    in_batch: dict[tuple[str, str], tuple[str, Stored]] = {}
    for submission in batch:
        key = (submission.who.key_id, submission.idempotency_key)
        try:
            earlier = _earlier(connection, submission, in_batch.get(key))
        except StableQueueError as e:
            outcomes.append(e)
            continue
        if earlier is not None:
            outcomes.append(earlier)
            continue
        jobs = _job_values(submission, position, now)
        position += len(jobs) * ordering.GAP
        if tally is not None:
            tally.change(submission.who.key_id, None, JobStatus.PENDING.value, len(jobs))
        new_jobs += jobs
        new_images += [
            {"batch_id": jobs[0]["batch_id"], "idx": i, "data": image}
            for i, image in enumerate(submission.init_images)
        ]
        stored: Stored = ([SimpleNamespace(**job) for job in jobs], True)
        if submission.idempotency_key:
            in_batch[key] = (submission.request_hash, stored)
            new_keys.append(
                {
                    "owner": key[0],
                    "key": key[1],
                    "request_hash": submission.request_hash,
                    "batch_id": jobs[0]["batch_id"],
                    "created_at": now,
                }
            )
        outcomes.append(stored)
    ADD_JOBS.many(connection, new_jobs)
    if new_keys:
        connection.execute(insert(IDEMPOTENCY), new_keys)
    if new_images:
        connection.execute(insert(JOB_IMAGES), new_images)
    return outcomes


def _earlier(
    connection: Connection, submission: Submission, in_batch: tuple[str, Stored] | None
) -> Stored | None:
    """The jobs an earlier submit with the same idempotency key created, if any."""
    key = submission.idempotency_key
    if not key:
        return None
    if in_batch is not None:
        request_hash, (records, _) = in_batch
        _same_request(request_hash, submission)
        return records, False
    owned = (IDEMPOTENCY.c.owner == submission.who.key_id) & (IDEMPOTENCY.c.key == key)
    earlier = connection.execute(
        select(IDEMPOTENCY.c.request_hash, IDEMPOTENCY.c.batch_id).where(owned)
    ).first()
    if earlier is None:
        return None
    _same_request(earlier.request_hash, submission)
    rows = connection.execute(
        select(JOBS).where(JOBS.c.batch_id == earlier.batch_id).order_by(JOBS.c.batch_index)
    ).all()
    if rows:
        return list(rows), False
    connection.execute(delete(IDEMPOTENCY).where(owned))  # its jobs were deleted since
    return None


def _same_request(request_hash: str, submission: Submission) -> None:
    if request_hash != submission.request_hash:
        raise AlreadyExists(
            f"idempotency_key {submission.idempotency_key!r} was already used "
            "for a different request"
        )


def _job_values(submission: Submission, position: int, now: Any) -> list[dict[str, Any]]:
    batch_id = new_id()
    return [
        {
            "id": batch_id if i == 0 else new_id(),
            "status": JobStatus.PENDING.value,
            "stage": JobStage.QUEUED.value,
            "reason": "",
            "app": APP_FROM_PB[spec.app],
            "target_server": spec.target_server or None,
            "server": None,
            "priority": spec.priority,
            "position": position + i * ordering.GAP,
            "attempts": 0,
            "submitted_by": submission.who.key_id,
            "idempotency_key": submission.idempotency_key or None,
            "batch_id": batch_id,
            "batch_index": i,
            "label": spec.label,
            "spec": spec.SerializeToString(),
            "created_at": now,
            "updated_at": now,
            "started_at": None,
            "finished_at": None,
        }
        for i, spec in enumerate(submission.specs)
    ]


def detach_init_images(spec: queue_pb2.JobSpec) -> tuple[bytes, ...]:
    """Takes the init images out of `spec`, leaving an empty placeholder for each.

    A batch's copies then share one stored copy of the images (and copying the spec
    `count` times copies no image bytes). Validation refuses empty images, so a
    placeholder is never mistaken for one.
    """
    if not spec.HasField("params") or not spec.params.init_images:
        return ()
    images = tuple(spec.params.init_images)
    spec.params.ClearField("init_images")
    spec.params.init_images.extend([b""] * len(images))
    return images


def fingerprint(spec: queue_pb2.JobSpec, count: int, seed_mode: int) -> str:
    """Identifies a request, so a reused idempotency key with other content is caught."""
    digest = hashlib.sha256(spec.SerializeToString(deterministic=True))
    digest.update(f"|{count}|{seed_mode}".encode())
    return digest.hexdigest()


def vary_seeds(spec: queue_pb2.JobSpec, count: int, mode: int) -> list[queue_pb2.JobSpec]:
    """`count` copies of `spec` with seeds per `mode` (workflows: every seed/noise_seed input)."""
    rng = random.SystemRandom()
    base = _base_seed(spec)
    if mode == queue_pb2.SEED_MODE_INCREMENT and base < 0:
        base = rng.randrange(2**32)
    copies = []
    for i in range(count):
        copy = queue_pb2.JobSpec()
        copy.CopyFrom(spec)
        if mode == queue_pb2.SEED_MODE_INCREMENT:
            _set_seed(copy, (base + i) % 2**32)
        elif mode == queue_pb2.SEED_MODE_RANDOM:
            _set_seed(copy, rng.randrange(2**32))
        copies.append(copy)
    return copies


def _base_seed(spec: queue_pb2.JobSpec) -> int:
    if spec.HasField("params"):
        return spec.params.seed
    for node in json.loads(spec.workflow_json).values():
        for name in SEED_KEYS:
            value = node.get("inputs", {}).get(name)
            if isinstance(value, int):
                return value
    return -1


def _set_seed(spec: queue_pb2.JobSpec, seed: int) -> None:
    if spec.HasField("params"):
        spec.params.seed = seed
        return
    graph = json.loads(spec.workflow_json)
    for node in graph.values():
        inputs = node.get("inputs", {})
        for name in SEED_KEYS:
            if isinstance(inputs.get(name), int):
                inputs[name] = seed
    spec.workflow_json = json.dumps(graph)
