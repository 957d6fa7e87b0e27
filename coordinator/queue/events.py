"""In-process fan-out of job events to WatchJob / WatchQueue streams.

Publishing never blocks: each subscriber has a buffer bounded in events and in bytes
(events carry previews), and one that falls that far behind is cut off (its stream
ends with RESOURCE_EXHAUSTED) instead of slowing the queue or growing without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from stablequeue.v1 import queue_pb2
from stablequeue_coordinator.errors import BackendUnavailable, ResourceExhausted

BUFFER = 4096
# Events carry preview images: a watcher's backlog is bounded by bytes as well.
BUFFER_BYTES = 64 << 20


@dataclass(eq=False)
class Subscription:
    """One watcher. `job_id` None means every job (plus pause/resume events)."""

    job_id: str | None
    buffer: asyncio.Queue[queue_pb2.QueueEvent | None] = field(
        default_factory=lambda: asyncio.Queue(BUFFER)
    )
    overflowed: bool = False
    pending_bytes: int = 0  # the size of the events waiting in `buffer`

    def push(self, event: queue_pb2.QueueEvent | None) -> None:
        if self.overflowed:
            return
        size = event.ByteSize() if event is not None else 0
        try:
            if self.pending_bytes + size > BUFFER_BYTES:
                raise asyncio.QueueFull
            self.buffer.put_nowait(event)
            self.pending_bytes += size
        except asyncio.QueueFull:
            self.overflowed = True
            _drain(self.buffer)
            self.pending_bytes = 0
            self.buffer.put_nowait(None)

    async def events(self) -> AsyncIterator[queue_pb2.QueueEvent]:
        """Yields events until the bus closes.

        Raises:
            ResourceExhausted: the watcher fell more than BUFFER events behind.
            BackendUnavailable: the coordinator is shutting down.
        """
        while True:
            event = await self.buffer.get()
            if event is not None:
                self.pending_bytes -= event.ByteSize()
                yield event
                continue
            if self.overflowed:
                raise ResourceExhausted(
                    f"watch fell more than {BUFFER} events or {BUFFER_BYTES >> 20} MiB behind; "
                    "reconnect"
                )
            raise BackendUnavailable("the coordinator is shutting down")


def _drain(buffer: asyncio.Queue[queue_pb2.QueueEvent | None]) -> None:
    while not buffer.empty():
        buffer.get_nowait()


class EventBus:
    """Fans events out to subscriptions. Lives on the event loop's thread."""

    def __init__(self) -> None:
        self._all: set[Subscription] = set()
        self._by_job: dict[str, set[Subscription]] = {}
        self.closed = False

    def wants(self, job_id: str) -> bool:
        """True when anyone would receive an event about `job_id` (skip building it otherwise)."""
        return bool(self._all) or job_id in self._by_job

    def subscribe(self, job_id: str | None = None) -> Subscription:
        sub = Subscription(job_id)
        if self.closed:
            sub.push(None)
        elif job_id is None:
            self._all.add(sub)
        else:
            self._by_job.setdefault(job_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub.job_id is None:
            self._all.discard(sub)
            return
        subs = self._by_job.get(sub.job_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_job[sub.job_id]

    def publish_job(self, event: queue_pb2.JobEvent) -> None:
        wrapped = queue_pb2.QueueEvent(job_event=event)
        for sub in self._by_job.get(event.job.id, ()):
            sub.push(wrapped)
        for sub in self._all:
            sub.push(wrapped)

    def publish_stats(self, stats: queue_pb2.QueueStats) -> None:
        wrapped = queue_pb2.QueueEvent(stats=stats)
        for sub in self._all:
            sub.push(wrapped)

    def close(self) -> None:
        """Ends every stream (shutdown)."""
        self.closed = True
        for sub in [*self._all, *(s for subs in self._by_job.values() for s in subs)]:
            sub.push(None)
        self._all.clear()
        self._by_job.clear()
