"""Which adapter serves which kind of server."""

from __future__ import annotations

from coordinator.backends.base import Backend, ServerConfig
from coordinator.backends.comfyui import ComfyUIBackend
from coordinator.backends.forge import ForgeBackend
from coordinator.backends.sdcpp import SdCppBackend

# Kinds with an adapter; registering any other kind is refused until it has one.
SUPPORTED_KINDS = ("forge", "comfyui", "sdcpp")


def make_backend(config: ServerConfig, timeout: float = 600.0) -> Backend:
    """The adapter for `config.kind`.

    Raises:
        ValueError: an unknown kind (the registry validates kinds, so this is a bug).
    """
    if config.kind == "forge":
        return ForgeBackend(config, timeout)
    if config.kind == "comfyui":
        return ComfyUIBackend(config, timeout)
    if config.kind == "sdcpp":
        return SdCppBackend(config, timeout)
    raise ValueError(f"no adapter for server kind {config.kind!r}")
