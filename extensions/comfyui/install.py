"""Installs the light StableQueue SDK into ComfyUI's Python (ComfyUI-Manager runs this
after installing a custom node; by hand: `<ComfyUI's python> install.py`).

From the StableQueue checkout this folder belongs to (a clone, or a symlink of
`extensions/comfyui`), through that checkout's `clients/install.py`: ComfyUI's installed
versions are kept and nothing is written into the checkout. `$STABLEQUEUE_SDK` may
name another checkout or its `clients` folder.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path


def installer() -> Path | None:
    explicit = os.environ.get("STABLEQUEUE_SDK", "").strip()
    roots = [Path(explicit)] if explicit else []
    roots.append(Path(__file__).resolve().parent.parent.parent)
    for root in roots:
        for candidate in (root / "clients" / "install.py", root / "install.py"):
            if candidate.is_file() and (candidate.parent / "stablequeue").is_dir():
                return candidate
    return None


if __name__ == "__main__":
    found = installer()
    if found is None:
        sys.exit(
            "StableQueue: no StableQueue checkout found beside this folder; set "
            "STABLEQUEUE_SDK to one (or its clients folder) and run this again"
        )
    sys.argv = [str(found)]
    runpy.run_path(str(found), run_name="__main__")
