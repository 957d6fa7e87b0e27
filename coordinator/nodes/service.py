"""Node agents: their sessions, heartbeats and model processes, and commands to them.

An agent holds one bidirectional stream (ProcessesService.AgentSession): it
registers, then sends heartbeats and process states; the coordinator sends
commands and matches the replies by command id. A node is offline once three
heartbeats are missed (or its stream ends); listeners hear about it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from stablequeue.v1 import common_pb2, models_pb2, processes_pb2
from stablequeue_coordinator.common import timestamp, utcnow
from stablequeue_coordinator.errors import FailedPrecondition, InvalidArgument, NotFound
from stablequeue_coordinator.servers.service import Health, HealthState, ServerState
from stablequeue_coordinator.store.db import Database
from stablequeue_coordinator.store.tables import ServerRow, SettingRow

log = logging.getLogger(__name__)
DRAINED_SETTING = "nodes.drained"
NODE_SCHEME = "node://"  # base URL of a node place: node://<node>:<model>
MISSED_HEARTBEATS = 3
COMMAND_TIMEOUT_S = 300.0


class CommandFailed(FailedPrecondition):
    """The agent could not carry out a command; the message is its reason."""


@dataclass
class NodeState:
    info: processes_pb2.NodeInfo
    connected: bool = True
    last_heartbeat: float = field(default_factory=time.monotonic)
    last_heartbeat_at: object = None
    processes: dict[str, processes_pb2.ProcessInfo] = field(default_factory=dict)
    outbox: asyncio.Queue[processes_pb2.CoordinatorCommand] = field(default_factory=asyncio.Queue)
    pending: dict[str, asyncio.Future[processes_pb2.CommandResult]] = field(default_factory=dict)
    session: int = 0
    draining: bool = False
    usage: processes_pb2.Heartbeat | None = None

    def to_pb(self) -> processes_pb2.Node:
        return processes_pb2.Node(
            info=self.info,
            connected=self.connected,
            last_heartbeat_at=timestamp(self.last_heartbeat_at),  # type: ignore[arg-type]
            processes=list(self.processes.values()),
            draining=self.draining,
            usage=self.usage,
        )


class NodeService:
    def __init__(self, db: Database | None = None) -> None:
        self._db = db
        self._drained: set[str] = set()  # nodes drained (stored, see drain())
        self.nodes: dict[str, NodeState] = {}
        self._offline_listeners: list[Callable[[str], None]] = []
        self._change_listeners: list[Callable[[], None]] = []
        # Runs on nodes, by attempt (task id): the queue its updates go to (None: node
        # lost), and the node. An update of any other attempt is stray: that run is
        # ended on its node (`_stray`, once each).
        self._jobs: dict[str, asyncio.Queue[processes_pb2.AgentJobUpdate | None]] = {}
        self._job_nodes: dict[str, str] = {}
        self._stopping: set[str] = set()  # stray runs already told to end
        self._rows: dict[tuple[str, bool], ServerRow] = {}  # see places()
        self._monitor: asyncio.Task[None] | None = None
        self._waiters: list[asyncio.Event] = []  # (see _changed_event)
        # False while this coordinator may not act (its lease ran out: another may
        # have taken over): no run is ended on a node on its own account then.
        self.may_act: Callable[[], bool] = lambda: True
        self._sessions = 0
        self._download_listener: (
            Callable[[str, processes_pb2.DownloadUpdate], Awaitable[None]] | None
        ) = None

    def on_download(
        self, listener: Callable[[str, processes_pb2.DownloadUpdate], Awaitable[None]]
    ) -> None:
        """Called with (node, update) for each DownloadUpdate an agent sends."""
        self._download_listener = listener

    def on_offline(self, listener: Callable[[str], None]) -> None:
        self._offline_listeners.append(listener)

    def on_change(self, listener: Callable[[], None]) -> None:
        """Called when a node connects, goes offline or a process changes state."""
        self._change_listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._change_listeners:
            listener()
        waiters, self._waiters = self._waiters, []
        for event in waiters:
            event.set()

    def places(self) -> list[ServerState]:
        """Each model of each node as a place the dispatcher can run a job (kind node)."""
        places = []
        now = utcnow()
        for node in self.nodes.values():
            for model in node.info.models:
                alias = f"{node.info.name}:{model.key}"
                row = self._rows.get((alias, node.draining))
                if row is None:  # built once: every dispatch round asks for the places
                    row = self._rows[(alias, node.draining)] = node_row(alias, node.draining)
                health = Health(
                    HealthState.UP if node.connected else HealthState.DOWN,
                    "" if node.connected else f"node {node.info.name} is offline",
                    model.key,
                    now,
                    (model.model_file,) if model.model_file else (),
                    tuple(model.loras),
                )
                places.append(ServerState(row, health))
        return places

    async def run_job(
        self, node_name: str, model: str, job_id: str, spec: bytes, task_id: str = ""
    ) -> AsyncIterator[processes_pb2.AgentJobUpdate]:
        """Has the node run attempt `task_id` of a job; yields its updates until the
        final one.

        Raises:
            FailedPrecondition: the node is offline or went offline meanwhile.
        """
        node = self.get(node_name)
        if not node.connected:
            raise FailedPrecondition(f"node {node_name} is offline")
        queue: asyncio.Queue[processes_pb2.AgentJobUpdate | None] = asyncio.Queue()
        key = task_id or job_id
        self._jobs[key] = queue
        self._job_nodes[key] = node_name
        updates = self._updates(node_name, key, queue)
        try:
            await node.outbox.put(
                processes_pb2.CoordinatorCommand(
                    command_id=uuid.uuid4().hex,
                    run_job=processes_pb2.RunJobCommand(
                        job_id=job_id, model=model, spec=spec, task_id=task_id
                    ),
                )
            )
            async for update in updates:
                yield update
        finally:
            await updates.aclose()  # (forgets the attempt, also when it never started)
            self._jobs.pop(key, None)
            self._job_nodes.pop(key, None)

    async def follow_job(
        self, node_name: str, job_id: str, task_id: str, wait_s: float
    ) -> AsyncIterator[processes_pb2.AgentJobUpdate] | None:
        """Follows attempt `task_id` of a job that a previous coordinator sent to the node
        (this one took over meanwhile): its updates until the final one, without
        running it again. None when the node does not come back within `wait_s` or
        does not run (or hold the results of) that attempt any more.

        Registered at once, so the updates the agent kept for its next session reach
        the attempt, not the stray handler.
        """
        key = task_id or job_id
        queue: asyncio.Queue[processes_pb2.AgentJobUpdate | None] = asyncio.Queue()
        self._jobs[key], self._job_nodes[key] = queue, node_name
        try:
            async with asyncio.timeout(wait_s):
                while (node := self.nodes.get(node_name)) is None or not node.connected:
                    await self._changed_event().wait()
        except TimeoutError:
            self._jobs.pop(key, None)
            self._job_nodes.pop(key, None)
            return None
        if key not in node.info.running_tasks:
            self._jobs.pop(key, None)
            self._job_nodes.pop(key, None)
            return None
        return self._updates(node_name, key, queue)

    async def _updates(
        self, node_name: str, key: str, queue: asyncio.Queue[processes_pb2.AgentJobUpdate | None]
    ) -> AsyncGenerator[processes_pb2.AgentJobUpdate, None]:
        try:
            while True:
                update = await queue.get()
                if update is None:
                    raise FailedPrecondition(f"node {node_name} went offline during the job")
                yield update
                if update.done:
                    return
        finally:
            self._jobs.pop(key, None)
            self._job_nodes.pop(key, None)

    def _changed_event(self) -> asyncio.Event:
        """An event set at the next change of any node (a connect, a disconnect)."""
        event = asyncio.Event()
        self._waiters.append(event)
        return event

    def start(self) -> None:
        self._monitor = asyncio.create_task(self._watch(), name="sq-node-monitor")

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor

    # ---- the agent's stream -------------------------------------------------

    async def session(
        self,
        messages: AsyncIterator[processes_pb2.AgentMessage],
        may_be: Callable[[str], Awaitable[None]] | None = None,
    ) -> AsyncIterator[processes_pb2.CoordinatorCommand]:
        """Runs one agent session: the first message must register the node, under a
        name the caller `may_be` (raises when its key belongs to another node)."""
        first = await anext(messages, None)
        if first is None or not first.HasField("register"):
            raise InvalidArgument("register", "the first message of a session must register")
        info = first.register
        if not info.name:
            raise InvalidArgument("register.name", "required")
        if may_be is not None:
            await may_be(info.name)
        self._sessions += 1
        node = NodeState(info=info, session=self._sessions, last_heartbeat_at=utcnow())
        previous = self.nodes.get(info.name)
        if previous is not None:
            _fail_pending(previous, "the agent reconnected")
            node.draining = previous.draining  # a reconnect does not undo a drain
        node.draining = node.draining or info.name in self._drained
        self.nodes[info.name] = node
        log.info("node %s connected (%d models)", info.name, len(info.models))
        self._changed()
        reader = asyncio.create_task(self._read(node, messages))
        get: asyncio.Task[processes_pb2.CoordinatorCommand] | None = None
        try:
            while not reader.done():
                get = asyncio.create_task(node.outbox.get())
                done, _ = await asyncio.wait({get, reader}, return_when=asyncio.FIRST_COMPLETED)
                if get in done:
                    yield get.result()
                get.cancel()
        finally:
            for task in (reader, get):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            if self.nodes.get(info.name) is node:
                self._went_offline(node, "its session ended")

    async def _read(
        self, node: NodeState, messages: AsyncIterator[processes_pb2.AgentMessage]
    ) -> None:
        async for message in messages:
            kind = message.WhichOneof("body")
            if kind == "heartbeat":
                self._heartbeat(node, message.heartbeat)
            elif kind == "register":  # the agent reloaded its models.yml
                self._reregistered(node, message.register)
            elif kind == "process_state":
                state = message.process_state
                if any(m.key == state.model for m in node.info.models):
                    state.node = node.info.name  # (not a model a reload dropped)
                    node.processes[state.model] = state
                    self._changed()
            elif kind == "job_update":
                await self._job_update(node, message.job_update)
            elif kind == "download" and self._download_listener is not None:
                try:
                    await self._download_listener(node.info.name, message.download)
                except Exception:  # one bad update must not end the session
                    log.exception("node %s: download update not recorded", node.info.name)
            elif kind == "command_result":
                future = node.pending.pop(message.command_result.command_id, None)
                if future is not None and not future.done():
                    future.set_result(message.command_result)

    async def _job_update(self, node: NodeState, update: processes_pb2.AgentJobUpdate) -> None:
        key = update.task_id or update.job_id
        queue = self._jobs.get(key)
        if queue is not None and self._job_nodes.get(key) != node.info.name:
            log.warning("node %s sent an update for job %s, which runs on %s: ignored",
                        node.info.name, update.job_id, self._job_nodes.get(key))  # fmt: skip
            return
        if queue is not None:
            queue.put_nowait(update)
        elif update.task_id:
            await self._stray(node, update)

    async def _stray(self, node: NodeState, update: processes_pb2.AgentJobUpdate) -> None:
        """An update of a run the coordinator gave up on (the node went silent and the
        job was re-queued, or cancelled): ignored, and the node is told to end that run
        (once), so one job never generates twice."""
        if update.task_id in self._stopping or not self.may_act():
            return
        if update.done or update.image or update.error:
            return  # the results of a finished run, sent again at a new session
        if len(self._stopping) > 10_000:
            self._stopping.clear()
        self._stopping.add(update.task_id)
        log.warning(
            "node %s still runs attempt %s of job %s, given up on: ending it",
            node.info.name, update.task_id, update.job_id,
        )  # fmt: skip
        if not update.done:
            cancel = processes_pb2.CancelJobCommand(job_id=update.job_id, task_id=update.task_id)
            await node.outbox.put(
                processes_pb2.CoordinatorCommand(command_id=uuid.uuid4().hex, cancel_job=cancel)
            )

    def _heartbeat(self, node: NodeState, beat: processes_pb2.Heartbeat) -> None:
        node.last_heartbeat = time.monotonic()
        node.last_heartbeat_at = utcnow()
        node.usage = beat
        if not node.connected:
            node.connected = True
            log.info("node %s is back", node.info.name)
            self._changed()

    def _reregistered(self, node: NodeState, info: processes_pb2.NodeInfo) -> None:
        if info.name != node.info.name:
            log.warning("node %s tried to rename itself %r; ignored", node.info.name, info.name)
            return
        node.info = info
        keys = {m.key for m in info.models}
        node.processes = {k: p for k, p in node.processes.items() if k in keys}
        log.info("node %s now has %d models", info.name, len(keys))
        self._changed()

    async def _watch(self) -> None:
        while True:
            now = time.monotonic()
            wake = 0.1
            for node in list(self.nodes.values()) if self.may_act() else []:
                if not node.connected:
                    continue
                limit = MISSED_HEARTBEATS * (node.info.heartbeat_interval or 5.0)
                left = node.last_heartbeat + limit - now
                if left <= 0:
                    self._went_offline(node, f"{MISSED_HEARTBEATS} heartbeats missed")
                else:
                    wake = min(wake, left)
            await asyncio.sleep(wake + 0.001)  # (a node's deadline, or a tenth of a second)

    def _went_offline(self, node: NodeState, why: str) -> None:
        if not node.connected:
            return
        node.connected = False
        log.warning("node %s is offline: %s", node.info.name, why)
        _fail_pending(node, f"node {node.info.name} went offline")
        for job_id, name in list(self._job_nodes.items()):
            if name == node.info.name and job_id in self._jobs:
                self._jobs[job_id].put_nowait(None)
        for listener in self._offline_listeners:
            listener(node.info.name)
        self._changed()

    # ---- commands -----------------------------------------------------------

    async def drain(self, name: str, drain: bool) -> NodeState:
        """Stops (or resumes) sending new jobs to `name`; running jobs finish. Stored:
        a coordinator that takes over keeps the drain."""
        if not name:
            raise InvalidArgument("node", "required")
        node = self.get(name)
        drained = (self._drained | {name}) if drain else (self._drained - {name})
        if self._db is not None and drained != self._drained:
            value = json.dumps(sorted(drained))
            await self._db.run(lambda s: s.merge(SettingRow(name=DRAINED_SETTING, value=value)))
        self._drained = drained
        node.draining = drain
        log.info("node %s %s", name, "draining" if drain else "takes jobs again")
        self._changed()
        return node

    async def load(self) -> None:
        """Reads the stored drains (at the start of the active coordinator)."""
        if self._db is None:
            return
        row = await self._db.run(lambda s: s.get(SettingRow, DRAINED_SETTING))
        self._drained = set(json.loads(row.value)) if row is not None else set()

    def locate(
        self, reference: str, model: models_pb2.Model | None
    ) -> list[common_pb2.ModelLocation]:
        """The node models `reference` names: by key, name or the checkpoint file its args
        load; for a model of the library, also those loading a file of the same name
        (presumed, as the node reports no hash), unless that node's file is listed already."""
        want = reference.strip().lower()
        copies = model.locations if model is not None else []
        files = {loc.path.replace("\\", "/").rsplit("/", 1)[-1].lower() for loc in copies}
        known = {(loc.host, loc.path) for loc in copies}  # a node's file the library has
        found = []
        for node in self.nodes.values():
            for m in node.info.models:
                base = m.model_file.rsplit("/", 1)[-1].lower()
                names = {m.key.lower(), m.name.lower(), base, base.rsplit(".", 1)[0]} - {""}
                if (node.info.name, m.model_file) in known:
                    continue  # listed already, as that node's file (hashed)
                if want in names or (base and base in files):
                    found.append(common_pb2.ModelLocation(
                        host=f"{node.info.name}:{m.key}", path=m.model_file, backend_name=m.key,
                        app=common_pb2.APP_KIND_SDCPP, verified=False,
                    ))  # fmt: skip
        return found

    def processes(self, name: str = "") -> list[processes_pb2.ProcessInfo]:
        """The model processes of node `name`, or of every node."""
        nodes = [self.get(name)] if name else list(self.nodes.values())
        return [p for n in nodes for _, p in sorted(n.processes.items())]

    def get(self, name: str) -> NodeState:
        node = self.nodes.get(name)
        if node is None:
            raise NotFound(f"no node named {name!r} has connected")
        return node

    def pick(self, name: str, model: str) -> NodeState:
        """The node to act on: `name`, or the only connected node that has `model`."""
        if name:
            node = self.get(name)
        else:
            having = [n for n in self.nodes.values()
                      if n.connected and any(m.key == model for m in n.info.models)]  # fmt: skip
            if not having:
                raise NotFound(f"no connected node has a model {model!r}")
            if len(having) > 1:
                names = ", ".join(sorted(n.info.name for n in having))
                raise InvalidArgument("node", f"{model!r} is on several nodes ({names}); pick one")
            node = having[0]
        if not node.connected:
            raise FailedPrecondition(f"node {node.info.name} is offline")
        if not any(m.key == model for m in node.info.models):
            raise NotFound(f"node {node.info.name} has no model {model!r}")
        return node

    async def start_model(self, name: str, model: str) -> processes_pb2.ProcessInfo:
        """Starts `model` on node `name` (or the only node with it); its process after."""
        command = processes_pb2.CoordinatorCommand(
            start_model=processes_pb2.StartModelCommand(model=_required_model(model))
        )
        return (await self.command(self.pick(name, model), command)).process

    async def stop_model(self, name: str, model: str) -> processes_pb2.ProcessInfo:
        """Stops `model` on node `name` (or the only node with it); its process after."""
        command = processes_pb2.CoordinatorCommand(
            stop_model=processes_pb2.StopModelCommand(model=_required_model(model))
        )
        return (await self.command(self.pick(name, model), command)).process

    async def model_logs(self, name: str, model: str, lines: int) -> list[str]:
        """The last `lines` (1-10,000; 0: 200) lines `model`'s process wrote."""
        if not 0 <= lines <= 10_000:
            raise InvalidArgument("lines", "must be within 0 .. 10000")
        command = processes_pb2.CoordinatorCommand(
            logs=processes_pb2.LogsCommand(model=_required_model(model), lines=lines or 200)
        )
        result = await self.command(self.pick(name, model), command, wait_s=30)
        return list(result.lines)

    async def send(self, name: str, command: processes_pb2.CoordinatorCommand) -> None:
        """Sends a command whose answers come as their own messages (downloads).

        Raises:
            NotFound: no such node. FailedPrecondition: it is offline.
        """
        node = self.get(name)
        if not node.connected:
            raise FailedPrecondition(f"node {name} is offline")
        command.command_id = command.command_id or uuid.uuid4().hex
        await node.outbox.put(command)

    async def command(
        self, node: NodeState, command: processes_pb2.CoordinatorCommand, wait_s: float = 0
    ) -> processes_pb2.CommandResult:
        """Sends `command` and waits for the agent's reply.

        Raises:
            CommandFailed: the agent reported an error. FailedPrecondition: offline.
        """
        command.command_id = uuid.uuid4().hex
        future: asyncio.Future[processes_pb2.CommandResult] = (
            asyncio.get_running_loop().create_future()
        )
        node.pending[command.command_id] = future
        await node.outbox.put(command)
        try:
            async with asyncio.timeout(wait_s or COMMAND_TIMEOUT_S):
                result = await future
        except TimeoutError:
            node.pending.pop(command.command_id, None)
            raise CommandFailed(f"node {node.info.name} did not answer in time") from None
        if not result.ok:
            raise CommandFailed(f"node {node.info.name}: {result.error}")
        return result


def _fail_pending(node: NodeState, why: str) -> None:
    for future in node.pending.values():
        if not future.done():
            future.set_exception(FailedPrecondition(why))
    node.pending.clear()


def _required_model(value: str) -> str:
    if not value:
        raise InvalidArgument("model", "required")
    return value


def node_row(alias: str, paused: bool = False) -> ServerRow:
    """The (never stored) server row of a node's model `alias` ("node:model")."""
    now = utcnow()
    return ServerRow(alias=alias, kind="node", base_url=f"{NODE_SCHEME}{alias}",
                     max_concurrency=1, paused=paused, created_at=now, updated_at=now)  # fmt: skip
