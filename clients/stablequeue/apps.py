"""What the in-app extensions (Forge, ComfyUI) share: registering the app as a server,
and a background model-inventory sync that follows the app's model lists."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import grpc

from stablequeue.client import Client, StableQueueError
from stablequeue.v1 import processes_pb2

log = logging.getLogger("stablequeue")


def register_server(client: Client, alias: str, kind: int, base_url: str) -> str:
    """Registers this app as server `alias`, or points the existing one at `base_url`;
    returns what happened, for the log."""
    request = processes_pb2.RegisterServerRequest(alias=alias, kind=kind, base_url=base_url)
    try:
        client.call("RegisterServer", request, "processes")
        return f"registered as server {alias}"
    except StableQueueError as e:
        if e.code != grpc.StatusCode.ALREADY_EXISTS:
            raise
    client.call(
        "UpdateServer", processes_pb2.UpdateServerRequest(alias=alias, base_url=base_url),
        "processes",
    )  # fmt: skip
    return f"server {alias} updated"


class InventoryWatch:
    """Runs `sync()` on a thread: at start, whenever `signature()` changes (checked every
    `check_seconds`), when asked (`now()`), and every `period()` seconds if that is set.
    `last` is what the latest sync said."""

    def __init__(
        self,
        sync: Callable[[], str],
        signature: Callable[[], Any],
        check_seconds: float = 5.0,
        period: Callable[[], float | None] = lambda: None,
    ) -> None:
        self.sync, self.signature, self.period = sync, signature, period
        self.check_seconds = check_seconds
        self.last = ""
        self._stop, self._wake = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sq-inventory", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)

    def now(self) -> None:
        """Asks for a sync at once (after a refresh, or a settings change)."""
        self._wake.set()

    def _run(self) -> None:
        seen: Any = None
        first, waited = True, 0.0
        while not self._stop.is_set():
            try:
                current = self.signature()
            except Exception:
                current = seen
            period = self.period()
            due = period is not None and waited >= period
            if first or current != seen or due or self._wake.is_set():
                self._wake.clear()
                first, seen, waited = False, current, 0.0
                self.last = self.sync()
                log.info("StableQueue: %s", self.last)
            self._wake.wait(self.check_seconds)
            waited += self.check_seconds
