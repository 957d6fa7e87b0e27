"""Shared fixtures: a real coordinator on a loopback port, over SQLite and PostgreSQL.

The coordinator runs on its own event loop in a background thread, so tests use
the real blocking SDK against it exactly as a user's script would; `run()`
executes a coroutine on the coordinator's loop for the few things only the
coordinator itself does (such as the dispatcher taking a job).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil
import psycopg
import pytest

from stablequeue import Client
from stablequeue_coordinator.config import Settings
from stablequeue_coordinator.server import Coordinator, start_coordinator

T = TypeVar("T")
PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_reason() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when they can."""
    try:
        with psycopg.connect(PG_DSN, connect_timeout=3):
            return None
    except psycopg.Error as e:
        return f"PostgreSQL at 127.0.0.1:5432 (database 'test') is not reachable: {e}"


@pytest.fixture(scope="session")
def pg_unavailable() -> str | None:
    return postgres_reason()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each kind (a new schema per test on PostgreSQL)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'stablequeue.db'}"
        return
    reason = request.getfixturevalue("pg_unavailable")
    if reason:
        pytest.skip(reason)
    schema = "sq_test_" + secrets.token_hex(6)
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


class CoordinatorThread:
    """A real coordinator serving on 127.0.0.1:<free port> from a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.coordinator: Coordinator = self.run(start_coordinator(settings))

    @property
    def address(self) -> str:
        return self.coordinator.address

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def client(self, api_key: str | None = "") -> Client:
        return Client(self.address, api_key=api_key)

    def close(self) -> None:
        self.run(self.coordinator.stop(grace=0.5))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def make_settings(tmp_path: Path, database_url: str, **extra: Any) -> Settings:
    return Settings(
        listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        data_dir=tmp_path / "data",
        database_url=database_url,
        **extra,
    )


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[CoordinatorThread]:
    """A coordinator that trusts loopback callers (the default)."""
    running = CoordinatorThread(make_settings(tmp_path, database_url))
    yield running
    running.close()


@pytest.fixture
def sq(server: CoordinatorThread) -> Iterator[Client]:
    with server.client() as client:
        yield client


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[CoordinatorThread]:
    """SQLite only, for tests whose subject does not touch the store's dialect."""
    running = CoordinatorThread(make_settings(tmp_path, f"sqlite:///{tmp_path / 'sq.db'}"))
    yield running
    running.close()


@pytest.fixture
def auth_server(tmp_path: Path, database_url: str) -> Iterator[CoordinatorThread]:
    """A coordinator started with --require-auth: every caller needs a key."""
    running = CoordinatorThread(make_settings(tmp_path, database_url, require_auth=True))
    yield running
    running.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The suite leaves no process behind: no zombie, no model server still running."""
    time.sleep(0.2)  # children being reaped right now
    left = [
        f"{c.pid} ({c.status()}): {' '.join(c.cmdline()[:4]) if c.is_running() else ''}"
        for c in psutil.Process().children(recursive=True)
    ]
    if left:
        print("\nprocesses left behind by the tests:\n  " + "\n  ".join(left))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
