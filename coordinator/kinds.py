"""Backend kinds: the one registry every other place derives from.

A kind's name is its contract enum's (`forge` is `APP_KIND_FORGE`). Adding a kind is
its adapter, its fake for the tests, one entry here and the enum value in
`common.proto`. Adapters are named, not imported, here: they import the dispatch
policy and the outputs, which read this registry.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stablequeue.app_kinds import APPS

if TYPE_CHECKING:
    from stablequeue_coordinator.backends.base import Backend, ServerConfig

ANY = "any"  # a job's app when any kind may run it


@dataclass(frozen=True)
class BackendKind:
    """One kind of backend server."""

    name: str
    label: str
    adapter: str  # "module:Class" of its adapter
    # Loads one model when started and cannot switch (a job for another model never
    # goes there).
    fixed_model: bool = False

    @property
    def app(self) -> int:
        """The contract's enum value (`common_pb2.AppKind`)."""
        return APPS[self.name]

    def make_adapter(self, config: ServerConfig, timeout: float) -> Backend:
        module, _, cls = self.adapter.partition(":")
        return getattr(importlib.import_module(module), cls)(config, timeout)  # type: ignore[no-any-return]


KINDS: dict[str, BackendKind] = {
    kind.name: kind
    for kind in (
        BackendKind(
            "forge", "Forge / A1111", "stablequeue_coordinator.backends.forge:ForgeBackend"
        ),
        BackendKind(
            "comfyui", "ComfyUI", "stablequeue_coordinator.backends.comfyui:ComfyUIBackend"
        ),
        BackendKind(
            "sdcpp",
            "stable-diffusion.cpp server",
            "stablequeue_coordinator.backends.sdcpp:SdCppBackend",
            fixed_model=True,
        ),
    )
}

# What a job's app may run on: its own kind, or any kind for "any".
KINDS_FOR_APP: dict[str, tuple[str, ...]] = {
    **{name: (name,) for name in KINDS},
    ANY: tuple(KINDS),
}
FIXED_MODEL_KINDS: tuple[str, ...] = tuple(name for name, k in KINDS.items() if k.fixed_model)

# A server's kind, and a job's app (a kind or "any"), <-> the contract enum.
KIND_TO_PB: dict[str, int] = {name: kind.app for name, kind in KINDS.items()}
KIND_FROM_PB: dict[int, str] = {value: name for name, value in KIND_TO_PB.items()}
APP_TO_PB: dict[str, int] = {**KIND_TO_PB, ANY: APPS[ANY]}
APP_FROM_PB: dict[int, str] = {value: name for name, value in APP_TO_PB.items()}
