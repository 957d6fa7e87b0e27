"""Server plumbing: health and reflection, settings, migrations, generated stubs."""

from __future__ import annotations

import asyncio
import errno
import filecmp
import gc
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from sqlalchemy import event, text
from sqlmodel import Session

from stablequeue_coordinator.config import load_settings
from stablequeue_coordinator.main import parse_args, serve
from stablequeue_coordinator.store import Database
from tests.conftest import CoordinatorThread, make_settings

ROOT = Path(__file__).resolve().parents[1]


def test_health_check_and_reflection_are_served(sqlite_server: CoordinatorThread) -> None:
    with grpc.insecure_channel(sqlite_server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "stablequeue.v1.QueueService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
        assert "stablequeue.v1.QueueService" in services
        assert "grpc.health.v1.Health" in services


def test_settings_flags_beat_environment_beat_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "sq.yml"
    config.write_text("listen: 127.0.0.1:6000\ndata-dir: /from/file\nrequire_auth: true\n")
    monkeypatch.setenv("SQ_DATA_DIR", "/from/env")
    monkeypatch.setenv("SQ_LISTEN", "127.0.0.1:7000")
    settings = load_settings(config, listen="127.0.0.1:8000", data_dir=None)
    assert settings.listen == "127.0.0.1:8000"
    assert settings.data_dir == Path("/from/env")
    assert settings.require_auth is True
    assert settings.resolved_database_url == "sqlite:////from/env/stablequeue.db"


def test_bad_settings_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="listen"):
        load_settings(None, listen="no-port")
    bad = tmp_path / "bad.yml"
    bad.write_text("- just a list\n")
    with pytest.raises(ValueError, match="expected a mapping"):
        load_settings(bad)
    typo = tmp_path / "typo.yml"
    typo.write_text("lisen: 127.0.0.1:1\n")
    with pytest.raises(ValueError, match="lisen"):
        load_settings(typo)


def test_migrations_are_idempotent(database_url: str) -> None:
    db = Database(database_url)
    try:
        db.migrate()
        db.migrate()
        tables = db.run_sync(
            lambda s: set(
                s.connection().dialect.get_table_names(s.connection())  # type: ignore[attr-defined]
            )
        )
        assert {"jobs", "api_keys", "idempotency_keys", "coordinator_state"} <= tables
    finally:
        db.close()


def test_the_store_thread_keeps_its_sqlite_connection_until_a_transaction_fails(
    database_url: str,
) -> None:
    db = Database(database_url)
    checkouts = []
    event.listen(db.engine, "checkout", lambda *_: checkouts.append(1))
    try:
        db.migrate()
        checkouts.clear()
        for _ in range(5):
            assert db.run_sync(lambda s: s.connection().execute(text("SELECT 1")).scalar()) == 1
        # SQLite: one connection for all five; PostgreSQL: a pinged one from the pool each.
        assert len(checkouts) == (1 if db.is_sqlite else 5)
        with pytest.raises(ZeroDivisionError):
            db.run_sync(lambda s: 1 / 0)
        db.run_sync(lambda s: s.connection().execute(text("SELECT 1")))
        # SQLite: afresh after the failed one; PostgreSQL: one for each, the failed one too.
        assert len(checkouts) == (2 if db.is_sqlite else 7)
    finally:
        db.close()


def test_a_grouped_write_runs_after_its_first_step_and_not_when_that_fails(
    database_url: str,
) -> None:
    """A completion's image files are written on the image threads, which hand the
    completion to the store thread themselves; a failed write stores nothing."""
    db = Database(database_url)
    steps = ThreadPoolExecutor(1, thread_name_prefix="test-step")
    done: list[str] = []

    def full() -> None:
        done.append("step")
        raise OSError(errno.ENOSPC, "No space left on device")

    async def run() -> None:
        written = await db.group(
            lambda c: done.append("work") or c.execute(text("SELECT 1")).scalar(),
            first=(steps, lambda: done.append("step")),
        )
        assert written == 1
        with pytest.raises(OSError) as raised:
            await db.group(lambda c: done.append("not run"), first=(steps, full))
        assert raised.value.errno == errno.ENOSPC

    try:
        db.migrate()
        asyncio.run(run())
    finally:
        steps.shutdown()
        db.close()
    assert done == ["step", "work", "step"]


