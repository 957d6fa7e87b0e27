"""`modules.hashes`: the sha256 cache Forge keeps in cache.json (never hashes here)."""

from __future__ import annotations

import os

cache: dict[str, dict[str, object]] = {}


def sha256_from_cache(filename: str, title: str, use_addnet_hash: bool = False) -> str | None:
    entry = cache.get(title)
    if not entry:
        return None
    try:
        if entry.get("mtime") != os.path.getmtime(filename):
            return None
    except OSError:
        return None
    return str(entry["sha256"])
