"""Statements of the job path run straight on SQLite's driver (store/hot.py): what they
store and read back is what SQLAlchemy's own path stores and reads, on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event, insert, text
from sqlmodel import Session

from stablequeue_coordinator.queue.attempts import ONE_MORE_ATTEMPT, _move
from stablequeue_coordinator.queue.states import JobStage, JobStatus, transition_values
from stablequeue_coordinator.queue.submissions import ADD_JOBS, JOBS
from stablequeue_coordinator.queue.tally import JobTally
from stablequeue_coordinator.store import Database
from stablequeue_coordinator.store.hot import HotStatement
from stablequeue_coordinator.store.tables import JobRow

WHEN = datetime(2026, 12, 5, 21, 10, 22, 123456)
ON_THE_SECOND = datetime(2026, 12, 5, 21, 10, 23)  # no microseconds: formatted alike?


def job(job_id: str, position: int, when: datetime = WHEN) -> dict[str, Any]:
    return {
        "id": job_id, "status": "pending", "stage": "queued", "reason": "", "app": "forge",
        "target_server": None, "server": None, "priority": 2, "position": position,
        "attempts": 0, "submitted_by": "key1", "idempotency_key": "k\u00e9y",
        "batch_id": job_id, "batch_index": 0, "label": "a label", "spec": b"\x00\x01spec",
        "created_at": when, "updated_at": when, "started_at": None, "finished_at": None,
    }  # fmt: skip


@pytest.fixture
def db(database_url: str) -> Any:
    database = Database(database_url)
    database.migrate()
    yield database
    database.close()


def stored_text(db: Database, job_id: str) -> tuple[str, ...]:
    """The timestamps as the database holds them (text on SQLite)."""
    with db.engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT CAST(created_at AS TEXT), CAST(updated_at AS TEXT) FROM jobs WHERE id = :i"
            ),
            {"i": job_id},
        ).one()
    return tuple(row)


def watched(db: Database) -> list[str]:
    """Every statement SQLAlchemy runs on `db` from now on (which also turns the
    direct path off: a watched engine sees every statement)."""
    seen: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda _c, _cu, sql, *_: seen.append(sql))
    return seen


def test_hot_inserts_store_what_sqlalchemy_stores(db: Database) -> None:
    with db.engine.begin() as connection:
        ADD_JOBS.many(connection, [job("hot1", 1), job("hot2", 2, ON_THE_SECOND)])
        connection.execute(insert(JOBS), [job("core1", 3), job("core2", 4, ON_THE_SECOND)])
    assert stored_text(db, "hot1") == stored_text(db, "core1")
    assert stored_text(db, "hot2") == stored_text(db, "core2")
    with Session(db.engine) as session:
        for hot, core in (("hot1", "core1"), ("hot2", "core2")):
            a, b = session.get(JobRow, hot), session.get(JobRow, core)
            assert a is not None and b is not None
            assert a.model_dump(exclude={"id", "batch_id", "position"}) == b.model_dump(
                exclude={"id", "batch_id", "position"}
            )
    assert session.get(JobRow, "hot2").created_at == ON_THE_SECOND  # type: ignore[union-attr]


def claim(connection: Connection, job_id: str) -> Any:
    values = transition_values(job_id, JobStatus.PROCESSING, JobStage.GENERATING, "", WHEN)
    values.update(attempts=ONE_MORE_ATTEMPT, server="gpu-1", backend_task_id="task")
    values["model_sha256"] = None
    return _move(connection, job_id, JobStatus.PENDING, values, JobTally())


def test_a_move_returns_the_row_as_sqlalchemy_reads_it(db: Database) -> None:
    with db.engine.begin() as connection:
        ADD_JOBS.many(connection, [job("direct", 1), job("through", 2)])
    direct = db.run_sync(lambda session: claim(session.connection(), "direct"))
    statements = watched(db)  # from here on SQLAlchemy runs every statement
    through = db.run_sync(lambda session: claim(session.connection(), "through"))
    assert any(s.startswith("UPDATE jobs SET") for s in statements)
    fields = [c.key for c in JOBS.c if c.key not in ("id", "batch_id", "position")]
    assert [getattr(direct, f) for f in fields] == [getattr(through, f) for f in fields]
    assert direct.status == "processing" and direct.attempts == 1
    assert direct.started_at == WHEN and isinstance(direct.created_at, datetime)
    assert direct.spec == b"\x00\x01spec" and direct.server == "gpu-1"
    # The job that moved on is the error returned, not a row.
    again = db.run_sync(lambda session: claim(session.connection(), "direct"))
    assert "is processing, not pending" in str(again)


def test_on_sqlite_a_hot_statement_skips_sqlalchemys_execution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'q.db'}")
    db.migrate()

    def refused(*_: object, **__: object) -> None:
        raise AssertionError("ran through Connection.execute")

    traced: list[str] = []

    def work(session: Session) -> Any:
        connection = session.connection()
        connection.connection.driver_connection.set_trace_callback(traced.append)  # type: ignore[union-attr]
        monkeypatch.setattr(Connection, "execute", refused)
        try:
            ADD_JOBS.many(connection, [job("a", 1)])
            return claim(connection, "a")
        finally:
            monkeypatch.undo()
            connection.connection.driver_connection.set_trace_callback(None)  # type: ignore[union-attr]

    try:
        row = db.run_sync(work)
        assert row.status == "processing"
        assert [s.split(" ", 2)[:2] for s in traced] == [
            ["BEGIN", ""],
            ["INSERT", "INTO"],
            ["UPDATE", "jobs"],
        ]
        assert "RETURNING" in traced[2]
    finally:
        db.close()


def test_a_hot_insert_is_given_every_column_with_a_default(tmp_path: Path) -> None:
    """SQLAlchemy fills Python-side defaults per execution; the direct path does not, so
    a statement that would need them is refused when compiled, naming the columns."""
    db = Database(f"sqlite:///{tmp_path / 'q.db'}")
    db.migrate()
    statement = HotStatement(insert(JOBS))
    row = {k: v for k, v in job("a", 1).items() if k not in ("reason", "label")}
    try:
        with db.engine.begin() as connection, pytest.raises(TypeError) as refused:
            statement.many(connection, [row])
        assert "reason" in str(refused.value) and "label" in str(refused.value)
    finally:
        db.close()
