"""Backend kinds: the one registry every other place derives from.

A kind's name is its contract enum's (`forge` is `APP_KIND_FORGE`); a model on a node
agent is the kind `node`, which runs (and shows as) `sdcpp`. Adding a kind is its
adapter, its fake for the tests, one entry here and the enum value in `common.proto`.
Adapters are named, not imported, here: they import the dispatch policy and the
outputs, which read this registry.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
    # The app whose jobs it runs, when not its own name (a node's model runs sd-server's).
    runs: str = ""
    # RegisterServer accepts it; the other kinds' places come from elsewhere (a node's
    # models from its agent's session) and are never stored as server rows.
    registrable: bool = True
    # Where the library learns its files: "probe" (its health probe lists them),
    # "sync" (SyncInventory from an in-app extension or an agent).
    inventory: tuple[str, ...] = ()
    # Coordinator services its adapter takes as keyword arguments, besides
    # (config, timeout).
    services: tuple[str, ...] = ()

    @property
    def app_name(self) -> str:
        return self.runs or self.name

    @property
    def app(self) -> int:
        """The contract's enum value (`common_pb2.AppKind`) of the jobs it runs."""
        return APPS[self.app_name]

    def make_adapter(
        self, config: ServerConfig, timeout: float, services: Mapping[str, Any] | None = None
    ) -> Backend:
        module, _, cls = self.adapter.partition(":")
        extra = {name: (services or {}).get(name) for name in self.services}
        factory = getattr(importlib.import_module(module), cls)
        return factory(config, timeout, **extra)  # type: ignore[no-any-return]


KINDS: dict[str, BackendKind] = {
    kind.name: kind
    for kind in (
        BackendKind(
            "forge", "Forge / A1111", "stablequeue_coordinator.backends.forge:ForgeBackend",
            inventory=("sync", "probe"),
        ),
        BackendKind(
            "comfyui", "ComfyUI", "stablequeue_coordinator.backends.comfyui:ComfyUIBackend",
            inventory=("sync", "probe"),
        ),
        BackendKind(
            "sdcpp", "stable-diffusion.cpp server",
            "stablequeue_coordinator.backends.sdcpp:SdCppBackend", fixed_model=True,
            inventory=("probe",),
        ),
        BackendKind(
            "node", "model on a node agent", "stablequeue_coordinator.nodes.backend:NodeBackend",
            fixed_model=True, runs="sdcpp", registrable=False, inventory=("sync",),
            services=("nodes", "downloads"),
        ),
    )
}  # fmt: skip
# The kinds RegisterServer accepts, each its own contract enum value.
SERVER_KINDS: dict[str, BackendKind] = {n: k for n, k in KINDS.items() if k.registrable}

# What a job's app may run on: the kinds that run it, or any kind for "any".
KINDS_FOR_APP: dict[str, tuple[str, ...]] = {
    **{app: tuple(n for n, k in KINDS.items() if k.app_name == app) for app in SERVER_KINDS},
    ANY: tuple(KINDS),
}
FIXED_MODEL_KINDS: tuple[str, ...] = tuple(name for name, k in KINDS.items() if k.fixed_model)

# A server's kind, and a job's app (a kind or "any"), <-> the contract enum. A kind
# that runs another's jobs shows as that one.
KIND_TO_PB: dict[str, int] = {name: kind.app for name, kind in KINDS.items()}
KIND_FROM_PB: dict[int, str] = {kind.app: name for name, kind in SERVER_KINDS.items()}
APP_TO_PB: dict[str, int] = {**{n: k.app for n, k in SERVER_KINDS.items()}, ANY: APPS[ANY]}
APP_FROM_PB: dict[int, str] = {value: name for name, value in APP_TO_PB.items()}
