"""This ComfyUI's model files sent to the coordinator, and this ComfyUI as a server.

At start and whenever a model folder's listing changes (checked every few
seconds), every file of every model folder goes through `SyncInventory` with its
size, mtime and the hash when the cache has it (files are never hashed for a
sync). With an alias and URL set, this ComfyUI registers itself as a server.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from sq_comfy import settings as config
from sq_comfy.models import HashCache, model_folders

from stablequeue import StableQueueError
from stablequeue.apps import InventoryWatch, register_server
from stablequeue.dashboard.feed import unreachable
from stablequeue.v1 import common_pb2, models_pb2

TYPES = {
    "checkpoints": models_pb2.MODEL_TYPE_CHECKPOINT,
    "diffusion_models": models_pb2.MODEL_TYPE_DIFFUSION_MODEL,
    "unet": models_pb2.MODEL_TYPE_DIFFUSION_MODEL,
    "loras": models_pb2.MODEL_TYPE_LORA,
    "vae": models_pb2.MODEL_TYPE_VAE,
    "text_encoders": models_pb2.MODEL_TYPE_TEXT_ENCODER,
    "clip": models_pb2.MODEL_TYPE_TEXT_ENCODER,
    "embeddings": models_pb2.MODEL_TYPE_EMBEDDING,
    "upscale_models": models_pb2.MODEL_TYPE_UPSCALER,
    "controlnet": models_pb2.MODEL_TYPE_CONTROLNET,
}


def collect(cache: HashCache) -> list[models_pb2.InventoryFile]:
    """Every file of every model folder, named as this ComfyUI's loaders name it."""
    import folder_paths

    files: list[models_pb2.InventoryFile] = []
    seen: set[str] = set()
    for folder in model_folders():
        for name in folder_paths.get_filename_list(folder):
            path = folder_paths.get_full_path(folder, name)
            if not path or path in seen:
                continue
            seen.add(path)
            file = models_pb2.InventoryFile(
                path=path, backend_name=name, type=TYPES.get(folder, models_pb2.MODEL_TYPE_OTHER)
            )
            try:
                stat = os.stat(path)
            except OSError:
                continue
            file.size_bytes = stat.st_size
            modified = Timestamp()
            modified.FromNanoseconds(stat.st_mtime_ns)
            file.modified_at.CopyFrom(modified)
            sha = cache.known(path)
            if sha:
                file.hashes.sha256, file.hashes.autov2 = sha, sha[:10]
            files.append(file)
    return files


def signature() -> tuple[Any, ...]:
    import folder_paths

    return tuple((f, tuple(folder_paths.get_filename_list(f))) for f in model_folders())


def host_name(settings: config.Settings) -> str:
    return settings.alias or (os.uname().nodename if hasattr(os, "uname") else "comfyui")


def register(settings: config.Settings) -> str:
    if not settings.alias or not settings.url:
        return "not registered as a server: set this server's alias and URL"
    with settings.client() as client:
        return register_server(client, settings.alias, common_pb2.APP_KIND_COMFYUI, settings.url)


class Syncer(InventoryWatch):
    """At start, on a change of any model folder, when asked (`now()`), every
    `resync_seconds`, and at each check while the coordinator could not be reached."""

    def __init__(self, cache: HashCache, check_seconds: float = 5.0,
                 load: Callable[[], config.Settings] = config.load) -> None:  # fmt: skip
        super().__init__(self.once, signature, check_seconds, self._period)
        self.cache, self.load = cache, load
        self.failed = False

    def _period(self) -> float:
        return self.check_seconds if self.failed else float(self.load().resync_seconds)

    def once(self) -> str:
        settings = self.load()
        if not settings.sync:
            return "model sync is off"
        try:
            note = register(settings)
            with settings.client() as client:
                reply = client.sync_inventory(
                    host_name(settings), common_pb2.APP_KIND_COMFYUI, collect(self.cache)
                )
        except StableQueueError as e:
            self.failed = True
            return unreachable(settings.address or "SQ_ADDR", e)
        self.failed = False
        return f"sent {reply.files_received} model files, {reply.models_matched} known; {note}"
