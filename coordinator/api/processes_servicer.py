"""ProcessesService servicer: backend servers, and node agents with their processes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import grpc

from stablequeue.v1 import common_pb2, processes_pb2, processes_pb2_grpc
from stablequeue_coordinator.auth import principal as auth
from stablequeue_coordinator.auth.keys import KeyService
from stablequeue_coordinator.common import check_enum, timestamp
from stablequeue_coordinator.errors import InvalidArgument
from stablequeue_coordinator.kinds import KIND_FROM_PB, KIND_TO_PB, SERVER_KINDS
from stablequeue_coordinator.nodes.service import NodeService
from stablequeue_coordinator.servers.service import (
    HealthState,
    ServerService,
    ServerSpec,
    ServerState,
)

Ctx = grpc.aio.ServicerContext
HEALTH_TO_PB = {
    state: getattr(processes_pb2, f"SERVER_HEALTH_{state.name}") for state in HealthState
}


def kind_of(value: int, *, allow_zero: bool = False) -> str:
    check_enum("kind", common_pb2.AppKind, value, allow_zero=allow_zero)
    if value == 0 and allow_zero:
        return ""
    if value not in KIND_FROM_PB:
        names = [name.upper() for name in SERVER_KINDS]
        raise InvalidArgument("kind", f"must be {', '.join(names[:-1])} or {names[-1]}")
    return KIND_FROM_PB[value]


def server_to_pb(state: ServerState, running: int) -> processes_pb2.Server:
    row, health = state.row, state.health
    return processes_pb2.Server(
        alias=row.alias,
        kind=KIND_TO_PB[row.kind],
        base_url=row.base_url,
        username=row.username,
        has_credentials=bool(row.password or row.bearer_token),
        max_concurrency=row.max_concurrency,
        labels=json.loads(row.labels),
        enabled=row.enabled,
        paused=row.paused,
        health=HEALTH_TO_PB[health.state],
        health_reason=health.reason,
        loaded_model=health.loaded_model,
        running_jobs=running,
        last_checked_at=timestamp(health.checked_at),
        samplers=health.samplers,
        schedulers=health.schedulers,
    )


class ProcessesServicer(processes_pb2_grpc.ProcessesServiceServicer):
    def __init__(
        self,
        servers: ServerService,
        running_on: Callable[[str], int],
        nodes: NodeService,
        keys: KeyService | None = None,
    ) -> None:
        self._servers = servers
        self._running_on = running_on
        self._nodes = nodes
        self._keys = keys

    def _pb(self, state: ServerState) -> processes_pb2.Server:
        return server_to_pb(state, self._running_on(state.row.alias))

    async def RegisterServer(
        self, request: processes_pb2.RegisterServerRequest, context: Ctx
    ) -> processes_pb2.RegisterServerResponse:
        spec = ServerSpec(
            base_url=request.base_url,
            username=request.username,
            password=request.password,
            bearer_token=request.bearer_token,
            max_concurrency=request.max_concurrency or None,
            labels=dict(request.labels),
        )
        state = await self._servers.register(request.alias, kind_of(request.kind), spec)
        return processes_pb2.RegisterServerResponse(server=self._pb(state))

    async def UpdateServer(
        self, request: processes_pb2.UpdateServerRequest, context: Ctx
    ) -> processes_pb2.UpdateServerResponse:
        spec = ServerSpec(
            base_url=request.base_url if request.HasField("base_url") else None,
            username=request.username if request.HasField("username") else None,
            password=request.password if request.HasField("password") else None,
            bearer_token=request.bearer_token if request.HasField("bearer_token") else None,
            max_concurrency=request.max_concurrency
            if request.HasField("max_concurrency")
            else None,
            labels=dict(request.labels),
        )
        state = await self._servers.update(request.alias, spec, request.replace_labels)
        return processes_pb2.UpdateServerResponse(server=self._pb(state))

    async def RemoveServer(
        self, request: processes_pb2.RemoveServerRequest, context: Ctx
    ) -> processes_pb2.RemoveServerResponse:
        await self._servers.remove(request.alias)
        return processes_pb2.RemoveServerResponse()

    async def ListServers(
        self, request: processes_pb2.ListServersRequest, context: Ctx
    ) -> processes_pb2.ListServersResponse:
        states = await self._servers.list(kind_of(request.kind, allow_zero=True))
        return processes_pb2.ListServersResponse(servers=[self._pb(s) for s in states])

    async def GetServer(
        self, request: processes_pb2.GetServerRequest, context: Ctx
    ) -> processes_pb2.GetServerResponse:
        return processes_pb2.GetServerResponse(
            server=self._pb(await self._servers.get(request.alias))
        )

    async def SetServerEnabled(
        self, request: processes_pb2.SetServerEnabledRequest, context: Ctx
    ) -> processes_pb2.SetServerEnabledResponse:
        state = await self._servers.set_flag(request.alias, "enabled", request.enabled)
        return processes_pb2.SetServerEnabledResponse(server=self._pb(state))

    async def CheckServer(
        self, request: processes_pb2.CheckServerRequest, context: Ctx
    ) -> processes_pb2.CheckServerResponse:
        return processes_pb2.CheckServerResponse(
            server=self._pb(await self._servers.check(request.alias))
        )

    async def AgentSession(
        self, request_iterator: AsyncIterator[processes_pb2.AgentMessage], context: Ctx
    ) -> AsyncIterator[processes_pb2.CoordinatorCommand]:
        who, keys = auth.current(), self._keys

        async def may_be(name: str) -> None:  # a node key registers only as its node
            if keys is not None:
                await keys.bind_node(who, name)

        async for command in self._nodes.session(request_iterator, may_be):
            yield command

    async def ListNodes(
        self, request: processes_pb2.ListNodesRequest, context: Ctx
    ) -> processes_pb2.ListNodesResponse:
        nodes = sorted(self._nodes.nodes.values(), key=lambda n: n.info.name)
        return processes_pb2.ListNodesResponse(nodes=[n.to_pb() for n in nodes])

    async def ListProcesses(
        self, request: processes_pb2.ListProcessesRequest, context: Ctx
    ) -> processes_pb2.ListProcessesResponse:
        return processes_pb2.ListProcessesResponse(processes=self._nodes.processes(request.node))

    async def StartProcess(
        self, request: processes_pb2.StartProcessRequest, context: Ctx
    ) -> processes_pb2.StartProcessResponse:
        process = await self._nodes.start_model(request.node, request.model)
        return processes_pb2.StartProcessResponse(process=process)

    async def StopProcess(
        self, request: processes_pb2.StopProcessRequest, context: Ctx
    ) -> processes_pb2.StopProcessResponse:
        process = await self._nodes.stop_model(request.node, request.model)
        return processes_pb2.StopProcessResponse(process=process)

    async def GetProcessLogs(
        self, request: processes_pb2.GetProcessLogsRequest, context: Ctx
    ) -> processes_pb2.GetProcessLogsResponse:
        lines = await self._nodes.model_logs(request.node, request.model, request.lines)
        return processes_pb2.GetProcessLogsResponse(lines=lines)

    async def DrainNode(
        self, request: processes_pb2.DrainNodeRequest, context: Ctx
    ) -> processes_pb2.DrainNodeResponse:
        return processes_pb2.DrainNodeResponse(
            node=(await self._nodes.drain(request.node, request.drain)).to_pb()
        )
