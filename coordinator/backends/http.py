"""The adapters' HTTP client: one aiohttp session per backend server.

Every job sends at least one request to its server (ComfyUI several), and probes
go out on their interval to every server, so the client's own cost is part of
what each job costs the coordinator: aiohttp spends ~0.16 ms of CPU on a Forge
txt2img request and its answer where httpx spent ~0.6 ms (measured side by side
on one machine). Adapters see only `Reply`, never the library's types.
"""

from __future__ import annotations

import base64
import functools
import json as jsonlib
import ssl
from dataclasses import dataclass
from typing import Any

import aiohttp
import certifi

CONNECT_SECONDS = 5.0


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every client: building one loads the CA bundle (~50 ms),
    which per attempt was most of the time a job took to reach an idle server."""
    return ssl.create_default_context(cafile=certifi.where())


def auth_headers(username: str, password: str, bearer_token: str) -> dict[str, str]:
    """The Authorization header for a server's bearer token or basic auth, if any."""
    if bearer_token:
        return {"Authorization": f"Bearer {bearer_token}"}
    if username:
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    return {}


@dataclass(frozen=True, slots=True)
class Reply:
    """A backend's whole answer to one request."""

    status_code: int
    content: bytes
    reason_phrase: str

    def json(self) -> Any:
        return jsonlib.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class NotSent(aiohttp.ClientError):
    """The request never reached the server (no connection could be made)."""


class Client:
    """Requests to one server under its base URL, with its basic auth or bearer token.

    The session opens on the first request, inside the event loop that uses it.
    `timeout` bounds each wait for the server's next bytes (not the whole answer: a
    generation may stream nothing for minutes and still be working).
    """

    def __init__(
        self,
        base_url: str,
        timeout: float,
        username: str = "",
        password: str = "",
        bearer_token: str = "",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._headers = auth_headers(username, password, bearer_token)
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=tls_context()),
                headers=self._headers,
                cookie_jar=aiohttp.DummyCookieJar(),  # each call stands alone
            )
        return self._session

    def _timeout_of(self, seconds: float | None) -> aiohttp.ClientTimeout:
        seconds = self._timeout if seconds is None else seconds
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(
                total=None, sock_connect=min(CONNECT_SECONDS, seconds), sock_read=seconds
            )
            self._timeouts[seconds] = timeout
        return timeout

    async def send(
        self,
        method: str,
        path: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - per read, not the whole call
        json: Any = None,
        params: dict[str, str] | None = None,
        data: dict[str, str] | None = None,
        files: dict[str, tuple[str, bytes, str]] | None = None,
    ) -> Reply:
        """Sends one request and reads the whole answer.

        Raises:
            NotSent: no connection to the server could be made.
            TimeoutError: the server sent nothing for `timeout` seconds.
            aiohttp.ClientError: the connection broke after the request went out.
        """
        body: Any = None
        if files is not None or data is not None:  # a form (multipart with files)
            form = aiohttp.FormData()
            for key, value in (data or {}).items():
                form.add_field(key, value)
            for key, (filename, content, mime) in (files or {}).items():
                form.add_field(key, content, filename=filename, content_type=mime)
            body = form
        try:
            async with self._open().request(
                method,
                self.base_url + path,
                params=params,
                json=json,
                data=body,
                timeout=self._timeout_of(timeout),
                allow_redirects=False,
            ) as response:
                return Reply(response.status, await response.read(), response.reason or "")
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as e:
            raise NotSent(str(e) or type(e).__name__) from e

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
