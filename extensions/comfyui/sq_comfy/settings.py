"""Settings: a JSON file beside the package (or $SQ_COMFY_SETTINGS), the frontend's
settings dialog writes it through POST /stablequeue/settings; SQ_ADDR / SQ_API_KEY
are the defaults."""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from stablequeue import Client

ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
ADDRESS = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


class SettingsError(ValueError):
    """A setting is invalid; the message names it."""


@dataclass(frozen=True)
class Settings:
    address: str = ""
    api_key: str = ""
    alias: str = ""
    url: str = ""
    priority: int = 0
    sync: bool = True
    # The inventory is sent again this often (seconds), so a coordinator that lost or
    # forgot it (a new database, the server removed and added) has it back.
    resync_seconds: int = 300

    def client(self, timeout: float = 15.0) -> Client:
        return Client(self.address or None, self.api_key or None, timeout=timeout)

    def public(self) -> dict[str, Any]:
        """What the page may see: everything but the key (only whether one is set)."""
        shown = asdict(self)
        del shown["api_key"]
        shown["address"] = self.address or os.environ.get("SQ_ADDR", "127.0.0.1:50051")
        shown["has_api_key"] = bool(self.api_key or os.environ.get("SQ_API_KEY"))
        return shown


def path() -> Path:
    explicit = os.environ.get("SQ_COMFY_SETTINGS")
    return (
        Path(explicit) if explicit else Path(__file__).resolve().parent.parent / "stablequeue.json"
    )


def load() -> Settings:
    try:
        data = json.loads(path().read_text())
    except (OSError, ValueError):
        data = {}
    known = {k: v for k, v in data.items() if k in Settings.__dataclass_fields__}
    try:
        return checked(Settings(), known)
    except SettingsError:
        return Settings()


def checked(base: Settings, changes: dict[str, Any]) -> Settings:
    """`base` with `changes` applied, each field checked."""
    unknown = sorted(set(changes) - set(Settings.__dataclass_fields__))
    if unknown:
        raise SettingsError(f"unknown setting {unknown[0]!r}")
    for key in ("address", "api_key", "alias", "url"):
        if key in changes and not isinstance(changes[key], str):
            raise SettingsError(f"{key}: must be a string")
    if changes.get("address") and not all(
        ADDRESS.match(part.strip()) for part in changes["address"].split(",")
    ):
        raise SettingsError(
            "address: expected host:port, e.g. 127.0.0.1:50051 (several: comma-separated)"
        )
    if changes.get("alias") and not ALIAS.match(changes["alias"].strip()):
        raise SettingsError("alias: letters, digits, '.', '_' or '-', at most 100 characters")
    if changes.get("url") and not re.match(r"^https?://", changes["url"].strip()):
        raise SettingsError("url: must start with http:// or https://")
    for key, low, high in (("priority", -1000, 1000), ("resync_seconds", 1, 86400)):
        value = changes.get(key, low)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise SettingsError(f"{key}: a whole number within {low} .. {high}")
    if "sync" in changes and not isinstance(changes["sync"], bool):
        raise SettingsError("sync: true or false")
    cleaned = {k: v.strip() if isinstance(v, str) else v for k, v in changes.items()}
    if "url" in cleaned:
        cleaned["url"] = cleaned["url"].rstrip("/")
    return replace(base, **cleaned)


def save(settings: Settings) -> None:
    """Writes the file atomically, readable by its owner only (it holds the key)."""
    target = path()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".stablequeue-")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(asdict(settings), out, indent=2)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
