"""Run by Forge/A1111 at start (launch_utils.run_extensions_installers).

Installs the light StableQueue SDK (grpcio + protobuf, any protobuf 3.20-7, so
the app's own pins are kept) into the app's Python. The SDK comes from
$STABLEQUEUE_SDK when set (a path, a wheel or a pip requirement), else from the
StableQueue checkout this extension lives in (a clone or a symlink of
`extensions/forge`), else from the package index.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

import launch

NEEDED = (0, 1)


def _installed() -> tuple[int, ...] | None:
    try:
        version = metadata.version("stablequeue")
    except metadata.PackageNotFoundError:
        return None
    return tuple(int(part) for part in version.split(".")[:2] if part.isdigit())


def source() -> str:
    explicit = os.environ.get("STABLEQUEUE_SDK", "").strip()
    if explicit:
        return explicit
    checkout = Path(__file__).resolve().parent.parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "clients" / "stablequeue").is_dir():
        return str(checkout)
    return "stablequeue"


def main() -> None:
    installed = _installed()
    if installed is not None and installed >= NEEDED:
        return
    where = source()
    launch.run_pip(f'install "{where}"', f"StableQueue SDK from {where}")


main()
