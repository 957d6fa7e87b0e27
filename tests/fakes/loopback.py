"""A real aiohttp server on a loopback port, run on its own event loop thread.

The fakes of Forge, ComfyUI and sd-server build on it, so tests (synchronous,
or on the coordinator's loop) talk to them over real HTTP and websockets.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")


class LoopbackServer:
    """Subclasses add their routes in `routes()`; `close()` drops every connection at once."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = self.call(self._start())
        self.url = f"http://127.0.0.1:{self.port}"

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        """Runs `coro` on the server's loop and returns its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def setup(self) -> None:
        """Creates loop-bound state (locks, queues, tasks) before serving."""

    async def _start(self) -> int:
        await self.setup()
        app = web.Application(middlewares=self.middlewares())
        self.routes(app)
        # A close drops in-flight requests at once, like a server process dying.
        self.runner = web.AppRunner(app, shutdown_timeout=0.1, handler_cancellation=True)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def middlewares(self) -> list[Any]:
        return []

    async def teardown(self) -> None:
        """Stops loop-bound work before the server goes away."""

    def close(self) -> None:
        async def stop() -> None:
            await self.teardown()
            await self.runner.cleanup()

        self.call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
