"""The asyncio SDK against a real coordinator (it runs in another thread's loop)."""

from __future__ import annotations

import grpc

from stablequeue import AsyncClient, StableQueueError, txt2img
from stablequeue.v1 import queue_pb2
from tests.conftest import CoordinatorThread


async def test_async_client_submits_lists_watches_and_cancels(
    sqlite_server: CoordinatorThread,
) -> None:
    async with AsyncClient(sqlite_server.address) as sq:
        job = await sq.submit(txt2img("async cat", steps=10))
        assert (await sq.get_job(job.id)).spec.params.steps == 10
        assert [j.id for j in (await sq.list_jobs()).jobs] == [job.id]

        events = sq.watch_job(job.id)
        snapshot = await anext(events)
        assert snapshot.job.status == queue_pb2.JOB_STATUS_PENDING
        await sq.cancel(job.id)
        cancelled = await anext(events)
        assert cancelled.job.status == queue_pb2.JOB_STATUS_CANCELLED

        try:
            await sq.get_job("missing")
        except StableQueueError as e:
            assert e.code == grpc.StatusCode.NOT_FOUND and "missing" in e.message
        else:
            raise AssertionError("expected NOT_FOUND")
