"""Installs this folder's light SDK (`stablequeue-sdk`) into the Python that runs this
script — an app's own Python, e.g. ComfyUI's — without changing anything it has:

    /path/to/ComfyUI/python /path/to/stablequeue/clients/install.py

Every distribution already installed is passed to pip as a constraint at its installed
version, so pip only adds what is missing (grpcio, protobuf) or fails saying which pin
stands in the way. The project is built from a temporary copy: nothing (no `build/`,
no `*.egg-info`) is written into this folder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent


def constraints() -> str:
    """Every installed distribution at its installed version, one per line."""
    pins: dict[str, str] = {}
    for dist in metadata.distributions():
        name, version = dist.metadata["Name"], dist.version
        if name and version:
            pins.setdefault(name.lower().replace("_", "-"), version)
    return "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


def main(project: Path = HERE) -> int:
    with tempfile.TemporaryDirectory(prefix="stablequeue-sdk-") as tmp:
        copy = Path(tmp) / "sdk"
        shutil.copytree(
            project, copy, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
        )
        pins = Path(tmp) / "app-pins.txt"
        pins.write_text(constraints())
        command = [sys.executable, "-m", "pip", "install", str(copy), "--constraint", str(pins)]
        print(f"StableQueue: installing the SDK from {project} into {sys.executable}", flush=True)
        return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main())
