"""Who is calling, and what each scope may do."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from enum import StrEnum

from stablequeue_coordinator.errors import PermissionDenied


class Scope(StrEnum):
    ADMIN = "admin"
    SUBMIT = "submit"
    NODE = "node"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. `key_id` is "local" for a trusted loopback caller."""

    key_id: str
    scope: Scope
    name: str = ""
    node: str = ""  # a node key's node, once bound

    @property
    def is_admin(self) -> bool:
        return self.scope is Scope.ADMIN


LOCAL = Principal(key_id="local", scope=Scope.ADMIN, name="loopback")

_current: contextvars.ContextVar[Principal] = contextvars.ContextVar("sq_principal")

USER_SCOPES = frozenset({Scope.ADMIN, Scope.SUBMIT})
ADMIN_ONLY = frozenset({Scope.ADMIN})
NODE_SCOPES = frozenset({Scope.ADMIN, Scope.NODE})

# Methods not listed here take the default of their service below.
METHOD_SCOPES: dict[str, frozenset[Scope]] = {
    "/stablequeue.v1.QueueService/PauseQueue": ADMIN_ONLY,
    "/stablequeue.v1.QueueService/ResumeQueue": ADMIN_ONLY,
    "/stablequeue.v1.QueueService/CreateApiKey": ADMIN_ONLY,
    "/stablequeue.v1.QueueService/ListApiKeys": ADMIN_ONLY,
    "/stablequeue.v1.QueueService/RevokeApiKey": ADMIN_ONLY,
    "/stablequeue.v1.ProcessesService/AgentSession": NODE_SCOPES,
    "/stablequeue.v1.ModelsService/SyncInventory": NODE_SCOPES,
    "/stablequeue.v1.ModelsService/ScanLibrary": ADMIN_ONLY,
    "/stablequeue.v1.ModelsService/RefreshMetadata": ADMIN_ONLY,
    "/stablequeue.v1.ModelsService/DeleteModel": ADMIN_ONLY,
    # Downloads write to the model folders.
    "/stablequeue.v1.ModelsService/StartDownload": ADMIN_ONLY,
    "/stablequeue.v1.ModelsService/CancelDownload": ADMIN_ONLY,
    # Nodes receive library models this way.
    "/stablequeue.v1.ModelsService/ReadModelFile": NODE_SCOPES,
}
SERVICE_SCOPES: dict[str, frozenset[Scope]] = {
    "stablequeue.v1.QueueService": USER_SCOPES,
    "stablequeue.v1.ModelsService": USER_SCOPES,
    "stablequeue.v1.ProcessesService": ADMIN_ONLY,
}


def required_scopes(method: str) -> frozenset[Scope]:
    """The scopes allowed to call a full gRPC method name (admin only when unknown)."""
    if method in METHOD_SCOPES:
        return METHOD_SCOPES[method]
    service = method.lstrip("/").split("/", 1)[0]
    return SERVICE_SCOPES.get(service, ADMIN_ONLY)


def authorize(principal: Principal, method: str) -> None:
    """Raises PermissionDenied when the principal's scope may not call `method`."""
    allowed = required_scopes(method)
    if principal.scope not in allowed:
        needed = " or ".join(sorted(s.value for s in allowed))
        raise PermissionDenied(
            f"key {principal.key_id} has scope {principal.scope.value}; "
            f"{method.rsplit('/', 1)[-1]} needs {needed}"
        )


def set_current(principal: Principal) -> contextvars.Token[Principal]:
    return _current.set(principal)


def current() -> Principal:
    """The caller of the RPC being handled (set by the API interceptor)."""
    return _current.get()
