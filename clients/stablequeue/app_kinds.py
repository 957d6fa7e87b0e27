"""App kinds by name, derived from the contract's `AppKind` enum.

`"forge"` is `APP_KIND_FORGE`, `"any"` is `APP_KIND_ANY`: a kind added to the enum is
known here (and to the CLI's `--app`) without another edit.
"""

from __future__ import annotations

from stablequeue.v1 import common_pb2

_PREFIX = "APP_KIND_"

# Name -> enum value, every kind but UNSPECIFIED ("any" included).
APPS: dict[str, int] = {
    name.removeprefix(_PREFIX).lower(): value
    for name, value in common_pb2.AppKind.items()
    if value != common_pb2.APP_KIND_UNSPECIFIED
}
APP_NAMES: dict[int, str] = {value: name for name, value in APPS.items()}