def test_a_lone_write_committed_as_the_store_closes_is_not_failed(tmp_path: Path) -> None:
    """Every CHECKPOINT_AFTER commits made on the event loop hand a checkpoint to the
    store thread; one that commits while the store is closing still succeeds."""
    from stablequeue_coordinator.store.db import CHECKPOINT_AFTER

    db = Database(f"sqlite:///{tmp_path / 'sq.db'}")
    db.quiet = lambda: True  # nothing else under way: writes commit inline

    def store(connection: Any, items: list[int]) -> list[int]:
        return [connection.execute(text("SELECT :n"), {"n": n}).scalar() for n in items]

    async def run() -> list[int]:
        done = [await db.batched(store, n, inline=True) for n in range(CHECKPOINT_AFTER - 1)]
        db.close()  # the store thread is gone; the next commit is the hundredth
        return [*done, await db.batched(store, CHECKPOINT_AFTER, inline=True)]

    try:
        db.migrate()
        written = asyncio.run(run())
    finally:
        db.close()
    assert written == [*range(CHECKPOINT_AFTER - 1), CHECKPOINT_AFTER]


def test_only_jobs_naming_a_server_are_in_its_indexes(database_url: str) -> None:
    """Every submit's commit wrote an entry for its empty server columns; the indexes
    now hold only jobs that name one, and a lookup by server still reads them."""
    db = Database(database_url)
    try:
        db.migrate()

        def read(session: Session) -> tuple[dict[str, str], str]:
            connection = session.connection()
            if db.is_sqlite:
                found = connection.execute(
                    text("SELECT name, sql FROM sqlite_master WHERE name LIKE 'ix_jobs_%server'")
                )
                plan = connection.execute(
                    text(
                        "EXPLAIN QUERY PLAN SELECT id FROM jobs "
                        "WHERE server = 'a' OR target_server = 'a'"
                    )
                )
                return dict(found.all()), " ".join(str(row[-1]) for row in plan)
            found = connection.execute(
                text(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = "
                    "current_schema() AND indexname LIKE 'ix_jobs_%server'"
                )
            )
            return dict(found.all()), ""

        definitions, plan = db.run_sync(read)
        assert set(definitions) == {"ix_jobs_server", "ix_jobs_target_server"}
        for name, definition in definitions.items():
            column = name.removeprefix("ix_jobs_")
            # SQLite keeps the text as written; PostgreSQL adds parentheses.
            assert f"WHERE {column} IS NOT NULL" in definition.replace("(", "").replace(")", ""), (
                definition
            )
        if db.is_sqlite:
            assert "ix_jobs_server" in plan and "ix_jobs_target_server" in plan, plan
    finally:
        db.close()


