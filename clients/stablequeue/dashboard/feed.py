"""The queue as the dashboards see it: kept current by one WatchQueue stream per process.

A background thread lists recent jobs once, then follows `WatchQueue` and applies
each event; pages wait on `QueueFeed.wait` for a newer version instead of polling
the coordinator. A lost stream is reopened with backoff and the reason is shown.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import grpc

from stablequeue.client import Client, StableQueueError
from stablequeue.v1 import queue_pb2

log = logging.getLogger(__name__)
ACTIVE = (queue_pb2.JOB_STATUS_PENDING, queue_pb2.JOB_STATUS_PROCESSING)


def unreachable(address: str, error: StableQueueError) -> str:
    """The message a page shows for a failed call: what failed and what to check."""
    if error.code == grpc.StatusCode.UNAVAILABLE:
        return f"StableQueue coordinator at {address} is not reachable ({error.message})"
    if error.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return f"StableQueue refused the API key: {error.message}"
    return f"StableQueue: {error.message}"


ACTIONS: dict[str, Callable[[Client, str, float | None], Any]] = {
    "cancel": lambda c, job, _: c.cancel(job),
    "retry": lambda c, job, _: c.retry(job),
    "delete": lambda c, job, _: c.delete(job),
    "front": lambda c, job, _: c.move(job, "front"),
    "back": lambda c, job, _: c.move(job, "back"),
    "priority": lambda c, job, value: c.set_priority(job, int(value or 0)),
    "pause": lambda c, _, __: c.pause(),
    "resume": lambda c, _, __: c.resume(),
}
QUEUE_MESSAGES = {
    "pause": "Queue paused: running jobs finish, no new ones start.",
    "resume": "Queue resumed.",
}


def perform(client: Client, verb: str, job_id: str = "", value: float | None = None) -> str:
    """One queue action (a key of ACTIONS) on a job, or pause/resume; returns what to say.

    Raises:
        StableQueueError: the coordinator refused or could not be reached.
    """
    ACTIONS[verb](client, job_id, value)
    return QUEUE_MESSAGES.get(verb, f"{verb.capitalize()}: {job_id[:8]} done.")


class QueueFeed:
    """Jobs by id (active ones and the latest finished), with a version bumped on change.

    Args:
        connect: returns a new `Client` (called again after a lost stream).
        history: finished jobs kept for the history view.
    """

    def __init__(self, connect: Callable[[], Client], history: int = 100) -> None:
        self.connect = connect
        self.history = history
        self.jobs: dict[str, queue_pb2.Job] = {}
        self.stats = queue_pb2.QueueStats()
        self.error = ""
        self.connected = False
        self.version = 0
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._stream: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> QueueFeed:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sq-feed", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.cancel()
        if self._thread is not None:
            self._thread.join(5)
        self._bump()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def wait(self, seen: int, timeout: float) -> int:
        """Blocks until the version differs from `seen` (or `timeout`); returns the version."""
        with self._changed:
            self._changed.wait_for(lambda: self.version != seen or self._stop.is_set(), timeout)
            return self.version

    def ordered(self) -> list[queue_pb2.Job]:
        """Running first, then pending in queue order (priority, then position), then
        finished, newest first."""
        with self._changed:
            jobs = list(self.jobs.values())
        running = [j for j in jobs if j.status == queue_pb2.JOB_STATUS_PROCESSING]
        pending = sorted(
            (j for j in jobs if j.status == queue_pb2.JOB_STATUS_PENDING),
            key=lambda j: (-j.spec.priority, j.position),
        )
        done = sorted(
            (j for j in jobs if j.status not in ACTIVE),
            key=lambda j: j.finished_at.ToNanoseconds() or j.updated_at.ToNanoseconds(),
            reverse=True,
        )
        return running + pending + done[: self.history]

    def _bump(self) -> None:
        with self._changed:
            self.version += 1
            self._changed.notify_all()

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            client: Client | None = None
            try:
                client = self.connect()
                self._follow(client)
                delay = 0.5
            except StableQueueError as e:
                if self._stop.is_set():
                    break
                error = unreachable(client.address if client else "?", e)
                if error != self.error:  # once per change, not at every retry
                    log.warning("%s", error)
                self.error = error
            finally:
                self.connected = False
                if client is not None:
                    client.close()
            self._bump()
            self._stop.wait(delay)
            delay = min(delay * 2, 10.0)

    def _follow(self, client: Client) -> None:
        finished = client.list_jobs(order=queue_pb2.JOB_ORDER_NEWEST, page_size=self.history)
        stats = client.stats()
        request = queue_pb2.WatchQueueRequest(snapshot=True)
        self._stream = client.queue.WatchQueue(request, metadata=client._metadata)
        with self._changed:
            self.jobs = {j.id: j for j in finished.jobs}
            self.stats = stats
        self.error, self.connected = "", True
        self._bump()
        try:
            for event in self._stream:
                job = event.job_event.job
                if job.status == queue_pb2.JOB_STATUS_COMPLETED and not job.results:
                    job.CopyFrom(client.get_job(job.id))  # events leave the results out
                self._apply(event)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED or not self._stop.is_set():
                raise StableQueueError(e.code(), e.details() or e.code().name) from None
        finally:
            self._stream = None

    def _apply(self, event: queue_pb2.QueueEvent) -> None:
        with self._changed:
            if event.HasField("stats"):
                self.stats = event.stats
            if event.HasField("job_event"):
                job = event.job_event.job
                if event.job_event.type == queue_pb2.JOB_EVENT_TYPE_DELETED:
                    self.jobs.pop(job.id, None)
                else:
                    old = self.jobs.get(job.id)
                    if old is not None and not job.results and old.results:
                        job.results.extend(old.results)
                    self.jobs[job.id] = job
                self._trim()
            self.version += 1
            self._changed.notify_all()

    def _trim(self) -> None:
        done = [j for j in self.jobs.values() if j.status not in ACTIVE]
        if len(done) > self.history * 2:
            done.sort(key=lambda j: j.updated_at.ToNanoseconds())
            for job in done[: len(done) - self.history]:
                del self.jobs[job.id]
