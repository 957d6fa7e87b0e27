"""WatchJob and WatchQueue: current state first, then every change, live."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from stablequeue import Client, txt2img
from stablequeue.v1 import queue_pb2
from stablequeue_coordinator.queue.states import JobStatus
from tests.conftest import CoordinatorThread
from tests.helpers import PNG_1PX, raises, subscriptions, wait_until

ET = queue_pb2.JobEventType


def next_change(events: Iterator[Any]) -> Any:
    """The next event that is not the dispatcher noting why a job waits."""
    for event in events:
        job_event = getattr(event, "job_event", event)
        is_note = (
            (isinstance(event, queue_pb2.JobEvent) or event.HasField("job_event"))
            and job_event.type == ET.JOB_EVENT_TYPE_STATUS
            and job_event.job.status == queue_pb2.JOB_STATUS_PENDING
            and job_event.job.stage == queue_pb2.JOB_STAGE_WAITING_FOR_SERVER
        )
        if not is_note:
            return event
    raise AssertionError("stream ended")


async def _progress(server: CoordinatorThread, job: queue_pb2.Job, step: int) -> None:
    server.coordinator.queue.report_progress(
        job,
        queue_pb2.JobProgress(
            step=step, total_steps=20, fraction=step / 20, eta_seconds=3.0, preview_image=PNG_1PX
        ),
    )


def test_watch_job_streams_snapshot_changes_and_ends_when_final(
    server: CoordinatorThread, sq: Client
) -> None:
    job = sq.submit(txt2img("x"))
    other = sq.submit(txt2img("y"))
    events = sq.watch_job(job.id)
    snapshot = next(events)
    assert snapshot.type == ET.JOB_EVENT_TYPE_SNAPSHOT
    assert snapshot.job.status == queue_pb2.JOB_STATUS_PENDING

    sq.move(job.id, "after", other.id)
    moved = next_change(events)
    assert moved.type == ET.JOB_EVENT_TYPE_MOVED and moved.job.position > other.position

    started = server.run(server.coordinator.queue.start(job.id, "gpu-1"))
    assert next_change(events).job.status == queue_pb2.JOB_STATUS_PROCESSING
    server.run(_progress(server, started, 5))
    progress = next_change(events)
    assert progress.type == ET.JOB_EVENT_TYPE_PROGRESS
    assert (progress.job.progress.step, progress.job.progress.total_steps) == (5, 20)
    assert progress.job.progress.preview_image == PNG_1PX
    assert sq.get_job(job.id).progress.step == 5

    server.run(server.coordinator.queue.finish(job.id, JobStatus.COMPLETED))
    final = next_change(events)
    assert final.job.status == queue_pb2.JOB_STATUS_COMPLETED
    assert list(events) == []  # the stream ended by itself
    assert not sq.get_job(job.id).HasField("progress")


def test_watch_finished_job_returns_its_state_and_ends(sq: Client) -> None:
    job = sq.submit(txt2img("x"))
    sq.cancel(job.id)
    events = list(sq.watch_job(job.id))
    assert [e.type for e in events] == [ET.JOB_EVENT_TYPE_SNAPSHOT]
    assert events[0].job.status == queue_pb2.JOB_STATUS_CANCELLED


def test_watch_unknown_job_is_not_found(sq: Client) -> None:
    with raises(grpc.StatusCode.NOT_FOUND, "ghost"):
        list(sq.watch_job("ghost"))


def test_watch_queue_streams_every_change(server: CoordinatorThread, sq: Client) -> None:
    before = sq.submit(txt2img("already queued"))
    events = sq.watch_queue(snapshot=True, omit_previews=True)
    first = next(events)
    assert (
        first.job_event.type == ET.JOB_EVENT_TYPE_SNAPSHOT and first.job_event.job.id == before.id
    )

    job = sq.submit(txt2img("new"))
    submitted = next_change(events).job_event
    assert submitted.type == ET.JOB_EVENT_TYPE_SUBMITTED and submitted.job.id == job.id

    started = server.run(server.coordinator.queue.start(job.id, "gpu"))
    assert next_change(events).job_event.job.status == queue_pb2.JOB_STATUS_PROCESSING
    server.run(_progress(server, started, 3))
    progress = next_change(events).job_event
    assert progress.job.progress.step == 3 and progress.job.progress.preview_image == b""

    sq.pause()
    assert next_change(events).stats.paused is True
    sq.cancel(before.id)
    assert next_change(events).job_event.job.status == queue_pb2.JOB_STATUS_CANCELLED
    sq.delete(before.id)
    deleted = next_change(events).job_event
    assert deleted.type == ET.JOB_EVENT_TYPE_DELETED and deleted.job.id == before.id
    events.close()


def test_watch_streams_end_when_the_coordinator_stops(sqlite_server: CoordinatorThread) -> None:
    with sqlite_server.client() as sq:
        job = sq.submit(txt2img("x"))
        events = sq.watch_job(job.id)
        next(events)
        sqlite_server.run(sqlite_server.coordinator.stop(grace=1.0))
        with raises(grpc.StatusCode.UNAVAILABLE):
            next_change(events)


async def test_a_watcher_that_cannot_keep_up_is_cut_off_by_bytes_too() -> None:
    """Progress events carry previews: 1 MB each, a stalled watcher held them all
    (4096 of them, 4 GB) before; it is cut off at BUFFER_BYTES now."""
    from stablequeue_coordinator.errors import ResourceExhausted
    from stablequeue_coordinator.queue.events import BUFFER_BYTES, EventBus

    bus = EventBus()
    sub = bus.subscribe(None)
    preview = queue_pb2.JobEvent(job=queue_pb2.Job(id="j"))
    preview.job.progress.preview_image = bytes(1 << 20)
    for _ in range((BUFFER_BYTES >> 20) + 2):
        bus.publish_job(preview)
    assert sub.overflowed and sub.buffer.qsize() == 1  # only the end mark is kept
    with pytest.raises(ResourceExhausted, match="MiB behind"):
        async for _ in sub.events():
            pass


def test_a_cancelled_watch_is_not_an_error_and_leaves_nothing_behind(
    server: CoordinatorThread, sq: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """Reported: a client cancelling WatchQueue logged an ERROR traceback. Watches are
    cancelled here at every point a client can cancel one — during the snapshot, while
    events flow, while idle, and by closing the channel — and the coordinator logs no
    error, and every subscription is gone afterwards (an abandoned one would grow
    without bound, each event added to its backlog)."""
    import gc
    import threading

    caplog.set_level("WARNING")
    sq.submit_many(txt2img("backlog"), 1000, "increment")
    bus = server.coordinator.bus
    stop = threading.Event()

    def churn() -> None:  # events flowing all the while
        with server.client() as other:
            while not stop.is_set():
                other.pause()
                other.resume()

    flowing = threading.Thread(target=churn, daemon=True)
    flowing.start()
    try:
        for read in (0, 1, 400, 1500):  # in the snapshot, at its end, in live events
            call = sq.queue.WatchQueue(queue_pb2.WatchQueueRequest(snapshot=True))
            for _, _event in zip(range(read), call, strict=False):
                pass
            call.cancel()
        with server.client() as closing:  # the client goes away mid-stream
            events = closing.watch_queue(snapshot=True)
            next(events)
    finally:
        stop.set()
        flowing.join(10)
    before = server.run(subscriptions(bus))
    idle = sq.queue.WatchQueue(queue_pb2.WatchQueueRequest(snapshot=False))
    wait_until(lambda: bool(server.run(subscriptions(bus)) - before))  # it waits for events
    idle.cancel()

    def cleaned() -> bool:
        server.run(collect(gc))
        return not server.run(subscriptions(bus))  # what the bus still feeds

    wait_until(cleaned, 10)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


async def collect(gc: Any) -> None:
    import asyncio

    gc.collect()
    await asyncio.sleep(0.05)  # generator finalizers run on the loop