def test_coordinator_refuses_an_address_in_use(
    sqlite_server: CoordinatorThread, tmp_path: Path
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "coordinator",
            "--listen",
            sqlite_server.address,
            "--http-listen",
            "127.0.0.1:0",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"could not listen on {sqlite_server.address}" in result.stderr


def test_what_start_up_made_is_out_of_the_collectors_sight(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A full garbage collection walked every object start-up made (~140,000: 63 ms of
    CPU, every few thousand jobs); `sq-coordinator` freezes them once it serves."""
    args = parse_args(
        ["--listen", "127.0.0.1:0", "--http-listen", "off", "--data-dir", str(tmp_path)]
    )
    printed = ""

    async def run() -> int:
        nonlocal printed
        serving = asyncio.create_task(serve(args))
        async with asyncio.timeout(60):
            while "listening on" not in printed and not serving.done():
                await asyncio.sleep(0.05)
                printed += capsys.readouterr().out
        frozen = gc.get_freeze_count()
        if not serving.done():  # serving: its signal handlers are in place
            os.kill(os.getpid(), signal.SIGTERM)
        await serving
        return frozen

    try:
        frozen = asyncio.run(run())
    finally:
        gc.unfreeze()
    assert "listening on" in printed
    assert frozen > 50_000


def test_generated_stubs_match_the_protos(tmp_path: Path) -> None:
    """CI fails when someone edits proto/ without running `make proto`."""
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    tools = ROOT / ".venv" / "proto-tools"  # installed by the Makefile (see PROTO_TOOLS)
    assert (tools / "grpc_tools").is_dir(), "the stub generator is missing: run `make test`"
    subprocess.run(
        [
            sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}",
            f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}",
            *protos,
        ],
        check=True,
        env={**os.environ, "PYTHONPATH": str(tools)},
    )  # fmt: skip
    generated = sorted(p.name for p in (tmp_path / "stablequeue" / "v1").iterdir())
    committed_dir = ROOT / "clients" / "stablequeue" / "v1"
    committed = sorted(
        p.name
        for p in committed_dir.iterdir()
        if p.name != "__init__.py" and p.suffix in (".py", ".pyi")
    )
    assert generated == committed
    _, mismatch, errors = filecmp.cmpfiles(
        tmp_path / "stablequeue" / "v1", committed_dir, generated, shallow=False
    )
    assert mismatch == [] and errors == [], f"stale stubs: {mismatch + errors}; run `make proto`"


def test_unfinished_image_files_a_crash_left_are_removed_at_start(tmp_path: Path) -> None:
    """A kill between writing an image's temporary file and renaming it left
    `.JOB-0.png.RAND.incomplete` behind for good; the next start removes those only."""
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'sq.db'}")
    day = settings.resolved_output_dir / "2026-12-01"
    day.mkdir(parents=True)
    orphan = day / ".abc-0.png.k2j3h4.incomplete"
    orphan.write_bytes(b"half an image")
    kept = day / "abc-0.png"
    kept.write_bytes(b"a finished image")
    running = CoordinatorThread(settings)
    try:
        assert not orphan.exists() and kept.read_bytes() == b"a finished image"
    finally:
        running.close()


def test_a_second_coordinator_on_the_same_database_is_refused(tmp_path: Path) -> None:
    """Two coordinators on one SQLite database ran jobs twice and shared result file
    names; the second is refused, saying why, and starts once the first has stopped."""
    database_url = f"sqlite:///{tmp_path / 'sq.db'}"
    first = CoordinatorThread(make_settings(tmp_path / "a", database_url))
    try:
        with pytest.raises(RuntimeError, match="another coordinator is using the database"):
            CoordinatorThread(make_settings(tmp_path / "b", database_url))
    finally:
        first.close()
    CoordinatorThread(make_settings(tmp_path / "b", database_url)).close()


def test_a_second_coordinator_of_a_data_folder_is_refused(tmp_path: Path) -> None:
    first = CoordinatorThread(make_settings(tmp_path, f"sqlite:///{tmp_path / 'a.db'}"))
    try:
        with pytest.raises(RuntimeError, match="another coordinator is using the data folder"):
            CoordinatorThread(make_settings(tmp_path, f"sqlite:///{tmp_path / 'b.db'}"))
    finally:
        first.close()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_second_coordinator_on_postgresql_stands_by_and_takes_over(
    tmp_path: Path, database_url: str
) -> None:
    """On PostgreSQL the second coordinator is a standby: not serving, its calls refused
    naming the active one; when the active one stops it takes over and serves."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from stablequeue import Client, txt2img
    from stablequeue.v1 import common_pb2, models_pb2
    from tests.helpers import raises, wait_until

    first = CoordinatorThread(make_settings(tmp_path / "a", database_url))
    second = CoordinatorThread(make_settings(tmp_path / "b", database_url))
    try:
        # A client of both, the standby named first: every kind of call reaches the
        # active one.
        with Client(f"{second.address},{first.address}") as both:
            job = both.submit(txt2img("before the take-over"))
            events = both.watch_job(job.id)
            assert next(iter(events)).job.id == job.id  # (the stream starts where it is)
            events.close()  # type: ignore[attr-defined]
            file = models_pb2.InventoryFile(path="/m/a.safetensors", size_bytes=1)
            both.sync_inventory("host-1", common_pb2.APP_KIND_FORGE, [file])
            assert "host-1" in first.coordinator.library.inventoried
        with second.client() as sq, grpc.insecure_channel(second.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            state = health.Check(health_pb2.HealthCheckRequest(service="")).status
            assert state == health_pb2.HealthCheckResponse.NOT_SERVING
            refused = f"standby: the active one is {first.address}"
            with raises(grpc.StatusCode.UNAVAILABLE, refused):
                sq.get_job(job.id)
            over_http = httpx.get(f"{second.coordinator.http_url}/api/v1/jobs/{job.id}")
            assert over_http.status_code == 503  # the HTTP API says the same
            assert refused in over_http.json()["error"]["message"]
            first.close()
            wait_until(lambda: second.coordinator.active.is_set(), 10)
            assert health.Check(health_pb2.HealthCheckRequest(service="")).status == (
                health_pb2.HealthCheckResponse.SERVING
            )
            assert sq.get_job(job.id).spec.params.prompt == "before the take-over"
            over_http = httpx.get(f"{second.coordinator.http_url}/api/v1/jobs/{job.id}")
            assert over_http.json()["job"]["spec"]["params"]["prompt"] == "before the take-over"
        with Client(f"{first.address},{second.address}") as both:  # the first is gone
            assert both.get_job(job.id).id == job.id
    finally:
        second.close()
        if not first.coordinator.stopped:
            first.close()


def test_of_two_claims_of_one_job_exactly_one_wins(database_url: str) -> None:
    """Two coordinators once ran jobs twice: the claim was an unconditional update.
    Two queue services on one database (what the database lock now prevents) race to
    claim each job; one gets it, the other is told it is no longer pending."""
    import asyncio

    from stablequeue import txt2img
    from stablequeue_coordinator.auth.principal import LOCAL
    from stablequeue_coordinator.errors import FailedPrecondition
    from stablequeue_coordinator.queue.events import EventBus
    from stablequeue_coordinator.queue.service import QueueService

    async def race() -> list[list[str]]:
        first, second = Database(database_url), Database(database_url)
        first.migrate()
        queues = [QueueService(first, EventBus()), QueueService(second, EventBus())]
        try:
            jobs, _ = await queues[0].submit_many(LOCAL, txt2img("x"), 20, 0)
            outcomes = []
            for job in jobs:
                claims = await asyncio.gather(
                    *(q.start(job.id, f"server-{i}") for i, q in enumerate(queues)),
                    return_exceptions=True,
                )
                outcomes.append([type(c).__name__ for c in claims])
                won = [c for c in claims if not isinstance(c, BaseException)]
                lost = [c for c in claims if isinstance(c, FailedPrecondition)]
                assert len(won) == 1 and len(lost) == 1, claims
                assert "not pending" in str(lost[0])
                stored = await queues[0].get(LOCAL, job.id)
                assert stored.server == won[0].server and stored.attempts == 1
            return outcomes
        finally:
            first.close()
            second.close()

    asyncio.run(race())


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_transaction_longer_than_the_lease_does_not_cost_the_active_its_lease(
    tmp_path: Path, database_url: str
) -> None:
    """A 60-copy batch of a 40 MB image took longer than the lease on a busy machine:
    the transaction's lock on the lease row held the renewals back and the coordinator
    stepped down in the middle of the call. Renewals now pass such a transaction."""
    from stablequeue_coordinator.store.leadership import LEASE_S

    running = CoordinatorThread(make_settings(tmp_path, database_url))
    try:

        def slow(session: object) -> None:  # one statement working past the lease
            session.connection().execute(text(f"SELECT pg_sleep({LEASE_S + 2})"))  # type: ignore[attr-defined]

        running.run(running.coordinator.db.run(slow), timeout=LEASE_S + 20)
        assert not running.coordinator.lost.is_set()
        assert running.coordinator.active.is_set() and not running.coordinator.stopped
    finally:
        running.close()
