"""Which adapter serves which kind of server (the kinds themselves: `coordinator.kinds`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stablequeue_coordinator.backends.base import Backend, ServerConfig
from stablequeue_coordinator.kinds import KINDS


def make_backend(
    config: ServerConfig, timeout: float = 600.0, services: Mapping[str, Any] | None = None
) -> Backend:
    """The adapter for `config.kind`; `services` are the coordinator services some
    adapters take (a node's model: the node sessions and downloads).

    Raises:
        ValueError: an unknown kind (the registry validates kinds, so this is a bug).
    """
    kind = KINDS.get(config.kind)
    if kind is None:
        raise ValueError(f"no adapter for server kind {config.kind!r}")
    return kind.make_adapter(config, timeout, services)
