"""Run by Forge/A1111 at start (launch_utils.run_extensions_installers).

Installs the light StableQueue SDK (`stablequeue-sdk`: grpcio + protobuf, none of the
coordinator's packages) into the app's Python, without changing any version the app
has installed: every installed distribution is passed to pip as a constraint at its
current version, so pip only adds what is missing (grpcio) or fails saying why.

The SDK comes from $STABLEQUEUE_SDK when set (a StableQueue checkout, its `clients`
folder, a wheel or a pip requirement), else from the StableQueue checkout this
extension lives in (a clone or a symlink of `extensions/forge`), else from the
package index. A folder is built from a temporary copy: nothing is written into it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

import launch

DIST = "stablequeue-sdk"
NEEDED = (0, 1)


def installed() -> tuple[int, ...] | None:
    try:
        version = metadata.version(DIST)
    except metadata.PackageNotFoundError:
        return None
    return tuple(int(part) for part in version.split(".")[:2] if part.isdigit())


def project(folder: Path) -> Path | None:
    """The SDK's project folder in `folder` (a checkout or its `clients` folder)."""
    for candidate in (folder / "clients", folder):
        if (candidate / "pyproject.toml").is_file() and (candidate / "stablequeue").is_dir():
            return candidate
    return None


def source() -> str:
    explicit = os.environ.get("STABLEQUEUE_SDK", "").strip()
    if explicit:
        found = project(Path(explicit)) if Path(explicit).is_dir() else None
        return str(found or explicit)
    found = project(Path(__file__).resolve().parent.parent.parent)
    return str(found) if found else DIST


def constraints() -> str:
    """Every installed distribution at its installed version, one per line."""
    pins: dict[str, str] = {}
    for dist in metadata.distributions():
        name, version = dist.metadata["Name"], dist.version
        if name and version:
            pins.setdefault(name.lower().replace("_", "-"), version)
    return "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


def main() -> None:
    if (installed() or (0,)) >= NEEDED:
        return
    where = source()
    with tempfile.TemporaryDirectory(prefix="stablequeue-sdk-") as tmp:
        target = where
        if Path(where).is_dir():
            target = str(Path(tmp) / "sdk")
            shutil.copytree(
                where, target, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
            )
        pins = Path(tmp) / "app-pins.txt"
        pins.write_text(constraints())
        launch.run_pip(f'install "{target}" --constraint "{pins}"', f"StableQueue SDK from {where}")


main()
