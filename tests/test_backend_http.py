"""The adapters' HTTP layer against a real HTTP server: credentials, forms, and how
each kind of failure becomes a typed error (never sent / sent and lost / rejected)."""

from __future__ import annotations

import asyncio
import base64
import socket
from typing import Any

import pytest
from aiohttp import web

from stablequeue_coordinator.backends.base import ServerConfig, http_client, request
from stablequeue_coordinator.backends.http import NotSent
from stablequeue_coordinator.errors import BackendRejected, BackendUnavailable
from tests.fakes.loopback import LoopbackServer


class Server(LoopbackServer):
    """Answers, stalls, drops or fails on purpose; records what reached it."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        super().__init__()

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/echo", self.echo)
        app.router.add_post("/form", self.form)
        app.router.add_post("/stall", self.stall)
        app.router.add_post("/drop", self.drop)
        app.router.add_get("/fail/{status}", self.fail)

    async def echo(self, request: web.Request) -> web.Response:
        self.seen.append({"auth": request.headers.get("Authorization", "")})
        return web.json_response({"query": dict(request.query)})

    async def form(self, request: web.Request) -> web.Response:
        fields: dict[str, Any] = {}
        async for part in await request.multipart():
            body = await part.read()  # type: ignore[union-attr]
            fields[part.name or ""] = (part.filename, bytes(body), part.headers.get("Content-Type"))  # type: ignore[union-attr]
        return web.json_response({k: [v[0], v[1].hex(), v[2]] for k, v in fields.items()})

    async def stall(self, request: web.Request) -> web.Response:
        await request.read()
        self.seen.append({"stalled": True})
        await asyncio.sleep(30)
        return web.json_response({})

    async def drop(self, request: web.Request) -> web.Response:
        await request.read()
        self.seen.append({"dropped": True})
        assert request.transport is not None
        request.transport.close()  # took the request, never answers: a crash mid-generation
        await asyncio.sleep(30)
        return web.json_response({})

    async def fail(self, request: web.Request) -> web.Response:
        status = int(request.match_info["status"])
        return web.json_response({"detail": f"no such thing ({status})"}, status=status)


@pytest.fixture
def server() -> Any:
    running = Server()
    yield running
    running.close()


def config(url: str, **credentials: str) -> ServerConfig:
    return ServerConfig(alias="box", kind="forge", base_url=url + "/", **credentials)


async def test_basic_auth_and_bearer_token_reach_the_server(server: Server) -> None:
    basic = "Basic " + base64.b64encode("ann:pä:ss".encode()).decode()
    for credentials, expected in (
        ({"username": "ann", "password": "pä:ss"}, basic),
        ({"bearer_token": "sk-test"}, "Bearer sk-test"),
        ({}, ""),
    ):  # fmt: skip
        client = http_client(config(server.url, **credentials), timeout=5)
        try:
            reply = await request(client, "GET", "/echo", "box", params={"a": "1 2"})
        finally:
            await client.close()
        assert reply.status_code == 200 and reply.json() == {"query": {"a": "1 2"}}
        assert server.seen[-1]["auth"] == expected


async def test_a_form_carries_its_fields_and_file(server: Server) -> None:
    client = http_client(config(server.url), timeout=5)
    try:
        reply = await request(
            client, "POST", "/form", "box",
            files={"image": ("in.png", b"\x89PNG-bytes", "image/png")},
            data={"type": "input", "overwrite": "true"},
        )  # fmt: skip
    finally:
        await client.close()
    fields = reply.json()
    assert fields["image"] == ["in.png", b"\x89PNG-bytes".hex(), "image/png"]
    assert [fields["type"][:2], fields["overwrite"][:2]] == [
        [None, b"input".hex()],
        [None, b"true".hex()],
    ]


async def test_a_server_not_listening_is_unavailable_and_the_request_never_went_out() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = http_client(config(f"http://127.0.0.1:{port}", password="hunter2", username="u"), 5)
    try:
        with pytest.raises(BackendUnavailable) as caught:
            await request(client, "POST", "/sdapi/v1/txt2img", "box", json={"prompt": "x"})
    finally:
        await client.close()
    assert isinstance(caught.value.__cause__, NotSent)  # safe to send again
    assert caught.value.message.startswith("box: POST /sdapi/v1/txt2img failed")
    assert "hunter2" not in str(caught.value)


async def test_a_request_taken_and_dropped_is_unavailable_and_known_to_have_gone_out(
    server: Server,
) -> None:
    client = http_client(config(server.url), timeout=5)
    try:
        with pytest.raises(BackendUnavailable) as caught:
            await request(client, "POST", "/drop", "box", json={"prompt": "x"})
    finally:
        await client.close()
    assert server.seen == [{"dropped": True}]
    assert caught.value.__cause__ is not None and not isinstance(caught.value.__cause__, NotSent)


async def test_a_silent_server_times_out_after_the_read_timeout(server: Server) -> None:
    client = http_client(config(server.url), timeout=600)
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(BackendUnavailable, match="box: POST /stall timed out"):
            await request(client, "POST", "/stall", "box", json={}, timeout=0.5)
        assert asyncio.get_running_loop().time() - started < 5
    finally:
        await client.close()
    assert server.seen == [{"stalled": True}]


async def test_error_statuses_become_typed_errors_with_the_servers_message(server: Server) -> None:
    client = http_client(config(server.url), timeout=5)
    try:
        with pytest.raises(BackendUnavailable, match=r"answered 503: no such thing \(503\)"):
            await request(client, "GET", "/fail/503", "box")
        with pytest.raises(BackendUnavailable, match="answered 429"):
            await request(client, "GET", "/fail/429", "box")
        with pytest.raises(BackendRejected, match=r"rejected the request \(422\): no such thing"):
            await request(client, "GET", "/fail/422", "box")
        passed = await request(client, "GET", "/fail/404", "box", passthrough=(404,))
        assert passed.status_code == 404 and passed.json() == {"detail": "no such thing (404)"}
    finally:
        await client.close()
