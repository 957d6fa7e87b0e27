"""The model files a workflow names, and their SHA-256 (computed once per file).

Every string input of the API-format prompt is looked up in ComfyUI's model folders
(`folder_paths`), so checkpoint, LoRA, VAE, CLIP, UNet loaders and any custom node
naming a model file are found. Hashes are cached by path with size and mtime in a
JSON file, and computed on one background thread (never on the event loop).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("stablequeue")
# Most likely first: a name found in several folders is taken from the first.
PREFERRED = ["checkpoints", "diffusion_models", "loras", "vae", "text_encoders",
             "controlnet", "clip_vision", "upscale_models", "embeddings"]  # fmt: skip
NOT_MODELS = {"custom_nodes", "configs"}
CHUNK = 8 << 20


@dataclass(frozen=True)
class Reference:
    folder: str
    name: str
    path: str


def model_folders() -> list[str]:
    import folder_paths

    known = [f for f in folder_paths.folder_names_and_paths if f not in NOT_MODELS]
    return [f for f in PREFERRED if f in known] + [f for f in known if f not in PREFERRED]


def references(prompt: dict[str, Any]) -> list[Reference]:
    """Each model file the prompt's inputs name, once, in prompt order."""
    import folder_paths

    folders = model_folders()
    found: dict[str, Reference] = {}
    for node in prompt.values():
        inputs = node.get("inputs", {}) if isinstance(node, dict) else {}
        for value in inputs.values():
            if not isinstance(value, str) or not value or value in found or len(value) > 500:
                continue
            for folder in folders:
                path = folder_paths.get_full_path(folder, value)
                if path:
                    found[value] = Reference(folder, value, path)
                    break
    return list(found.values())


def sha256_file(path: str, on_bytes: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            if on_bytes:
                on_bytes(len(chunk))
    return digest.hexdigest()


class HashCache:
    """path -> SHA-256, valid while the file's size and mtime are unchanged."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sq-hash")
        try:
            self._entries: dict[str, dict[str, Any]] = json.loads(file.read_text())
        except (OSError, ValueError):
            self._entries = {}
        self.hashing = ""  # the file being hashed now, for progress
        # Called after new hashes are stored (the inventory sync sends them at once).
        self.on_hashed: Callable[[], None] | None = None

    def known(self, path: str) -> str | None:
        try:
            stat = os.stat(path)
        except OSError:
            return None
        with self._lock:
            entry = self._entries.get(path)
        if entry and entry["size"] == stat.st_size and entry["mtime_ns"] == stat.st_mtime_ns:
            return str(entry["sha256"])
        return None

    def hash_all(self, paths: list[str]) -> dict[str, str]:
        """Hashes what is not cached yet (blocking); returns path -> SHA-256."""
        result: dict[str, str] = {}
        changed = False
        for path in paths:
            sha = self.known(path)
            if sha is None:
                stat = os.stat(path)
                self.hashing = path
                log.info("StableQueue: hashing %s (%.1f GB, once)", path, stat.st_size / 1e9)
                sha = sha256_file(path)
                with self._lock:
                    self._entries[path] = {
                        "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha,
                    }  # fmt: skip
                changed = True
            result[path] = sha
        self.hashing = ""
        if changed:
            self._save()
            if self.on_hashed is not None:
                self.on_hashed()
        return result

    async def ensure(self, paths: list[str]) -> dict[str, str]:
        """`hash_all` on the hashing thread, awaited."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.hash_all, paths)

    def _save(self) -> None:
        with self._lock:
            data = json.dumps(self._entries)
        self.file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.file.parent, prefix=".sq-hashes-")
        with os.fdopen(fd, "w") as out:
            out.write(data)
        os.replace(tmp, self.file)
