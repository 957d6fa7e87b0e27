"""This ComfyUI's model files sent to the coordinator, and this ComfyUI as a server.

At start and whenever a model folder's listing changes (checked every few
seconds), every file of every model folder goes through `SyncInventory` with its
size, mtime and the hash when the cache has it (files are never hashed for a
sync). With an alias and URL set, this ComfyUI registers itself as a server.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sq_comfy import settings as config
from sq_comfy.models import HashCache, model_folders

from stablequeue import StableQueueError
from stablequeue.dashboard.feed import unreachable
from stablequeue.v1 import common_pb2, models_pb2, processes_pb2

log = logging.getLogger("stablequeue")
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
        request = processes_pb2.RegisterServerRequest(
            alias=settings.alias, kind=common_pb2.APP_KIND_COMFYUI, base_url=settings.url
        )
        try:
            client.call("RegisterServer", request, "processes")
            return f"registered as server {settings.alias}"
        except StableQueueError as e:
            if e.code != grpc.StatusCode.ALREADY_EXISTS:
                raise
        update = processes_pb2.UpdateServerRequest(alias=settings.alias, base_url=settings.url)
        client.call("UpdateServer", update, "processes")
        return f"server {settings.alias} updated"


class Syncer:
    """At start, on a change of any model folder, and when asked (`now()`)."""

    def __init__(self, cache: HashCache, check_seconds: float = 5.0,
                 load: Callable[[], config.Settings] = config.load) -> None:  # fmt: skip
        self.cache, self.check_seconds, self.load = cache, check_seconds, load
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
        self._wake.set()

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
            return unreachable(settings.address or "SQ_ADDR", e)
        return f"sent {reply.files_received} model files, {reply.models_matched} known; {note}"

    def _run(self) -> None:
        seen: tuple[Any, ...] | None = None
        while not self._stop.is_set():
            try:
                now = signature()
            except OSError:
                now = seen
            if now != seen or self._wake.is_set():
                self._wake.clear()
                seen = now
                self.last = self.once()
                log.info("StableQueue: %s", self.last)
            self._wake.wait(self.check_seconds)
