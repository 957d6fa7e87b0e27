"""This Forge's models, with the hashes it has cached, sent to the coordinator.

Checkpoints (`sd_models.checkpoints_list`), LoRAs (the built-in Lora extension's
`networks.available_networks`), VAEs (`sd_vae.vae_dict`) and embeddings (the
textual-inversion database) go through `SyncInventory` as one full snapshot: at
start, when the lists change (checked every few seconds, so a Refresh button
press is seen), and every N minutes. Hashes are only read from Forge's cache —
never computed here, so a sync never reads a 7 GB file.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from sq_forge.options import Settings, current
from stablequeue import StableQueueError
from stablequeue.apps import InventoryWatch, register_server
from stablequeue.dashboard.feed import unreachable
from stablequeue.v1 import common_pb2, models_pb2

CHECK_SECONDS = 5.0


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
        sha = getattr(info, "sha256", None) or _cached_sha256(
            info.filename, f"checkpoint/{info.name}"
        )
        yield _file(info.filename, info.title, models_pb2.MODEL_TYPE_CHECKPOINT, sha)


def loras() -> Iterator[models_pb2.InventoryFile]:
    networks = sys.modules.get("networks")  # Forge's/A1111's built-in Lora extension
    for name, network in list(getattr(networks, "available_networks", {}).items()):
        filename = str(getattr(network, "filename", ""))
        # Its cached "sha256" of a .safetensors is the addnet hash of the tensor data.
        cached = _cached_sha256(filename, f"lora/{name}")
        safetensors = filename.lower().endswith(".safetensors")
        yield _file(
            filename,
            str(getattr(network, "alias", "") or name),
            models_pb2.MODEL_TYPE_LORA,
            "" if safetensors else cached,
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
