"""API keys and scopes: loopback trust, --require-auth, scopes, ownership, revocation."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlmodel import select

from stablequeue import Client, txt2img
from stablequeue.v1 import common_pb2, models_pb2, processes_pb2, queue_pb2
from stablequeue_coordinator.api.interceptor import is_loopback
from stablequeue_coordinator.auth.principal import Scope
from stablequeue_coordinator.store.tables import ApiKeyRow
from tests.conftest import CoordinatorThread, make_settings
from tests.helpers import raises, subscriptions, wait_until


def new_key(server: CoordinatorThread, scope: Scope, name: str = "k") -> tuple[str, str]:
    """Creates a key the way `sq keys create` does on the server side: returns (id, secret)."""
    row, secret = server.run(server.coordinator.keys.create(name, scope))
    return row.id, secret


@pytest.mark.parametrize(
    ("peer", "loopback"),
    [
        ("ipv4:127.0.0.1:50000", True),
        ("ipv4:127.8.9.1:1", True),
        ("ipv6:[::1]:50000", True),
        ("ipv6:[::ffff:127.0.0.1]:5", True),
        ("ipv6:%5B::1%5D:50000", True),  # as gRPC really writes it
        ("ipv6:%5B2001:db8::1%5D:443", False),
        ("unix:/tmp/sq.sock", True),
        ("ipv4:192.168.1.20:50000", False),
        ("ipv6:[2001:db8::1]:443", False),
        ("ipv4:garbage", False),
        ("", False),
    ],
)
def test_only_this_machine_counts_as_loopback(peer: str, loopback: bool) -> None:
    assert is_loopback(peer) is loopback


def test_a_caller_on_ipv6_loopback_is_loopback(tmp_path: Path, database_url: str) -> None:
    """`--listen [::1]:PORT`: a local caller without a key is trusted, as on 127.0.0.1."""
    settings = make_settings(tmp_path, database_url).model_copy(update={"listen": "[::1]:0"})
    running = CoordinatorThread(settings)
    try:
        with running.client() as sq:
            assert sq.create_key("v6", "submit").key.name == "v6"
    finally:
        running.close()


def test_loopback_caller_without_key_is_admin(sq: Client) -> None:
    created = sq.create_key("first", "admin")  # the 1st key is made like any other
    assert created.key.scope == queue_pb2.KEY_SCOPE_ADMIN
    second = sq.create_key("second", "submit")
    assert {k.id for k in sq.list_keys()} == {created.key.id, second.key.id}


def test_required_auth_refuses_callers_without_a_valid_key(auth_server: CoordinatorThread) -> None:
    with auth_server.client() as anonymous:
        with raises(grpc.StatusCode.UNAUTHENTICATED, "API key is required"):
            anonymous.submit(txt2img("x"))
        with raises(grpc.StatusCode.UNAUTHENTICATED, "API key is required"):
            list(anonymous.watch_queue())
    with (
        auth_server.client("sq_not-a-real-key") as forged,
        raises(grpc.StatusCode.UNAUTHENTICATED, "invalid or revoked"),
    ):
        forged.stats()
    with Client(auth_server.address) as raw, pytest.raises(grpc.RpcError) as info:
        raw.queue.GetQueueStats(
            queue_pb2.GetQueueStatsRequest(), metadata=(("authorization", "Basic abc"),)
        )
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "Bearer" in info.value.details()
    # Nothing invalid was stored.
    _, admin = new_key(auth_server, Scope.ADMIN)
    with auth_server.client(admin) as sq:
        assert sq.stats().pending == 0


def test_admin_key_can_do_everything(auth_server: CoordinatorThread) -> None:
    _, admin = new_key(auth_server, Scope.ADMIN)
    with auth_server.client(admin) as sq:
        job = sq.submit(txt2img("x"))
        assert sq.pause().paused
        created = sq.create_key("ci", "submit")
        assert created.key.name == "ci"
        assert sq.cancel(job.id).status == queue_pb2.JOB_STATUS_CANCELLED


def test_submit_key_sees_and_changes_only_its_own_jobs(auth_server: CoordinatorThread) -> None:
    alice_id, alice = new_key(auth_server, Scope.SUBMIT, "alice")
    _, bob = new_key(auth_server, Scope.SUBMIT, "bob")
    _, admin = new_key(auth_server, Scope.ADMIN)
    with (
        auth_server.client(alice) as a,
        auth_server.client(bob) as b,
        auth_server.client(admin) as root,
    ):
        mine = a.submit(txt2img("alice's"))
        theirs = b.submit(txt2img("bob's"))
        assert mine.submitted_by == alice_id

        assert [j.id for j in a.list_jobs().jobs] == [mine.id]
        assert {j.id for j in root.list_jobs().jobs} == {mine.id, theirs.id}
        with raises(grpc.StatusCode.PERMISSION_DENIED, "submitted_by"):
            a.list_jobs(submitted_by="someone-else")
        for call in (a.get_job, a.cancel, a.retry, a.delete):
            with raises(grpc.StatusCode.NOT_FOUND, theirs.id):
                call(theirs.id)
        with raises(grpc.StatusCode.NOT_FOUND):
            list(a.watch_job(theirs.id))
        with raises(grpc.StatusCode.NOT_FOUND):
            a.move(mine.id, "before", theirs.id)
        assert a.cancel(mine.id).status == queue_pb2.JOB_STATUS_CANCELLED
        assert b.get_job(theirs.id).status == queue_pb2.JOB_STATUS_PENDING

        # Stats: a submit key counts its own jobs and sees no server names.
        gpu7 = processes_pb2.RegisterServerRequest(
            alias="gpu-7", kind=common_pb2.APP_KIND_FORGE, base_url="http://127.0.0.1:9"
        )
        root.call("RegisterServer", gpu7, "processes")
        root.pause("gpu-7")
        own = a.stats()
        assert (own.pending, own.cancelled, list(own.paused_servers)) == (0, 1, [])
        assert (b.stats().pending, root.stats().pending) == (1, 1)
        assert list(root.stats().paused_servers) == ["gpu-7"]
        # A pause event's stats carry only the pause for alice.
        seen: list[queue_pb2.QueueEvent] = []
        watcher = threading.Thread(
            target=lambda: seen.append(next(iter(a.watch_queue(snapshot=False)))), daemon=True
        )
        bus = auth_server.coordinator.bus
        before = auth_server.run(subscriptions(bus))
        watcher.start()
        wait_until(lambda: bool(auth_server.run(subscriptions(bus)) - before))  # listening
        root.pause()
        wait_until(lambda: bool(seen), 10)
        assert seen[0].stats.paused and not seen[0].stats.paused_servers
        assert seen[0].stats.cancelled == 0
        root.resume()

        # The same idempotency key from two callers makes two jobs.
        one = a.submit(txt2img("same"), idempotency_key="k")
        two = b.submit(txt2img("same"), idempotency_key="k")
        assert one.id != two.id


def test_submit_key_cannot_pause_or_manage_keys(auth_server: CoordinatorThread) -> None:
    _, submit = new_key(auth_server, Scope.SUBMIT)
    with auth_server.client(submit) as sq:
        for call in (sq.pause, sq.resume, sq.list_keys):
            with raises(grpc.StatusCode.PERMISSION_DENIED, "scope submit", "needs admin"):
                call()
        with raises(grpc.StatusCode.PERMISSION_DENIED, "CreateApiKey needs admin"):
            sq.create_key("escalate", "admin")


def test_node_key_cannot_use_the_queue(auth_server: CoordinatorThread) -> None:
    _, node = new_key(auth_server, Scope.NODE)
    with (
        auth_server.client(node) as sq,
        raises(grpc.StatusCode.PERMISSION_DENIED, "scope node", "SubmitJob needs admin or submit"),
    ):
        sq.submit(txt2img("x"))


def test_revoked_key_is_refused_at_once(auth_server: CoordinatorThread) -> None:
    key_id, secret = new_key(auth_server, Scope.SUBMIT)
    _, admin = new_key(auth_server, Scope.ADMIN)
    with auth_server.client(secret) as sq, auth_server.client(admin) as root:
        sq.submit(txt2img("x"))  # the key is now cached as valid
        root.revoke_key(key_id)
        with raises(grpc.StatusCode.UNAUTHENTICATED, "invalid or revoked"):
            sq.stats()
        with raises(grpc.StatusCode.NOT_FOUND, "no API key"):
            root.revoke_key("key_missing")


def test_loopback_caller_with_a_bad_key_is_not_trusted(
    sq: Client, server: CoordinatorThread
) -> None:
    with server.client("sq_wrong") as bad, raises(grpc.StatusCode.UNAUTHENTICATED):
        bad.stats()


def test_key_validation(sq: Client) -> None:
    with raises(grpc.StatusCode.INVALID_ARGUMENT, "name", "required"):
        sq.create_key("  ", "admin")
    with raises(grpc.StatusCode.INVALID_ARGUMENT, "scope"):
        sq.call("CreateApiKey", queue_pb2.CreateApiKeyRequest(name="x"))


def test_secrets_are_stored_only_as_hashes(server: CoordinatorThread, sq: Client) -> None:
    created = sq.create_key("ci", "admin")
    rows = server.coordinator.db.run_sync(lambda s: list(s.exec(select(ApiKeyRow))))
    assert len(rows) == 1
    assert created.secret not in repr(rows[0].model_dump())
    assert rows[0].secret_hash != created.secret and len(rows[0].secret_hash) == 64


class FakeAgent:
    """An agent session driven by hand (the messages a node sends, the commands it gets)."""

    def __init__(self, server: CoordinatorThread, secret: str, name: str, model: str) -> None:
        import queue as queues

        from stablequeue.v1 import processes_pb2_grpc

        self.outgoing: queues.Queue[processes_pb2.AgentMessage | None] = queues.Queue()
        self.commands: queues.Queue[Any] = queues.Queue()
        self.channel = grpc.insecure_channel(server.address)
        stub = processes_pb2_grpc.ProcessesServiceStub(self.channel)
        info = processes_pb2.NodeInfo(
            name=name, heartbeat_interval=5, models=[processes_pb2.NodeModel(key=model)]
        )
        self.outgoing.put(processes_pb2.AgentMessage(register=info))

        def messages() -> Iterator[processes_pb2.AgentMessage]:
            while (message := self.outgoing.get()) is not None:
                yield message

        self.call = stub.AgentSession(messages(), metadata=[("authorization", f"Bearer {secret}")])

        def read() -> None:
            try:
                for command in self.call:
                    self.commands.put(command)
            except grpc.RpcError as e:
                self.commands.put(e)

        threading.Thread(target=read, daemon=True).start()

    def next_command(self) -> Any:
        return self.commands.get(timeout=20)

    def send(self, **update: Any) -> None:
        self.outgoing.put(
            processes_pb2.AgentMessage(job_update=processes_pb2.AgentJobUpdate(**update))
        )

    def close(self) -> None:
        self.outgoing.put(None)
        self.channel.close()


def test_a_node_key_is_one_node(
    auth_server: CoordinatorThread, caplog: pytest.LogCaptureFixture
) -> None:
    """A second node key registering as gpu-1 took over the node and its users' jobs; a
    node sent updates for another node's job and completed it with its own image; a
    node key wiped the coordinator's inventory. Each is refused now."""
    from tests.helpers import PNG_1PX

    _, key_a = new_key(auth_server, Scope.NODE, "gpu-1 key")
    _, key_b = new_key(auth_server, Scope.NODE, "gpu-2 key")
    _, admin = new_key(auth_server, Scope.ADMIN)
    gpu1 = FakeAgent(auth_server, key_a, "gpu-1", "sd")  # key A is gpu-1's from now on
    gpu2 = None
    try:
        with auth_server.client(admin) as root:
            wait_until(lambda: any(n.connected for n in root.call(
                "ListNodes", processes_pb2.ListNodesRequest(), "processes").nodes))  # fmt: skip
            wrong = [(key_b, "gpu-1", "node gpu-1 belongs to another key"),
                     (key_a, "gpu-2", "belongs to node gpu-1, not gpu-2")]  # fmt: skip
            for secret, name, says in wrong:
                intruder = FakeAgent(auth_server, secret, name, "sd")
                refused = intruder.next_command()
                intruder.close()
                assert isinstance(refused, grpc.RpcError), refused
                assert refused.code() == grpc.StatusCode.PERMISSION_DENIED and says in str(
                    refused.details()
                )
            gpu2 = FakeAgent(auth_server, key_b, "gpu-2", "other")
            job = root.submit(txt2img("only gpu-1", model="sd", app="sdcpp"))
            run = gpu1.next_command().run_job
            # gpu-2 claims to have finished gpu-1's job: ignored.
            gpu2.send(job_id=run.job_id, task_id=run.task_id, image=PNG_1PX)
            gpu2.send(job_id=run.job_id, task_id=run.task_id, done=True)
            wait_until(lambda: caplog.text.count("node gpu-2 sent an update for job") == 2)
            assert root.get_job(job.id).status == queue_pb2.JOB_STATUS_PROCESSING
            gpu1.send(job_id=run.job_id, task_id=run.task_id, image=PNG_1PX)
            gpu1.send(job_id=run.job_id, task_id=run.task_id, done=True)
            wait_until(lambda: root.get_job(job.id).status == queue_pb2.JOB_STATUS_COMPLETED)
            assert len(root.get_job(job.id).results) == 1
        # A node key syncs only its own host, never the coordinator's.
        with auth_server.client(key_a) as node:
            for host, says in (("coordinator", "coordinator's own inventory"),
                               ("gpu-9", "belongs to node gpu-1, not gpu-9")):  # fmt: skip
                header = models_pb2.InventoryItem(header=models_pb2.InventoryHeader(host=host))
                with raises(grpc.StatusCode.PERMISSION_DENIED, says):
                    node.call("SyncInventory", iter([header]), "models")
    finally:
        gpu1.close()
        if gpu2 is not None:
            gpu2.close()


