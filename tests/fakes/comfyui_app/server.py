"""`server.PromptServer`: the aiohttp app custom nodes add routes to."""

from __future__ import annotations

from typing import Any

from aiohttp import web


class PromptServer:
    instance: PromptServer

    def __init__(self) -> None:
        PromptServer.instance = self
        self.routes = web.RouteTableDef()
        self.app = web.Application(client_max_size=100 * 1024 * 1024)
        self.sent: list[tuple[str, Any, str | None]] = []  # what send_sync pushed

    def send_sync(self, event: str, data: Any, sid: str | None = None) -> None:
        """ComfyUI queues this for its websocket; the stand-in records it."""
        self.sent.append((event, data, sid))

    def add_routes(self) -> None:
        """Custom nodes' routes, as they are and again under /api (ComfyUI does both)."""
        api = web.RouteTableDef()
        for route in self.routes:
            if isinstance(route, web.RouteDef):
                api.route(route.method, "/api" + route.path)(route.handler)
        self.app.add_routes(api)
        self.app.add_routes(self.routes)
