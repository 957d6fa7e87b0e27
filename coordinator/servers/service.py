"""The server registry and its health monitor.

Settings live in the `servers` table; health (up/down, why, loaded model) is
runtime state kept here and refreshed by probes: every `interval` seconds, at
once when a server is registered, changed or enabled, and when the dispatcher
reports a transport failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from urllib.parse import unquote, urlparse, urlsplit, urlunsplit

from sqlmodel import Session, col, select

from stablequeue_coordinator.backends.base import Backend, InventoryEntry, Probe, ServerConfig
from stablequeue_coordinator.common import NAME, Background, utcnow
from stablequeue_coordinator.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from stablequeue_coordinator.kinds import SERVER_KINDS
from stablequeue_coordinator.queue.states import JobStatus
from stablequeue_coordinator.statemachine import Machine
from stablequeue_coordinator.store import Database
from stablequeue_coordinator.store.tables import JobRow, ServerRow

log = logging.getLogger(__name__)
MAX_CONCURRENCY = 64
# An inventory a probe brings back unchanged is stored again only this often (to keep
# its locations' seen_at recent): storing it on every probe was most of an idle
# coordinator's CPU with 100 servers.
INVENTORY_REFRESH_S = 300.0
BackendFactory = Callable[[ServerConfig], Backend]
InventoryListener = Callable[[str, str, tuple[InventoryEntry, ...]], Awaitable[None]]


class HealthState(StrEnum):
    UNKNOWN = "unknown"  # not probed yet
    UP = "up"
    DOWN = "down"


# A server is unknown until its first probe; then each probe says up or down.
HEALTH: Machine[HealthState] = Machine.of(
    "server",
    {
        HealthState.UNKNOWN: {HealthState.UP, HealthState.DOWN},
        HealthState.UP: {HealthState.UP, HealthState.DOWN},
        HealthState.DOWN: {HealthState.UP, HealthState.DOWN},
    },
)


@dataclass(frozen=True)
class Health:
    state: HealthState = HealthState.UNKNOWN
    reason: str = ""
    loaded_model: str = ""
    checked_at: datetime | None = None
    # Other names the loaded model answers to (a node model: the file its args load).
    model_names: tuple[str, ...] = ()
    # The LoRA files it can load, where known (a node model reports them).
    loras: tuple[str, ...] | None = None
    # The sampler and scheduler names it offers, as its last probe read them.
    samplers: tuple[str, ...] = ()
    schedulers: tuple[str, ...] = ()


@dataclass
class ServerSpec:
    """Fields of a register/update request; None keeps the current value."""

    base_url: str | None = None
    username: str | None = None
    password: str | None = None
    bearer_token: str | None = None
    max_concurrency: int | None = None
    labels: dict[str, str] | None = None


@dataclass(frozen=True)
class ServerState:
    """A server's settings and health, as the dispatcher and the API see them."""

    row: ServerRow
    health: Health = field(default_factory=Health)

    @property
    def config(self) -> ServerConfig:
        r = self.row
        return ServerConfig(r.alias, r.kind, r.base_url, r.username, r.password, r.bearer_token)


def take_credentials(spec: ServerSpec) -> None:
    """Moves a user and password written into the URL (`http://me:pw@host`) to the
    username/password fields, so the stored, logged and returned URL carries none.

    Raises:
        InvalidArgument: credentials in both places, or a URL that cannot be read.
    """
    if not spec.base_url:
        return
    try:
        parts = urlsplit(spec.base_url)
        user, password, host, port = parts.username, parts.password, parts.hostname, parts.port
    except ValueError as e:
        raise InvalidArgument("base_url", f"not a URL ({e})") from None
    if user is None and password is None:
        return
    if spec.username or spec.password:
        raise InvalidArgument("base_url", "credentials in the URL and in username/password: once")
    spec.username, spec.password = unquote(user or ""), unquote(password or "")
    shown_host = f"[{host}]" if host and ":" in host else host or ""
    netloc = shown_host + (f":{port}" if port else "")
    spec.base_url = urlunsplit(parts._replace(netloc=netloc))