def test_a_node_key_can_be_tied_to_its_node_when_made(auth_server: CoordinatorThread) -> None:
    _, admin = new_key(auth_server, Scope.ADMIN)
    with auth_server.client(admin) as root:
        made = root.create_key("gpu-5 key", "node", node="gpu-5")
        assert made.key.node == "gpu-5"
        with raises(grpc.StatusCode.PERMISSION_DENIED, "node gpu-5 belongs to another key"):
            root.create_key("another", "node", node="gpu-5")
        with raises(grpc.StatusCode.INVALID_ARGUMENT, "node: only a node key"):
            root.create_key("user", "submit", node="gpu-5")
    agent = FakeAgent(auth_server, made.secret, "gpu-6", "sd")
    try:
        refused = agent.next_command()
        assert isinstance(refused, grpc.RpcError)
        assert "belongs to node gpu-5, not gpu-6" in str(refused.details())
    finally:
        agent.close()


def test_an_extensions_key_syncs_only_the_host_it_first_synced(
    auth_server: CoordinatorThread,
) -> None:
    """Forge and ComfyUI extensions sync their inventory with a node key and never run
    an agent: the key is bound to the host of its first sync, and another host is
    refused, naming both; an admin key syncs any host."""
    _, extension_key = new_key(auth_server, Scope.NODE, "forge-a extension")
    _, admin = new_key(auth_server, Scope.ADMIN)
    file = models_pb2.InventoryFile(
        path="/sd/models/Stable-diffusion/a.safetensors", backend_name="a.safetensors",
        type=models_pb2.MODEL_TYPE_CHECKPOINT, size_bytes=10,
    )  # fmt: skip
    with auth_server.client(extension_key) as extension:
        extension.sync_inventory("forge-a", common_pb2.APP_KIND_FORGE, [file])
        extension.sync_inventory("forge-a", common_pb2.APP_KIND_FORGE, [file])  # again: fine
        with raises(grpc.StatusCode.PERMISSION_DENIED, "belongs to node forge-a, not forge-b"):
            extension.sync_inventory("forge-b", common_pb2.APP_KIND_FORGE, [])
    with auth_server.client(admin) as root:
        root.sync_inventory("forge-b", common_pb2.APP_KIND_FORGE, [file])
        [key] = [k for k in root.list_keys() if k.name == "forge-a extension"]
        assert key.node == "forge-a"
