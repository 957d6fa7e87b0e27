"""`launch`: what extensions' install.py scripts call. Like Forge, run_pip runs pip
in the app's own Python (the interpreter running this)."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

pip_commands: list[tuple[str, str]] = []


def is_installed(package: str) -> bool:
    try:
        metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return False
    return True


def run_pip(command: str, desc: str | None = None, live: bool = False) -> str:
    pip_commands.append((command, desc or ""))
    done = subprocess.run(
        f'"{sys.executable}" -m pip {command} --prefer-binary --disable-pip-version-check',
        shell=True, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"Couldn't install {desc}.\n{done.stdout}\n{done.stderr}")
    return done.stdout
