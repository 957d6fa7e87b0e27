"""`server.PromptServer`: the aiohttp app custom nodes add routes to."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web


class PromptServer:
    instance: PromptServer

    def __init__(self) -> None:
        PromptServer.instance = self
        self.routes = web.RouteTableDef()
        self.app = web.Application(client_max_size=100 * 1024 * 1024)
        self.sent: list[tuple[str, Any, str | None]] = []  # what send_sync pushed
        # A page harness sets this to push the events to its websocket clients.
        self.forward: Callable[[str, Any, str | None], None] | None = None

    def send_sync(self, event: str, data: Any, sid: str | None = None) -> None:
        """ComfyUI queues this for its websocket; the stand-in records it (and hands it
        to a page harness's websocket when one is attached)."""
        self.sent.append((event, data, sid))
        if self.forward is not None:
            self.forward(event, data, sid)

    def add_routes(self) -> None:
        """Custom nodes' routes, as they are and again under /api (ComfyUI does both)."""
        api = web.RouteTableDef()
        for route in self.routes:
            if isinstance(route, web.RouteDef):
                api.route(route.method, "/api" + route.path)(route.handler)
        self.app.add_routes(api)
        self.app.add_routes(self.routes)
