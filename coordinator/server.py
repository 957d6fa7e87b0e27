"""Wiring: builds the store, the services and the gRPC server from Settings."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

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
from stablequeue_coordinator.library.civitai import CivitaiClient
from stablequeue_coordinator.library.service import ModelLibrary
from stablequeue_coordinator.nodes.service import NodeService
from stablequeue_coordinator.outputs.store import ResultStore
from stablequeue_coordinator.queue.events import EventBus
from stablequeue_coordinator.queue.service import QueueService
from stablequeue_coordinator.servers.service import ServerService
from stablequeue_coordinator.store import Database

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
    stopped: bool = False

    @property
    def address(self) -> str:
        host = self.settings.listen.rpartition(":")[0]
        return f"{host}:{self.port}"

    async def stop(self, grace: float = 2.0) -> None:
        """Stops serving: open watch streams end, in-flight calls get `grace` seconds.

        A second call does nothing.
        """
        if self.stopped:
            return
        self.stopped = True
        await self.health.enter_graceful_shutdown()
        self.bus.close()
        await self.server.stop(grace)
        await self.dispatcher.close()
        await self.nodes.close()
        await self.downloads.close()
        await self.servers.close()
        await self.queue.close()
        await self.library.close()
        self.db.close()


async def start_coordinator(settings: Settings) -> Coordinator:
    """Migrates the store, binds the port and starts serving.

    Raises:
        RuntimeError: the listen address could not be bound.
    """
    db = Database(settings.resolved_database_url)
    await asyncio.to_thread(db.take)
    db.migrate()
    bus = EventBus()
    keys = KeyService(db)
    servers = ServerService(db, make_backend, settings.health_interval)
    results = ResultStore(db, settings.resolved_output_dir)
    await asyncio.to_thread(results.remove_orphans)
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
    nodes = NodeService()
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
    server = grpc.aio.server(
        interceptors=[ApiInterceptor(keys, settings.require_auth)],
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            # Without this a second coordinator could bind the same port and
            # split the traffic with the first, silently.
            ("grpc.so_reuseport", 0),
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
    for name in (*SERVED, ""):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (*SERVED, reflection.SERVICE_NAME, health.SERVICE_NAME), server
    )
    try:
        port = _bind(server, settings)
    except RuntimeError:
        db.close()  # and with it the database, for whoever starts next
        raise
    await server.start()
    servers.start()
    nodes.start()
    await dispatcher.start()
    await downloads.start()
    log.info(
        "coordinator listening on %s (database %s)",
        settings.listen.rpartition(":")[0] + f":{port}",
        db.url.render_as_string(hide_password=True),
    )
    return Coordinator(
        settings, server, port, db, bus, queue, keys, health_servicer, servers, results, dispatcher,
        library, nodes, downloads,
    )  # fmt: skip


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
