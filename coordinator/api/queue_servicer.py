"""QueueService servicer: converts messages and awaits one domain call each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import grpc
from google.protobuf.message import Message

from stablequeue.v1 import common_pb2, queue_pb2, queue_pb2_grpc
from stablequeue_coordinator.auth import principal as auth
from stablequeue_coordinator.auth.keys import KeyService
from stablequeue_coordinator.common import check_enum, read_chunks, timestamp
from stablequeue_coordinator.errors import InvalidArgument
from stablequeue_coordinator.kinds import APP_FROM_PB
from stablequeue_coordinator.outputs.store import ResultQuery, ResultStore, result_to_pb
from stablequeue_coordinator.queue.convert import STATUS_FROM_PB
from stablequeue_coordinator.queue.listing import JobQuery
from stablequeue_coordinator.queue.service import QueueService
from stablequeue_coordinator.store.tables import ApiKeyRow

SCOPE_FROM_PB = {
    queue_pb2.KEY_SCOPE_ADMIN: auth.Scope.ADMIN,
    queue_pb2.KEY_SCOPE_SUBMIT: auth.Scope.SUBMIT,
    queue_pb2.KEY_SCOPE_NODE: auth.Scope.NODE,
}
SCOPE_TO_PB = {v: k for k, v in SCOPE_FROM_PB.items()}
Ctx = grpc.aio.ServicerContext


def job_query(request: queue_pb2.ListJobsRequest) -> JobQuery:
    """ListJobsRequest -> JobQuery, rejecting unknown enum numbers by field."""
    for i, status in enumerate(request.statuses):
        check_enum(f"statuses[{i}]", queue_pb2.JobStatus, status, allow_zero=False)
    check_enum("app", common_pb2.AppKind, request.app, allow_zero=True)
    check_enum("order", queue_pb2.JobOrder, request.order, allow_zero=True)
    return JobQuery(
        statuses=tuple(STATUS_FROM_PB[s] for s in request.statuses),
        app=APP_FROM_PB.get(request.app, ""),
        server=request.server,
        submitted_by=request.submitted_by,
        batch_id=request.batch_id,
        newest=request.order == queue_pb2.JOB_ORDER_NEWEST,
        page_size=request.page.page_size,
        page_token=request.page.page_token,
    )


def owner_of(who: auth.Principal) -> str | None:
    """Non-admins see only the results of their own jobs."""
    return None if who.is_admin else who.key_id


def _moment(request: Message, field: str) -> datetime | None:
    """A Timestamp field as a datetime; None when unset.

    Raises:
        InvalidArgument: a time outside 0001..9999 (or with bad nanos).
    """
    if not request.HasField(field):
        return None
    try:
        return getattr(request, field).ToDatetime()
    except (ValueError, OverflowError, OSError):
        raise InvalidArgument(field, "not a valid time (years 1 to 9999)") from None


def result_query(request: queue_pb2.ListResultsRequest, who: auth.Principal) -> ResultQuery:
    return ResultQuery(
        job_id=request.job_id,
        model=request.model,
        text=request.text,
        since=_moment(request, "since"),
        until=_moment(request, "until"),
        page_size=request.page.page_size,
        page_token=request.page.page_token,
        owner=owner_of(who),
    )


def key_to_pb(row: ApiKeyRow) -> queue_pb2.ApiKey:
    return queue_pb2.ApiKey(
        id=row.id,
        name=row.name,
        scope=SCOPE_TO_PB[auth.Scope(row.scope)],
        created_at=timestamp(row.created_at),
        last_used_at=timestamp(row.last_used_at),
        revoked_at=timestamp(row.revoked_at),
        node=row.node or "",
    )


class QueueServicer(queue_pb2_grpc.QueueServiceServicer):
    def __init__(self, queue: QueueService, keys: KeyService, results: ResultStore) -> None:
        self._queue = queue
        self._keys = keys
        self._results = results

    async def SubmitJob(
        self, request: queue_pb2.SubmitJobRequest, context: Ctx
    ) -> queue_pb2.SubmitJobResponse:
        job, created = await self._queue.submit(
            auth.current(), request.spec, request.idempotency_key
        )
        return queue_pb2.SubmitJobResponse(job=job, created=created)

    async def SubmitJobs(
        self, request: queue_pb2.SubmitJobsRequest, context: Ctx
    ) -> queue_pb2.SubmitJobsResponse:
        jobs, created = await self._queue.submit_many(
            auth.current(), request.spec, request.count, request.seed_mode, request.idempotency_key
        )
        return queue_pb2.SubmitJobsResponse(jobs=jobs, created=created)

    async def GetJob(
        self, request: queue_pb2.GetJobRequest, context: Ctx
    ) -> queue_pb2.GetJobResponse:
        return queue_pb2.GetJobResponse(job=await self._queue.get(auth.current(), request.id))

    async def ListJobs(
        self, request: queue_pb2.ListJobsRequest, context: Ctx
    ) -> queue_pb2.ListJobsResponse:
        jobs, token = await self._queue.list(auth.current(), job_query(request))
        return queue_pb2.ListJobsResponse(jobs=jobs, next_page_token=token)

    async def CancelJob(
        self, request: queue_pb2.CancelJobRequest, context: Ctx
    ) -> queue_pb2.CancelJobResponse:
        return queue_pb2.CancelJobResponse(job=await self._queue.cancel(auth.current(), request.id))

    async def RetryJob(
        self, request: queue_pb2.RetryJobRequest, context: Ctx
    ) -> queue_pb2.RetryJobResponse:
        return queue_pb2.RetryJobResponse(job=await self._queue.retry(auth.current(), request.id))

    async def DeleteJob(
        self, request: queue_pb2.DeleteJobRequest, context: Ctx
    ) -> queue_pb2.DeleteJobResponse:
        await self._queue.delete(auth.current(), request.id)
        return queue_pb2.DeleteJobResponse()

    async def MoveJob(
        self, request: queue_pb2.MoveJobRequest, context: Ctx
    ) -> queue_pb2.MoveJobResponse:
        job = await self._queue.move(
            auth.current(), request.id, request.placement, request.anchor_id
        )
        return queue_pb2.MoveJobResponse(job=job)

    async def SetPriority(
        self, request: queue_pb2.SetPriorityRequest, context: Ctx
    ) -> queue_pb2.SetPriorityResponse:
        job = await self._queue.set_priority(auth.current(), request.id, request.priority)
        return queue_pb2.SetPriorityResponse(job=job)

    async def PauseQueue(
        self, request: queue_pb2.PauseQueueRequest, context: Ctx
    ) -> queue_pb2.PauseQueueResponse:
        return queue_pb2.PauseQueueResponse(
            stats=await self._queue.set_paused(True, request.server)
        )

    async def ResumeQueue(
        self, request: queue_pb2.ResumeQueueRequest, context: Ctx
    ) -> queue_pb2.ResumeQueueResponse:
        return queue_pb2.ResumeQueueResponse(
            stats=await self._queue.set_paused(False, request.server)
        )

    async def WatchJob(
        self, request: queue_pb2.WatchJobRequest, context: Ctx
    ) -> AsyncIterator[queue_pb2.JobEvent]:
        async for event in self._queue.watch_job(auth.current(), request.id):
            yield event

    async def WatchQueue(
        self, request: queue_pb2.WatchQueueRequest, context: Ctx
    ) -> AsyncIterator[queue_pb2.QueueEvent]:
        async for event in self._queue.watch_queue(
            auth.current(), request.snapshot, request.omit_previews
        ):
            yield event

    async def GetQueueStats(
        self, request: queue_pb2.GetQueueStatsRequest, context: Ctx
    ) -> queue_pb2.GetQueueStatsResponse:
        return queue_pb2.GetQueueStatsResponse(stats=await self._queue.stats(auth.current()))

    async def CreateApiKey(
        self, request: queue_pb2.CreateApiKeyRequest, context: Ctx
    ) -> queue_pb2.CreateApiKeyResponse:
        check_enum("scope", queue_pb2.KeyScope, request.scope, allow_zero=False)
        row, secret = await self._keys.create(
            request.name, SCOPE_FROM_PB[request.scope], request.node.strip()
        )
        return queue_pb2.CreateApiKeyResponse(key=key_to_pb(row), secret=secret)

    async def ListApiKeys(
        self, request: queue_pb2.ListApiKeysRequest, context: Ctx
    ) -> queue_pb2.ListApiKeysResponse:
        rows = await self._keys.list(request.include_revoked)
        return queue_pb2.ListApiKeysResponse(keys=[key_to_pb(row) for row in rows])

    async def RevokeApiKey(
        self, request: queue_pb2.RevokeApiKeyRequest, context: Ctx
    ) -> queue_pb2.RevokeApiKeyResponse:
        return queue_pb2.RevokeApiKeyResponse(key=key_to_pb(await self._keys.revoke(request.id)))

    async def ListResults(
        self, request: queue_pb2.ListResultsRequest, context: Ctx
    ) -> queue_pb2.ListResultsResponse:
        rows, token = await self._results.list(result_query(request, auth.current()))
        return queue_pb2.ListResultsResponse(
            results=[result_to_pb(r) for r in rows], next_page_token=token
        )

    async def GetResult(
        self, request: queue_pb2.GetResultRequest, context: Ctx
    ) -> AsyncIterator[queue_pb2.ResultChunk]:
        row, path, mime = await self._results.get(
            request.id, owner_of(auth.current()), request.max_edge
        )
        first = True
        async for data, _, _ in read_chunks(path):
            if first:
                yield queue_pb2.ResultChunk(result=result_to_pb(row), data=data, mime=mime)
            else:
                yield queue_pb2.ResultChunk(data=data)
            first = False

    async def DeleteResult(
        self, request: queue_pb2.DeleteResultRequest, context: Ctx
    ) -> queue_pb2.DeleteResultResponse:
        await self._results.delete(request.id, owner_of(auth.current()))
        return queue_pb2.DeleteResultResponse()