def validate(kind: str, spec: ServerSpec) -> None:
    if kind not in SERVER_KINDS:
        raise InvalidArgument("kind", f"must be one of {', '.join(SERVER_KINDS)}")
    if spec.base_url is not None:
        parsed = urlparse(spec.base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InvalidArgument("base_url", f"must be an http(s) URL, got {spec.base_url!r}")
    if spec.max_concurrency is not None and not 1 <= spec.max_concurrency <= MAX_CONCURRENCY:
        raise InvalidArgument("max_concurrency", f"must be within 1 .. {MAX_CONCURRENCY}")
    if spec.password and not spec.username:
        raise InvalidArgument("password", "needs a username")
    if spec.labels is not None and len(spec.labels) > 50:
        raise InvalidArgument("labels", "at most 50 labels")
    for name in ("base_url", "username", "password", "bearer_token"):
        value = getattr(spec, name)
        limit = ServerRow.__table__.c[name].type.length  # type: ignore[attr-defined]
        if value is not None and len(value) > limit:
            raise InvalidArgument(name, f"at most {limit} characters, got {len(value)}")
    for key, value in (spec.labels or {}).items():
        if len(key) > 100 or len(value) > 500:
            raise InvalidArgument(f"labels[{key[:40]!r}]", "keys at most 100, values 500 chars")


class ServerService:
    """Registers servers and keeps their health current.

    Args:
        db: the store.
        backends: builds the adapter for a server (its `probe()` is the health check).
        interval: seconds between routine probes.
    """

    def __init__(self, db: Database, backends: BackendFactory, interval: float = 10.0) -> None:
        self._db = db
        self._backends = backends
        self._interval = interval
        self._health: dict[str, Health] = {}
        self._listeners: list[Callable[[], None]] = []
        self._inventory_listeners: list[InventoryListener] = []
        self._removed_listeners: list[Callable[[str], Awaitable[None]]] = []
        self._monitor: asyncio.Task[None] | None = None
        self._probing: dict[str, asyncio.Task[None]] = {}
        self._inventories = Background("storing a server inventory")
        # One adapter per server for its probes, kept while its settings stay the same:
        # its HTTP client keeps its connection, and what a server lists once (sampler
        # names) is not asked again on every probe.
        self._probers: dict[str, tuple[ServerConfig, Backend]] = {}
        # The inventory last handed to the listeners, per server, and when.
        self._reported: dict[str, tuple[tuple[InventoryEntry, ...], float]] = {}
        # Rows change only through this service, and the dispatcher reads them on
        # every round: keep them in memory, dropped on every change.
        self._rows: list[ServerRow] | None = None

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def on_removed(self, listener: Callable[[str], Awaitable[None]]) -> None:
        """Called with a server's alias once it is removed."""
        self._removed_listeners.append(listener)

    def on_inventory(self, listener: InventoryListener) -> None:
        """Calls `listener(alias, kind, entries)` with each inventory a probe brings back."""
        self._inventory_listeners.append(listener)

    def _changed(self) -> None:
        self._rows = None
        for listener in self._listeners:
            listener()

    # ---- registry --------------------------------------------------------

    async def register(self, alias: str, kind: str, spec: ServerSpec) -> ServerState:
        """Raises InvalidArgument, AlreadyExists."""
        if not NAME.match(alias):
            raise InvalidArgument("alias", "letters, digits, '.', '_' or '-', at most 100")
        if not spec.base_url:
            raise InvalidArgument("base_url", "required")
        take_credentials(spec)
        validate(kind, spec)
        now = utcnow()
        row = ServerRow(
            alias=alias,
            kind=kind,
            base_url=spec.base_url.rstrip("/"),
            username=spec.username or "",
            password=spec.password or "",
            bearer_token=spec.bearer_token or "",
            max_concurrency=spec.max_concurrency or 1,
            labels=json.dumps(spec.labels or {}),
            created_at=now,
            updated_at=now,
        )

        def insert(session: Session) -> ServerRow:
            if session.get(ServerRow, alias) is not None:
                raise AlreadyExists(f"server {alias!r} is already registered")
            session.add(row)
            return row

        await self._db.run(insert)
        log.info("server %s registered (%s at %s)", alias, kind, row.base_url)
        self.check_soon(alias)
        self._changed()
        return ServerState(row, self._health.get(alias, Health()))

    async def update(self, alias: str, spec: ServerSpec, replace_labels: bool) -> ServerState:
        def change(session: Session) -> ServerRow:
            row = _get(session, alias)
            take_credentials(spec)
            validate(row.kind, spec)
            for name in ("base_url", "username", "password", "bearer_token", "max_concurrency"):
                value = getattr(spec, name)
                if value is not None:
                    setattr(row, name, value.rstrip("/") if name == "base_url" else value)
            if spec.labels is not None and (spec.labels or replace_labels):
                row.labels = json.dumps(spec.labels)
            row.updated_at = utcnow()
            session.add(row)
            return row

        row = await self._db.run(change)
        self.check_soon(alias)
        self._changed()
        return ServerState(row, self._health.get(alias, Health()))

    async def remove(self, alias: str) -> None:
        """Raises NotFound; FailedPrecondition while it runs jobs."""

        def delete(session: Session) -> None:
            row = _get(session, alias)
            running = session.exec(
                select(JobRow.id).where(
                    JobRow.server == alias, JobRow.status == JobStatus.PROCESSING.value
                )
            ).first()
            if running:
                raise FailedPrecondition(
                    f"server {alias} is running job {running}; disable it and wait, or cancel"
                )
            session.delete(row)

        await self._db.run(delete)
        self._health.pop(alias, None)
        self._reported.pop(alias, None)
        kept = self._probers.pop(alias, None)
        if kept is not None:
            await kept[1].close()
        for listener in self._removed_listeners:
            await listener(alias)
        self._changed()

    async def set_flag(self, alias: str, name: str, value: bool) -> ServerState:
        """Sets `enabled` or `paused`."""

        def change(session: Session) -> ServerRow:
            row = _get(session, alias)
            setattr(row, name, value)
            row.updated_at = utcnow()
            session.add(row)
            return row

        row = await self._db.run(change)
        log.info("server %s: %s = %s", alias, name, value)
        if name == "enabled" and value:
            self.check_soon(alias)
        self._changed()
        return ServerState(row, self._health.get(alias, Health()))

    async def get(self, alias: str) -> ServerState:
        row = await self._db.run(lambda s: _get(s, alias))
        return ServerState(row, self._health.get(alias, Health()))

    async def list(self, kind: str = "") -> list[ServerState]:
        def query(session: Session) -> list[ServerRow]:
            return list(session.exec(select(ServerRow).order_by(col(ServerRow.alias))))

        if self._rows is None:
            self._rows = await self._db.run(query)
        rows = [row for row in self._rows if not kind or row.kind == kind]
        return [ServerState(row, self._health.get(row.alias, Health())) for row in rows]

    async def paused_aliases(self) -> list[str]:
        return [s.row.alias for s in await self.list() if s.row.paused]

    # ---- health ----------------------------------------------------------

    def start(self) -> None:
        self._monitor = asyncio.create_task(self._monitor_loop(), name="sq-health-monitor")

    async def close(self) -> None:
        for task in [self._monitor, *self._probing.values()]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._inventories.wait()
        for _, backend in self._probers.values():
            await backend.close()
        self._probers.clear()

    def mark_down(self, alias: str, reason: str) -> None:
        """The dispatcher saw a transport failure: down now, re-probed soon."""
        self._set_health(alias, Health(HealthState.DOWN, reason, "", utcnow()))
        self.check_soon(alias, delay=1.0)

    def check_soon(self, alias: str, delay: float = 0.0) -> None:
        if alias in self._probing and not self._probing[alias].done():
            return
        self._probing[alias] = asyncio.create_task(self._probe_later(alias, delay))

    async def check(self, alias: str) -> ServerState:
        """Probes one server now and returns its state."""
        state = await self.get(alias)
        probe = await self._probe(state.config)
        self._record(alias, probe, state.row.kind)
        return replace(state, health=self._health[alias])

    async def _probe_later(self, alias: str, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        with contextlib.suppress(NotFound):
            await self.check(alias)

    async def _monitor_loop(self) -> None:
        while True:
            states = await self.list()
            probes = await asyncio.gather(*(self._probe(s.config) for s in states if s.row.enabled))
            for state, probe in zip([s for s in states if s.row.enabled], probes, strict=True):
                self._record(state.row.alias, probe, state.row.kind)
            await asyncio.sleep(self._interval)

    async def _probe(self, config: ServerConfig) -> Probe:
        kept = self._probers.get(config.alias)
        if kept is None or kept[0] != config:  # new, or its URL or credentials changed
            if kept is not None:
                await kept[1].close()
            kept = (config, self._backends(config))
            self._probers[config.alias] = kept
        return await kept[1].probe()

    def _record(self, alias: str, probe: Probe, kind: str = "") -> None:
        state = HealthState.UP if probe.up else HealthState.DOWN
        health = Health(
            state, probe.reason, probe.loaded_model, utcnow(),
            samplers=probe.samplers, schedulers=probe.schedulers,
        )  # fmt: skip
        self._set_health(alias, health)
        if (
            probe.inventory is not None
            and kind in SERVER_KINDS
            and ("probe" in SERVER_KINDS[kind].inventory)
        ):
            last, now = self._reported.get(alias), time.monotonic()
            if (
                last is not None
                and last[0] == probe.inventory
                and now - last[1] < INVENTORY_REFRESH_S
            ):
                return
            self._reported[alias] = (probe.inventory, now)
            for listener in self._inventory_listeners:
                self._inventories.spawn(listener(alias, kind, probe.inventory))

    def _set_health(self, alias: str, health: Health) -> None:
        """The one place a server's health changes: checked against `HEALTH`; a change
        of state or loaded model is logged and wakes the dispatcher."""
        before = self._health.get(alias)
        if not HEALTH.check(alias, before.state if before else HealthState.UNKNOWN, health.state):
            return
        self._health[alias] = health
        if before is None or (before.state, before.loaded_model) != (
            health.state,
            health.loaded_model,
        ):
            log.info("server %s is %s %s", alias, health.state, health.reason)
            self._changed()


def _get(session: Session, alias: str) -> ServerRow:
    row = session.get(ServerRow, alias)
    if row is None:
        raise NotFound(f"server {alias!r} is not registered")
    return row
