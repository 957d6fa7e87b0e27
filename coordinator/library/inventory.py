"""One host's model inventory as a SyncInventory stream brings it: a header, then its
files, each checked as it arrives (the refused field named)."""

from __future__ import annotations

import re

from stablequeue_coordinator.backends.base import InventoryEntry
from stablequeue_coordinator.errors import InvalidArgument

MAX_INVENTORY = 200_000
MAX_PATH_CHARS = 2000
HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class InventoryReport:
    """Collects one host's report: `header()` once, then `add()` per file, then `finish()`.

    Raises (each method):
        InvalidArgument: naming the field and the rule.
    """

    def __init__(self) -> None:
        self.host = ""
        self.app = ""
        self.incremental = False
        self.entries: list[InventoryEntry] = []
        self.removed: list[str] = []
        self._has_header = False

    def header(self, host: str, app: str, incremental: bool) -> None:
        if self._has_header:
            raise InvalidArgument("header", "sent twice; one stream is one host")
        if not HOST.match(host):
            raise InvalidArgument(
                "header.host", f"1-100 letters, digits, '.', '_' or '-', got {host[:40]!r}"
            )
        self.host, self.app, self.incremental = host, app, incremental
        self._has_header = True

    def add(
        self, path: str, backend_name: str, type_name: str, sha256: str, size_bytes: int,
        removed: bool = False,
    ) -> None:  # fmt: skip
        if not self._has_header:
            raise InvalidArgument("header", "must come first")
        where = f"file[{len(self.entries)}]"
        if not path or len(path) > MAX_PATH_CHARS:
            raise InvalidArgument(f"{where}.path", f"required, at most {MAX_PATH_CHARS} chars")
        if len(backend_name) > MAX_PATH_CHARS:
            raise InvalidArgument(f"{where}.backend_name", f"at most {MAX_PATH_CHARS} chars")
        if removed and not self.incremental:
            raise InvalidArgument(f"{where}.removed", "only in an incremental sync")
        sha = sha256.lower().removeprefix("0x")
        if sha and not SHA256.match(sha):
            raise InvalidArgument(f"{where}.hashes.sha256", "not 64 hex digits")
        if removed:
            self.removed.append(path)
            return
        self.entries.append(
            InventoryEntry(
                path=path,
                backend_name=backend_name or path,
                type=type_name,
                sha256=sha,
                size_bytes=max(0, size_bytes),
            )
        )
        if len(self.entries) > MAX_INVENTORY:
            raise InvalidArgument("file", f"at most {MAX_INVENTORY} files per inventory")

    def finish(self) -> None:
        if not self._has_header:
            raise InvalidArgument("header", "required")
