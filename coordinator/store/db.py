"""The database handle: engine, migrations, and one thread that runs every transaction.

All store work runs on a single worker thread. That keeps the asyncio loop free,
serialises writers (SQLite allows one anyway, and queue positions are computed
from the current tail), and makes each call one transaction that is committed
before the awaiting RPC returns.

`batched` and `group` are group commit for small, frequent writes (submits, the
dispatcher's claims and finishes): writes queued while the thread is busy share one
transaction and one wake-up of the event loop, and each caller still hears only
after the commit. Those writes are SQLAlchemy Core statements on a connection, with
no ORM session around them: a session's set-up, flush and commit cost a third of a
one-row claim's transaction (0.21 -> 0.14 ms of CPU). On SQLite, a submit that comes
while nothing else is under way is committed on the event loop itself (`batched(...,
inline=True)`): handing it to the thread and back cost a lone caller more than the
transaction. `after_commit` hooks run once a transaction has committed, on the thread
that ran it (the queue's counts move that way).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlmodel import Session, create_engine

try:
    import fcntl
except ImportError:  # Windows: no flock; the SQLite file is not guarded there
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)
T = TypeVar("T")
ItemT = TypeVar("ItemT")
# A write waiting for a shared transaction: its store function, its item, its caller.
Grouped = tuple[Callable[[Connection, list[Any]], list[Any]], Any, "asyncio.Future[Any]"]
# A step to run on an executor before a write is grouped (see `Database.group`).
Prepared = tuple[Executor, Callable[[], object]]
MAX_GROUP = 256  # works per shared transaction (more wait for the next one)
# SQLite checkpoints its write-ahead log once it holds 1,000 pages (its default), on
# the commit that crosses that: a commit on the event loop never does (the checkpoint
# flushes to the disk); the store thread does one after this many of them (a one-row
# submit writes about ten pages).
WAL_PAGES = 1000
CHECKPOINT_AFTER = 100
MIGRATIONS = Path(__file__).parent / "migrations"


class Database:
    """Owns the engine and the transaction thread.

    Args:
        url: SQLAlchemy URL (`sqlite:///path` or `postgresql+psycopg://...`).
    """

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.engine = _create_engine(url, self.is_sqlite)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sq-db")
        self._held: Any = None  # what keeps this database ours (a locked file)
        # On PostgreSQL, the active coordinator's lease check (see leadership.py): the
        # first statement of every transaction once set.
        self.fence: Callable[[Connection], None] | None = None
        # Works waiting for a shared transaction (see `group`); the event loop appends,
        # the store thread takes.
        self._grouped: list[Grouped] = []
        self._grouped_lock = threading.Lock()
        # SQLite: the store thread's connection, kept between transactions (see
        # `_connected`); None until the first one, and after one failed.
        self._kept: Connection | None = None
        # SQLite: transactions run on the store thread or, for a lone submit, on the
        # event loop (see `batched`); this keeps them apart.
        self._lock = threading.Lock()
        # Whether nothing else is under way, so a submit may commit inline: set by the
        # server (`ApiInterceptor.quiet`); never, by default.
        self.quiet: Callable[[], bool] = lambda: False
        self._inline_commits = 0

    def take(self) -> None:
        """On SQLite, makes this process the database's one coordinator for as long as
        it runs: an exclusive lock on a file beside the database, which the OS releases
        when the process dies (a coordinator restarted after a crash gets it at once).
        On PostgreSQL several coordinators share a database, one active at a time: see
        `leadership.Leadership`.

        Raises:
            RuntimeError: another coordinator has the SQLite database.
        """
        database = self.url.database
        if not self.is_sqlite or not database or database == ":memory:":
            return  # a lease decides on PostgreSQL; nothing to share in memory
        self._held = lock_file(Path(f"{database}.lock"))
        if self._held is None:
            shown = self.url.render_as_string(hide_password=True)
            raise RuntimeError(
                f"another coordinator is using the database {shown}: one coordinator "
                "per SQLite database (stop the other one, or give this one its own "
                "database; on PostgreSQL a second coordinator is a standby)"
            )

    def migrate(self) -> None:
        """Brings the schema to the newest numbered migration (idempotent)."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            if not self.is_sqlite:  # an active and a standby starting together: one at a time
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(current_schema() || :tag))"),
                    {"tag": ":stablequeue-migrate"},
                )
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    async def run(self, work: Callable[[Session], T]) -> T:
        """Runs `work(session)` in one transaction on the store thread and commits it.

        Raises:
            Whatever `work` raises; the transaction is then rolled back.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._transaction, work)

    async def group(self, work: Callable[[Connection], T], *, first: Prepared | None = None) -> T:
        """Runs `work(connection)` (Core statements) in a transaction it may share with
        other works grouped while the store thread was busy (group commit), and returns
        once that has committed. For works that do not raise for an outcome a caller
        expects (they return it): a work that raises rolls the whole group back, which
        is then run again one work per transaction, so only that work fails.

        `first`: (executor, step) run on that executor before the work is grouped (a
        completion's image files written, off the store thread); what it raises is
        raised here, and the work is not run. The event loop hears once, at the end.
        """
        return await self.batched(_each, work, first=first)

    async def batched(
        self,
        store: Callable[[Connection, list[ItemT]], list[T]],
        item: ItemT,
        *,
        first: Prepared | None = None,
        inline: bool = False,
    ) -> T:
        """Group commit for items one function stores best together (one multi-row
        INSERT for a burst of submits): `store(connection, items)` gets every item
        queued for it while the store thread was busy, returns one outcome per item, and
        shares the transaction with the other grouped writes. Its caller hears only
        after the commit; when the transaction fails, each item is stored again alone.
        `first` as for `group`.

        `inline`: on SQLite, while `quiet()` says nothing else is under way and the
        store thread has nothing to do, the item is stored in a transaction of its own
        right here on the event loop (a one-row INSERT and commit, ~0.15 ms; no flush
        to the disk: see WAL_PAGES). A lone caller then waits for no thread hand-off
        (SubmitJob one at a time: 1.0 -> 0.9 ms a call); a stream of calls still
        groups on the thread, beside the event loop.
        """
        if inline and first is None and self._may_inline():
            try:
                return self._core_transaction(
                    lambda connection: store(connection, [item])[0], locked=True, inline=True
                )
            finally:
                self._lock.release()
                self._inlined()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if first is None:
            self._add_grouped(loop, (store, item, future))
        else:
            executor, step = first
            executor.submit(self._after, step, loop, (store, item, future))
        return await future

    def _after(
        self, step: Callable[[], object], loop: asyncio.AbstractEventLoop, grouped: Grouped
    ) -> None:
        try:
            step()
        except BaseException as e:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(_settle, [grouped[2]], [(False, e)])
            return
        self._add_grouped(loop, grouped)

    def _add_grouped(self, loop: asyncio.AbstractEventLoop, grouped: Grouped) -> None:
        """Queues a write for the next shared transaction (from any thread)."""
        with self._grouped_lock:
            self._grouped.append(grouped)
            first = len(self._grouped) == 1
        if first:
            self._executor.submit(self._group_transaction, loop)

    def _group_transaction(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._grouped_lock:
            group, self._grouped = self._grouped[:MAX_GROUP], self._grouped[MAX_GROUP:]
            if self._grouped:  # the rest make the next group
                self._executor.submit(self._group_transaction, loop)
        outcomes: list[tuple[bool, Any]]
        try:
            outcomes = [(True, result) for result in self._core_transaction(_stored(group))]
        except Exception as e:
            if len(group) == 1:
                outcomes = [(False, e)]
            else:
                log.warning("a group of %d writes failed (%s): each runs alone", len(group), e)
                outcomes = [self._alone(store, item) for store, item, _ in group]
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(_settle, [future for *_, future in group], outcomes)

    def _alone(
        self, store: Callable[[Connection, list[Any]], list[Any]], item: Any
    ) -> tuple[bool, Any]:
        try:
            return True, self._core_transaction(lambda connection: store(connection, [item])[0])
        except Exception as e:
            return False, e

    def run_sync(self, work: Callable[[Session], T]) -> T:
        """Like `run`, for callers outside the event loop (CLI tools, tests)."""
        return self._executor.submit(self._transaction, work).result()

    def _transaction(self, work: Callable[[Session], T]) -> T:
        def in_session(connection: Connection) -> T:
            # The session joins the transaction: flushed here, committed with it.
            with Session(
                connection, expire_on_commit=False, join_transaction_mode="rollback_only"
            ) as session:
                result = work(session)
                session.flush()
            return result

        return self._core_transaction(in_session)

    def _may_inline(self) -> bool:
        """Whether a transaction may run on the event loop now; if so, the lock is ours."""
        return (
            self.is_sqlite
            and not self._grouped
            and self.quiet()
            and self._lock.acquire(blocking=False)  # not while the store thread works
        )

    def _inlined(self) -> None:
        self._inline_commits += 1
        if self._inline_commits >= CHECKPOINT_AFTER:
            self._inline_commits = 0
            # Closing: SQLite checkpoints when its last connection closes. Never fail
            # a submit that has committed.
            with contextlib.suppress(RuntimeError):
                self._executor.submit(self._checkpoint)

    def _checkpoint(self) -> None:
        """Checkpoints the write-ahead log, as SQLite would have on one of the commits
        made on the event loop (PASSIVE: it waits for nobody)."""
        try:
            with self._lock, self._connected() as connection:  # no SQLAlchemy transaction
                connection.connection.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception as e:  # SQLite's next automatic checkpoint will do it
            log.warning("could not checkpoint the database's write-ahead log: %s", e)

    def _core_transaction(
        self, work: Callable[[Connection], T], *, locked: bool = False, inline: bool = False
    ) -> T:
        """Runs `work(connection)` in one transaction, commits it, then runs the hooks
        its statements registered (`after_commit`). `locked`: the caller holds the
        lock; `inline`: on the event loop, where the commit must not checkpoint."""
        if not locked:
            with self._lock:
                return self._core_transaction(work, locked=True)
        hooks = _begin_hooks()
        try:
            with self._connected() as connection:
                raw = connection.connection.driver_connection if inline else None
                if raw is not None:
                    raw.execute("PRAGMA wal_autocheckpoint = 0")
                try:
                    with connection.begin():
                        if self.fence is not None:
                            self.fence(connection)
                        result = work(connection)
                finally:
                    if raw is not None:
                        raw.execute(f"PRAGMA wal_autocheckpoint = {WAL_PAGES}")
        except BaseException:
            self._drop_kept()
            raise
        finally:
            _end_hooks()
        for hook in hooks:
            hook()
        return result

    def _connected(self) -> contextlib.AbstractContextManager[Connection]:
        """The connection a transaction runs on. On SQLite, one the store thread keeps:
        taking a connection from the pool and handing it back (with its reset) cost a
        tenth of a one-row submit's transaction (0.26 -> 0.23 ms), and a local file has
        no link that can drop meanwhile. On PostgreSQL, one from the pool for this
        transaction, which the pool pings first, so a restarted server or a killed
        session costs no transaction."""
        if not self.is_sqlite:
            return self.engine.connect()
        if self._kept is None or self._kept.closed or self._kept.invalidated:
            self._drop_kept()
            self._kept = self.engine.connect()
        return contextlib.nullcontext(self._kept)

    def _drop_kept(self) -> None:
        """Gives the kept connection back (after a failed transaction: the next one
        starts on a connection in a known state)."""
        kept, self._kept = self._kept, None
        if kept is not None:
            with contextlib.suppress(Exception):
                kept.close()

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._drop_kept()
        if self._held is not None and self._held is not True:
            self._held.close()  # the lock goes with the file or the session
        self._held = None
        self.engine.dispose()


# The after-commit hooks of the transaction running on this thread (a store thread
# runs one at a time); None outside one.
_running = threading.local()


def _begin_hooks() -> list[Callable[[], None]]:
    _running.hooks = []
    return _running.hooks  # type: ignore[no-any-return]


def _end_hooks() -> None:
    _running.hooks = None


def after_commit(hook: Callable[[], None]) -> None:
    """Runs `hook` once the store transaction running on this thread has committed
    (never, if it rolls back): on the store thread, or the event loop for a lone submit.

    Raises:
        RuntimeError: called outside a store transaction.
    """
    hooks: list[Callable[[], None]] | None = getattr(_running, "hooks", None)
    if hooks is None:
        raise RuntimeError("after_commit outside a store transaction")
    hooks.append(hook)


def _each(connection: Connection, works: list[Callable[[Connection], Any]]) -> list[Any]:
    return [work(connection) for work in works]


def _stored(group: list[Grouped]) -> Callable[[Connection], list[Any]]:
    """One transaction's work: each run of items queued for the same store function
    goes to it in one call, in the order they came."""

    def work(connection: Connection) -> list[Any]:
        outcomes: list[Any] = []
        for store, run in itertools.groupby(group, key=lambda grouped: grouped[0]):
            items = [item for _, item, _ in run]
            found = store(connection, items)
            if len(found) != len(items):
                name = getattr(store, "__name__", repr(store))
                raise RuntimeError(f"{name} gave {len(found)} outcomes for {len(items)}")
            outcomes += found
        return outcomes

    return work


def _settle(futures: list[asyncio.Future[Any]], outcomes: list[tuple[bool, Any]]) -> None:
    for future, (ok, value) in zip(futures, outcomes, strict=True):
        if future.done():  # the caller went away
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def lock_file(path: Path) -> Any:
    """An exclusive lock on `path` (created), held until the returned handle is closed
    or the process ends; None when another process holds it."""
    if fcntl is None:
        return True  # no flock on this system
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - held until closed
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def postgres_engine(url: str, **options: Any) -> Engine:
    """An engine for PostgreSQL whose sessions the server ends when they sit idle in a
    transaction: a coordinator frozen inside one (SIGSTOP) would otherwise keep the
    lease row locked for good."""
    engine = create_engine(url, pool_pre_ping=True, **options)

    @event.listens_for(engine, "connect")
    def _timeouts(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET idle_in_transaction_session_timeout = '5s'")
        dbapi_connection.commit()

    return engine


def _create_engine(url: str, is_sqlite: bool) -> Engine:
    if not is_sqlite:
        return postgres_engine(url)
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL: readers never block the writer; NORMAL sync keeps every commit
        # across a process kill (only an OS crash could lose the last commits).
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine
