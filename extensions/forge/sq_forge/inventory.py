"""This Forge's models, with the hashes it has cached, sent to the coordinator.

Checkpoints (`sd_models.checkpoints_list`), LoRAs (the built-in Lora extension's
`networks.available_networks`), VAEs (`sd_vae.vae_dict`) and embeddings (the
textual-inversion database) go through `SyncInventory` as one full snapshot: at
start, when the lists change (checked every few seconds, so a Refresh button
press is seen), and every N minutes. Every checkpoint and LoRA goes with its
SHA-256: from Forge's cache when Forge has hashed it, else hashed once by this
extension on a background thread (cached by size and mtime, never on Forge's
request path); the sync after the hashing finishes sends it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from sq_forge.options import Settings, current
from stablequeue import StableQueueError
from stablequeue.apps import InventoryWatch, register_server
from stablequeue.dashboard.feed import unreachable
from stablequeue.v1 import common_pb2, models_pb2

CHECK_SECONDS = 5.0
CHUNK = 1 << 20
log = logging.getLogger("stablequeue")


def cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stablequeue" / "forge-hashes.json"


class FileHashes:
    """Full-file SHA-256 of model files, computed once on a background thread and kept
    (by path, size and mtime) in a JSON file; `get` never reads a model file.

    Args:
        path: the cache file.
        on_hashed: called (on the hashing thread) when the files asked for are done.
    """

    def __init__(self, path: Path | None = None, on_hashed: Callable[[], None] = lambda: None):
        self.path = path or cache_file()
        self.on_hashed = on_hashed
        self._lock = threading.Lock()
        self._cache: dict[str, list[Any]] | None = None
        self._queue: queue.Queue[str] = queue.Queue()
        self._pending: set[str] = set()
        self._thread: threading.Thread | None = None

    def _load(self) -> dict[str, list[Any]]:
        if self._cache is None:
            try:
                self._cache = dict(json.loads(self.path.read_text()))
            except (OSError, ValueError, TypeError):
                self._cache = {}
        return self._cache

    def get(self, filename: str) -> str:
        """The file's SHA-256 if known for its current size and mtime; else "" and it is
        hashed in the background."""
        try:
            stat = os.stat(filename)
        except OSError:
            return ""
        with self._lock:
            known = self._load().get(filename)
            if known and known[0] == stat.st_size and known[1] == stat.st_mtime_ns:
                return str(known[2])
            if filename not in self._pending:
                self._pending.add(filename)
                self._queue.put(filename)
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="sq-hash", daemon=True)
                    self._thread.start()
        return ""

    def idle(self) -> bool:
        with self._lock:
            return not self._pending

    def _run(self) -> None:
        while True:
            try:
                filename = self._queue.get(timeout=1.0)
            except queue.Empty:
                return
            entry = self._hash(filename)
            with self._lock:
                if entry is not None:
                    self._load()[filename] = entry
                    self._save()
                self._pending.discard(filename)
                done = not self._pending
            if done:
                self.on_hashed()

    @staticmethod
    def _hash(filename: str) -> list[Any] | None:
        digest = hashlib.sha256()
        try:
            before = os.stat(filename)
            with open(filename, "rb") as f:
                while chunk := f.read(CHUNK):
                    digest.update(chunk)
            after = os.stat(filename)
        except OSError as e:
            log.warning("StableQueue: cannot hash %s: %s", filename, e)
            return None
        if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
            return None  # changed while read: hashed again at the next sync
        return [after.st_size, after.st_mtime_ns, digest.hexdigest()]

    def _save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(json.dumps(self._cache))
            os.replace(temporary, self.path)
        except OSError as e:
            log.warning("StableQueue: cannot keep model hashes in %s: %s", self.path, e)


HASHES = FileHashes()


def _cached_sha256(filename: str, title: str) -> str:
    try:
        from modules import hashes

        return (hashes.sha256_from_cache(filename, title) or "").lower()
    except (ImportError, AttributeError, OSError):
        return ""


def _file(
    path: str, name: str, kind: int, sha256: str = "", autov3: str = ""
) -> models_pb2.InventoryFile:
    file = models_pb2.InventoryFile(path=path, backend_name=name, type=kind)
    try:
        stat = os.stat(path)
        file.size_bytes = stat.st_size
        modified = Timestamp()
        modified.FromNanoseconds(stat.st_mtime_ns)
        file.modified_at.CopyFrom(modified)
    except OSError:
        pass
    if sha256:
        file.hashes.sha256 = sha256.lower()
        file.hashes.autov2 = sha256[:10].lower()
    if autov3:
        file.hashes.autov3 = autov3.lower()
    return file


def checkpoints() -> Iterator[models_pb2.InventoryFile]:
    from modules import sd_models

    for info in list(sd_models.checkpoints_list.values()):
        sha = (
            getattr(info, "sha256", None)
            or _cached_sha256(info.filename, f"checkpoint/{info.name}")
            or HASHES.get(info.filename)
        )
        yield _file(info.filename, info.title, models_pb2.MODEL_TYPE_CHECKPOINT, sha)


def loras() -> Iterator[models_pb2.InventoryFile]:
    networks = sys.modules.get("networks")  # Forge's/A1111's built-in Lora extension
    for name, network in list(getattr(networks, "available_networks", {}).items()):
        filename = str(getattr(network, "filename", ""))
        # Its cached "sha256" of a .safetensors is the addnet hash of the tensor data.
        cached = _cached_sha256(filename, f"lora/{name}")
        safetensors = filename.lower().endswith(".safetensors")
        sha = HASHES.get(filename) if safetensors or not cached else cached
        yield _file(
            filename,
            str(getattr(network, "alias", "") or name),
            models_pb2.MODEL_TYPE_LORA,
            sha,
            cached if safetensors else "",
        )


def vaes() -> Iterator[models_pb2.InventoryFile]:
    try:
        from modules import sd_vae
    except ImportError:
        return
    for name, filename in list(getattr(sd_vae, "vae_dict", {}).items()):
        yield _file(
            filename, name, models_pb2.MODEL_TYPE_VAE, _cached_sha256(filename, f"vae/{name}")
        )


def embeddings() -> Iterator[models_pb2.InventoryFile]:
    try:
        from modules import sd_hijack
    except ImportError:
        return
    database = getattr(sd_hijack.model_hijack, "embedding_db", None)
    for name, embedding in list(getattr(database, "word_embeddings", {}).items()):
        filename = str(getattr(embedding, "filename", "") or "")
        if filename:
            sha = str(getattr(embedding, "hash", "") or "")
            sha = sha if len(sha) == 64 else _cached_sha256(filename, f"textual_inversion/{name}")
            yield _file(filename, name, models_pb2.MODEL_TYPE_EMBEDDING, sha)


def collect() -> list[models_pb2.InventoryFile]:
    """Every model file this Forge lists, once each."""
    files: dict[str, models_pb2.InventoryFile] = {}
    for source in (checkpoints, loras, vaes, embeddings):
        for file in source():
            files.setdefault(f"{file.type}:{file.path}", file)
    return list(files.values())


def signature() -> tuple[Any, ...]:
    """Cheap to compute: changes when a list is refreshed with different files."""
    from modules import sd_models

    networks = sys.modules.get("networks")
    return (
        tuple(sd_models.checkpoints_list),
        tuple(getattr(networks, "available_networks", {})),
    )


def host_name(settings: Settings) -> str:
    return settings.alias or (os.uname().nodename if hasattr(os, "uname") else "forge")


def register(settings: Settings) -> str:
    """Registers (or updates) this Forge as a server when its API is on; returns a note."""
    from modules import shared

    if not settings.alias or not settings.public_url:
        return "not registered as a server: set this server's alias and URL"
    if not getattr(shared.cmd_opts, "api", False) and not getattr(
        shared.cmd_opts, "nowebui", False
    ):
        return "not registered as a server: start Forge with --api so jobs can run here"
    with settings.client() as client:
        return register_server(
            client, settings.alias, common_pb2.APP_KIND_FORGE, settings.public_url
        )


def sync(settings: Settings) -> models_pb2.SyncInventoryResponse:
    """Sends the full inventory now."""
    files = collect()
    with settings.client() as client:
        return client.sync_inventory(host_name(settings), common_pb2.APP_KIND_FORGE, files)


class Syncer(InventoryWatch):
    """Background sync: at start, on a list change, and every `sync_minutes`."""

    def __init__(self, check_seconds: float = CHECK_SECONDS) -> None:
        super().__init__(self.once, signature, check_seconds, lambda: current().sync_minutes * 60)
        HASHES.on_hashed = self.now  # send the new hashes once they are there

    def once(self) -> str:
        settings = current()
        if not settings.sync:
            return "model sync is off"
        try:
            note = register(settings)
            reply = sync(settings)
        except StableQueueError as e:
            return unreachable(settings.address, e)
        return (
            f"sent {reply.files_received} model files, {reply.models_matched} known by hash; "
            + note
        )
