"""Active and standby coordinators on one PostgreSQL database: a lease in the database.

The active coordinator holds the lease (the one `leadership` row) and renews it every
`renew_s`; a standby polls and takes it once it has run out (database time) with a
conditional update that raises the epoch. Every transaction of the active reads the
epoch first, FOR KEY SHARE; a take-over locks the row FOR UPDATE first, so it waits
for a transaction in flight, and every later transaction of the old active fails
(NotActive). A renewal is a plain update, which those share locks let through: a long
transaction never costs the active its lease. So an old active that comes back
(SIGSTOP, a network cut) can write nothing more, and it steps down at its next renewal.

A coordinator restarted after a crash with the same data folder (which it holds
locked) is the lease's holder again: it takes the lease at once instead of waiting
for it to run out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from stablequeue_coordinator.errors import NotActive
from stablequeue_coordinator.store.db import postgres_engine

log = logging.getLogger(__name__)
LEASE_S = 5.0  # a lease not renewed for this long is free
RENEW_S = 1.0
POLL_S = 0.5  # how often a standby looks
NOW = "(clock_timestamp() AT TIME ZONE 'UTC')"


class Leadership:
    """The lease of one coordinator process (`holder`: its stable identity, the host
    and data folder; `address`: where clients reach it)."""

    def __init__(self, url: str, holder: str, address: str, lease_s: float = LEASE_S) -> None:
        self.holder = holder
        self.address = address
        self.lease_s = lease_s
        self.epoch: int | None = None
        self.renewed_at = 0.0  # monotonic time of the last renewal
        # Its own connection and thread: a renewal never waits behind the store's work.
        self._engine: Engine = postgres_engine(url, pool_size=1, max_overflow=0)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sq-lease")

    # ---- on the lease thread ----------------------------------------------

    def take(self) -> int | None:
        """Takes the lease when it is free (or was this holder's); the new epoch, or None."""
        try:
            with self._engine.begin() as conn:
                conn.execute(text("SET LOCAL lock_timeout = '1s'"))
                conn.execute(
                    text(
                        "INSERT INTO leadership (id, holder, address, epoch, expires_at) "
                        f"VALUES (1, '', '', 0, {NOW} - interval '1 second') "
                        "ON CONFLICT (id) DO NOTHING"
                    )
                )
                # Waits (1 s at most) for the transactions the old active has in flight.
                free = conn.execute(
                    text(
                        "SELECT 1 FROM leadership WHERE id = 1 AND "
                        f"(expires_at < {NOW} OR holder = :holder) FOR UPDATE"
                    ),
                    {"holder": self.holder},
                ).first()
                if free is None:
                    return None
                epoch = conn.execute(
                    text(
                        "UPDATE leadership SET holder = :holder, address = :address, "
                        f"epoch = epoch + 1, expires_at = {NOW} + make_interval(secs => :lease) "
                        f"WHERE id = 1 AND (expires_at < {NOW} OR holder = :holder) "
                        "RETURNING epoch"
                    ),
                    {"holder": self.holder, "address": self.address, "lease": self.lease_s},
                ).scalar()
        except DBAPIError as e:  # the old active's transaction holds the row: later
            log.debug("the lease is busy: %s", e.orig)
            return None
        if epoch is None:
            return None
        self.epoch, self.renewed_at = int(epoch), time.monotonic()
        return self.epoch

    def renew(self) -> bool | None:
        """True: renewed; False: the lease is someone else's now; None: not known (the
        database did not answer in time)."""
        try:
            with self._engine.begin() as conn:
                conn.execute(text("SET LOCAL lock_timeout = '1s'"))
                kept = conn.execute(
                    text(
                        f"UPDATE leadership SET expires_at = {NOW} + make_interval(secs => "
                        ":lease) WHERE id = 1 AND epoch = :epoch AND holder = :holder "
                        "RETURNING 1"
                    ),
                    {"lease": self.lease_s, "epoch": self.epoch, "holder": self.holder},
                ).scalar()
        except DBAPIError as e:
            log.warning("could not renew the lease: %s", str(e.orig).strip().splitlines()[0])
            return None
        if kept:
            self.renewed_at = time.monotonic()
            return True
        return False

    def active(self) -> tuple[str, str] | None:
        """(holder, address) of the unexpired lease, if any."""
        with self._engine.connect() as conn:
            row = conn.execute(
                text(f"SELECT holder, address FROM leadership WHERE id = 1 AND expires_at >= {NOW}")
            ).first()
        return (row[0], row[1]) if row is not None else None

    def release(self) -> None:
        """Ends this holder's lease now (a clean stop): a standby takes over at once."""
        if self.epoch is None:
            return
        with self._engine.begin() as conn:
            conn.execute(
                text(
                    f"UPDATE leadership SET expires_at = {NOW} - interval '1 second' "
                    "WHERE id = 1 AND epoch = :epoch"
                ),
                {"epoch": self.epoch},
            )
        self.epoch = None

    def valid(self) -> bool:
        """True while this holder's lease cannot have run out (by this process's clock,
        with a second to spare): after a freeze it is False until a renewal."""
        return self.epoch is not None and time.monotonic() - self.renewed_at < self.lease_s - 1

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._engine.dispose()

    async def call(self, method: Any) -> Any:
        """Runs one of the methods above on the lease thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, method)

    # ---- on the store thread ----------------------------------------------

    def fence(self, connection: Connection) -> None:
        """The first statement of each of the active's transactions.

        Raises:
            NotActive: another coordinator has taken over (a higher epoch).
        """
        current = connection.execute(
            text("SELECT epoch FROM leadership WHERE id = 1 FOR KEY SHARE")
        ).scalar()
        if current != self.epoch:
            raise NotActive(
                "this coordinator is no longer the active one (another took over); "
                "it writes nothing more"
            )
