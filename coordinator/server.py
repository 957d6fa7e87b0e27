"""Wiring: builds the store, the services and the gRPC server from Settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from stablequeue.v1 import (
    models_pb2,
    models_pb2_grpc,
    processes_pb2,
    processes_pb2_grpc,
    queue_pb2,
    queue_pb2_grpc,
)
from stablequeue_coordinator.api.interceptor import ApiInterceptor
from stablequeue_coordinator.api.models_servicer import ModelsServicer
from stablequeue_coordinator.api.processes_servicer import ProcessesServicer
from stablequeue_coordinator.api.queue_servicer import QueueServicer
from stablequeue_coordinator.auth.keys import KeyService
from stablequeue_coordinator.backends.base import Backend, ServerConfig
from stablequeue_coordinator.backends.registry import make_backend
from stablequeue_coordinator.config import Settings
from stablequeue_coordinator.dispatch.dispatcher import Dispatcher, DispatchSettings
from stablequeue_coordinator.downloads.service import DownloadService
from stablequeue_coordinator.errors import NotActive
from stablequeue_coordinator.http.gateway import Gateway
from stablequeue_coordinator.library.civitai import CivitaiClient
from stablequeue_coordinator.library.service import ModelLibrary
from stablequeue_coordinator.nodes.service import NodeService
from stablequeue_coordinator.outputs.store import ResultStore
from stablequeue_coordinator.queue.events import EventBus
from stablequeue_coordinator.queue.service import QueueService
from stablequeue_coordinator.servers.service import ServerService
from stablequeue_coordinator.store import Database
from stablequeue_coordinator.store.db import lock_file
from stablequeue_coordinator.store.leadership import POLL_S, RENEW_S, Leadership

log = logging.getLogger(__name__)
SERVED = (
    queue_pb2.DESCRIPTOR.services_by_name["QueueService"].full_name,
    processes_pb2.DESCRIPTOR.services_by_name["ProcessesService"].full_name,
    models_pb2.DESCRIPTOR.services_by_name["ModelsService"].full_name,
)


@dataclass
class Coordinator:
    """A running coordinator: its gRPC server, bound port and services."""

    settings: Settings
    server: grpc.aio.Server
    port: int
    db: Database
    bus: EventBus
    queue: QueueService
    keys: KeyService
    health: health.aio.HealthServicer
    servers: ServerService
    results: ResultStore
    dispatcher: Dispatcher
    library: ModelLibrary
    nodes: NodeService
    downloads: DownloadService
    interceptor: ApiInterceptor
    data_lock: Any = None  # the locked file that keeps the data folder this process's
    # On PostgreSQL: the lease that makes this coordinator the active one, or a standby.
    leadership: Leadership | None = None
    stopped: bool = False
    active: asyncio.Event = field(default_factory=asyncio.Event)
    # Set when the lease was lost to another coordinator: this one has stopped acting.
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    _lease_task: asyncio.Task[None] | None = None
    # The web console and HTTP API, and the private folder of the socket it calls us on.
    gateway: Gateway | None = None
    gateway_dir: str | None = None

    @property
    def address(self) -> str:
        host = self.settings.listen.rpartition(":")[0]
        return f"{host}:{self.port}"

    @property
    def http_url(self) -> str:
        """The console's URL ("" when HTTP is off)."""
        if self.gateway is None:
            return ""
        host = self.settings.http_listen.rpartition(":")[0]
        if host in ("", "0.0.0.0", "[::]", "::"):
            host = socket.gethostname()
        return f"http://{host}:{self.gateway.port}"

    @property
    def advertised(self) -> str:
        """The address clients and standbys are told (a wildcard host: this host's name)."""
        host = self.settings.listen.rpartition(":")[0]
        if host in ("", "0.0.0.0", "[::]", "::"):
            host = socket.gethostname()
        return f"{host}:{self.port}"

    # ---- active and standby -----------------------------------------------

    async def take_over_or_wait(self) -> None:
        """Becomes the active coordinator now (SQLite; a free or own lease) or stands by
        and takes over when the active one's lease runs out."""
        lease = self.leadership
        if lease is None or await lease.call(lease.take) is not None:
            await self._activate()
            return
        holder = await lease.call(lease.active)
        self.interceptor.standby = _standby_message(holder)
        log.warning(
            "standby: %s is the active coordinator of this database; taking over when "
            "its lease runs out", holder[1] if holder else "another coordinator",
        )  # fmt: skip
        self._lease_task = asyncio.create_task(self._stand_by(), name="sq-standby")

    async def _stand_by(self) -> None:
        lease = self.leadership
        assert lease is not None
        while not self.stopped:
            await asyncio.sleep(POLL_S)
            try:
                if await lease.call(lease.take) is not None:
                    break
                self.interceptor.standby = _standby_message(await lease.call(lease.active))
            except Exception as e:  # the database is away: keep looking
                log.warning("standby: cannot read the lease: %s", e)
        else:
            return
        log.warning("the active coordinator's lease ran out: taking over")
        await self._activate()

    async def _activate(self) -> None:
        began = time.monotonic()
        if self.leadership is not None:
            self.db.fence = self.leadership.fence
            self.nodes.may_act = self.leadership.valid
            self.dispatcher.may_act = self.leadership.valid
        await asyncio.to_thread(self.results.remove_orphans)
        await self.db.run(self.queue.tally.load)
        self.servers.start()
        await self.nodes.load()
        self.nodes.start()
        await self.dispatcher.start()
        await self.downloads.start()
        self.interceptor.standby = None
        for name in (*SERVED, ""):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.active.set()
        if self.leadership is not None:
            self._lease_task = asyncio.create_task(self._keep_lease(), name="sq-lease")
            log.warning(
                "active coordinator of this database (lease epoch %s), ready in %.2f s",
                self.leadership.epoch, time.monotonic() - began,
            )  # fmt: skip

    async def _keep_lease(self) -> None:
        lease = self.leadership
        assert lease is not None
        while not self.stopped:
            await asyncio.sleep(RENEW_S)
            kept = await lease.call(lease.renew)
            if kept is False or (kept is None and time.monotonic() - lease.renewed_at
                                 > lease.lease_s - RENEW_S):  # fmt: skip
                log.error(
                    "lost the lease (epoch %s) to another coordinator: stopping; a "
                    "supervisor restarts this one as a standby", lease.epoch,
                )  # fmt: skip
                self.lost.set()
                self.db.fence = _refuse  # nothing more is written, whatever the timing
                asyncio.get_running_loop().create_task(self.stop())
                return

    async def stop(self, grace: float = 2.0) -> None:
        """Stops serving: open watch streams end, in-flight calls get `grace` seconds.

        A second call does nothing.
        """
        if self.stopped:
            return
        self.stopped = True
        if self._lease_task is not None and self._lease_task is not asyncio.current_task():
            self._lease_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lease_task
        await self.health.enter_graceful_shutdown()
        self.bus.close()
        if self.gateway is not None:
            await self.gateway.stop()
        await self.server.stop(grace)
        await self.dispatcher.close()
        await self.nodes.close()
        await self.downloads.close()
        await self.servers.close()
        await self.library.close()
        self.results.close()
        if self.leadership is not None:
            if self.active.is_set() and not self.lost.is_set():
                with contextlib.suppress(Exception):  # a standby takes over at once
                    await self.leadership.call(self.leadership.release)
            self.leadership.close()
        self.db.close()
        if self.data_lock is not None and self.data_lock is not True:
            self.data_lock.close()
        if self.gateway_dir is not None:
            shutil.rmtree(self.gateway_dir, ignore_errors=True)


