"""StableQueue for ComfyUI: "Queue in StableQueue" for any workflow, a queue sidebar,
and this ComfyUI's models sent to the coordinator.

Copy or clone into ComfyUI's `custom_nodes/`; `requirements.txt` installs the light
StableQueue SDK. No nodes of its own: routes under /stablequeue/ and a frontend
extension (web/).
"""

from __future__ import annotations

import sys
from pathlib import Path

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
WEB_DIRECTORY = "./web"
__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]

_here = Path(__file__).resolve().parent
if str(_here) not in sys.path:
    sys.path.insert(0, str(_here))  # our sq_comfy package, imported by its own name

try:
    from server import PromptServer
    from sq_comfy.routes import setup

    EXTENSION = setup(PromptServer.instance)
except ImportError as e:  # the SDK is missing
    print(f"StableQueue: not loaded ({e}); pip install -r requirements.txt into ComfyUI's Python")
