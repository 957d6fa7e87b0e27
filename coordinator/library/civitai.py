"""The Civitai API, as the library uses it (PROTOCOLS.md §4): versions by hash, previews.

Optional and polite: requests are at least `interval` seconds apart, 429 and 5xx
back off exponentially (Civitai sends no Retry-After), a 404 is an answer
("unknown hash"), and no network at all is `CivitaiUnavailable`, never a crash.
The token goes in the Authorization header only; it is never logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx

log = logging.getLogger(__name__)
DEFAULT_URL = "https://civitai.com/api/v1"


class CivitaiUnavailable(Exception):
    """Civitai could not be reached or kept refusing; try again later."""


class CivitaiClient:
    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        token: str = "",
        interval: float = 1.0,
        retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(30.0, connect=5.0),
            follow_redirects=True,
        )
        self._interval = interval
        self._retries = retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._lock = asyncio.Lock()
        self._last = 0.0

    async def _get(self, url: str) -> httpx.Response:
        """One GET, spaced from the previous one, retried with backoff on 429/5xx."""
        delay = self._backoff
        for attempt in range(self._retries + 1):
            async with self._lock:
                wait = self._last + self._interval - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                try:
                    response = await self._client.get(url)
                except httpx.HTTPError as e:
                    raise CivitaiUnavailable(f"Civitai is unreachable: {type(e).__name__}") from e
                finally:
                    self._last = time.monotonic()
            if response.status_code != 429 and response.status_code < 500:
                return response
            if attempt == self._retries:
                break
            log.info("Civitai answered %s; retrying in %.1f s", response.status_code, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_backoff)
        raise CivitaiUnavailable(f"Civitai kept answering {response.status_code}")

    async def version_by_hash(self, digest: str) -> dict[str, Any] | None:
        """The model version whose file has this hash, or None when Civitai does not know it.

        Raises:
            CivitaiUnavailable: network failure, or 429/5xx after the retries.
        """
        return await self._version(f"/model-versions/by-hash/{digest.upper()}")

    async def version(self, version_id: int) -> dict[str, Any] | None:
        """A model version by id (its files, hashes and download URL), None if unknown.

        Raises:
            CivitaiUnavailable: network failure, or 429/5xx after the retries.
        """
        return await self._version(f"/model-versions/{version_id}")

    @property
    def auth_headers(self) -> dict[str, str]:
        """The Authorization header, for downloads (never log it)."""
        token = self._client.headers.get("Authorization")
        return {"Authorization": token} if token else {}

    async def _version(self, path: str) -> dict[str, Any] | None:
        response = await self._get(path)
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise CivitaiUnavailable(f"Civitai answered {response.status_code}")
        try:
            data = response.json()
        except ValueError as e:
            raise CivitaiUnavailable("Civitai answered with something other than JSON") from e
        return data if isinstance(data, dict) else None

    async def download(self, url: str, limit: int = 20 * 1024 * 1024) -> bytes:
        """A preview image (absolute URL), at most `limit` bytes."""
        response = await self._get(url)
        if response.status_code >= 400:
            raise CivitaiUnavailable(f"preview download answered {response.status_code}")
        if len(response.content) > limit:
            raise CivitaiUnavailable("preview is larger than allowed")
        return response.content

    async def close(self) -> None:
        await self._client.aclose()