async def start_coordinator(settings: Settings) -> Coordinator:
    """Migrates the store, binds the port and starts serving.

    Raises:
        RuntimeError: the listen address could not be bound.
    """
    data_lock = lock_file(settings.data_dir / "coordinator.lock")
    if data_lock is None:
        raise RuntimeError(
            f"another coordinator is using the data folder {settings.data_dir}: give each "
            "coordinator its own (--data-dir)"
        )
    db = Database(settings.resolved_database_url)
    try:
        await asyncio.to_thread(db.take)
        await asyncio.to_thread(db.migrate)
    except BaseException:
        db.close()
        data_lock.close()
        raise
    bus = EventBus()
    keys = KeyService(db)
    servers = ServerService(db, make_backend, settings.health_interval)
    results = ResultStore(db, settings.resolved_output_dir)
    civitai = CivitaiClient(
        settings.civitai_url,
        settings.civitai_token.get_secret_value(),
        settings.civitai_interval,
    )
    library = ModelLibrary(
        db,
        settings.model_roots,
        settings.hash_workers,
        civitai,
        settings.data_dir / "previews",
    )
    servers.on_inventory(library.replace_inventory)
    servers.on_removed(library.forget_host)
    queue = QueueService(db, bus, servers, results, library)
    nodes = NodeService(db)
    queue.node_places = nodes.places
    downloads = DownloadService(db, library, civitai, settings.download_concurrency, nodes)
    nodes.on_download(downloads.node_update)
    nodes.on_offline(downloads.node_lost)

    def backend_for(config: ServerConfig) -> Backend:
        return make_backend(config, services={"nodes": nodes, "downloads": downloads})

    dispatcher = Dispatcher(
        queue,
        servers,
        results,
        backend_for,
        DispatchSettings(
            max_attempts=settings.max_attempts,
            attempt_timeout=settings.attempt_timeout,
            retry_backoff=settings.retry_backoff,
        ),
        library,
        nodes.places,
    )
    nodes.on_change(dispatcher.wake)
    library.on_change(dispatcher.wake)  # a file reported: a job waiting for it may go
    limit = settings.max_message_mb << 20
    interceptor = ApiInterceptor(keys, settings.require_auth)
    interceptor.standby = "the coordinator is starting"
    db.quiet = interceptor.quiet  # a lone submit commits on the event loop
    server = grpc.aio.server(
        interceptors=[interceptor],
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            # Without this a second coordinator could bind the same port and
            # split the traffic with the first, silently.
            ("grpc.so_reuseport", 0),
            # Clients of an active/standby pair ping every 2 s to notice a frozen one.
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 1000),
            ("grpc.http2.max_ping_strikes", 0),
        ],
    )
    queue_pb2_grpc.add_QueueServiceServicer_to_server(QueueServicer(queue, keys, results), server)
    processes_pb2_grpc.add_ProcessesServiceServicer_to_server(
        ProcessesServicer(servers, dispatcher.running_on, nodes, keys), server
    )
    models_pb2_grpc.add_ModelsServiceServicer_to_server(
        ModelsServicer(library, downloads, nodes, keys), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in (*SERVED, ""):  # SERVING once active (a standby never is)
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection(
        (*SERVED, reflection.SERVICE_NAME, health.SERVICE_NAME), server
    )
    gateway_dir = tempfile.mkdtemp(prefix="sq-http-") if settings.http_listen else None
    try:
        port = _bind(server, settings)
        gateway = _gateway(server, gateway_dir, interceptor, settings) if gateway_dir else None
    except RuntimeError:
        db.close()  # and with it the database, for whoever starts next
        data_lock.close()
        if gateway_dir is not None:
            shutil.rmtree(gateway_dir, ignore_errors=True)
        raise
    await server.start()
    log.info(
        "coordinator listening on %s (database %s)",
        settings.listen.rpartition(":")[0] + f":{port}",
        db.url.render_as_string(hide_password=True),
    )
    coordinator = Coordinator(
        settings, server, port, db, bus, queue, keys, health_servicer, servers, results, dispatcher,
        library, nodes, downloads, interceptor, data_lock,
    )  # fmt: skip
    coordinator.gateway_dir = gateway_dir
    if gateway is not None:
        try:
            await gateway.start(settings.http_listen)
        except BaseException:
            await gateway.stop()
            await coordinator.stop(grace=0)
            raise
        coordinator.gateway = gateway
        log.info("console and HTTP API on %s", coordinator.http_url)
    if not db.is_sqlite:
        holder = f"{socket.gethostname()}:{settings.data_dir.resolve()}"
        coordinator.leadership = Leadership(
            settings.resolved_database_url, holder, coordinator.advertised
        )
    try:
        await coordinator.take_over_or_wait()
    except BaseException:
        await coordinator.stop(grace=0)
        raise
    return coordinator


def _standby_message(active: tuple[str, str] | None) -> str:
    where = f" is {active[1]}" if active and active[1] else " has not renewed its lease yet"
    return f"this coordinator is a standby: the active one{where}"


def _refuse(session: Any) -> None:
    raise NotActive("this coordinator lost its lease to another; it writes nothing more")


def _gateway(
    server: grpc.aio.Server, folder: str, interceptor: ApiInterceptor, settings: Settings
) -> Gateway:
    """The HTTP gateway, which calls our services as any client does: on a socket in a
    folder only this user may open (mkdtemp makes it 0700)."""
    target = f"unix:{folder}/grpc.sock"
    if not server.add_insecure_port(target):
        raise RuntimeError(f"could not listen on {target}")
    limit = settings.max_message_mb << 20
    return Gateway(target, interceptor, settings.http_cors_origins, limit)


def _bind(server: grpc.aio.Server, settings: Settings) -> int:
    try:
        if settings.tls_cert and settings.tls_key:
            credentials = grpc.ssl_server_credentials(
                [(settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())]
            )
            port = server.add_secure_port(settings.listen, credentials)
        else:
            port = server.add_insecure_port(settings.listen)
    except RuntimeError as e:
        raise RuntimeError(f"could not listen on {settings.listen} (address in use?)") from e
    if port == 0:
        raise RuntimeError(f"could not listen on {settings.listen} (address in use?)")
    return port
