"""Starts the stand-in app: loads scripts (built-in, then extensions), runs the
settings and UI callbacks and serves the page, in Forge's order."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def load(extensions: list[Path], models: Path, loras: Path) -> None:
    """Imports the app's modules and every extension's scripts."""
    from modules import script_callbacks, scripts, sd_models

    sys.path.insert(0, str(HERE / "extensions-builtin" / "lora"))
    networks = importlib.import_module("networks")
    sd_models.list_models(str(models))
    networks.list_available_networks(str(loras))
    script_callbacks.clear_callbacks()
    folders = [HERE / "modules" / "processing_scripts"]
    folders += [HERE / "extensions-builtin" / "controlnet" / "scripts"]
    folders += [e / "scripts" for e in extensions]
    scripts.load_scripts(folders)


def build() -> Any:
    from modules import script_callbacks, ui

    script_callbacks.ui_settings_callback()
    ui.install_component_hooks()
    try:
        return ui.create_ui()
    finally:
        ui.remove_component_hooks()


def serve(demo: Any, port: int) -> None:
    from modules import script_callbacks

    demo.queue()
    app, _, _ = demo.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True
    )
    script_callbacks.app_started_callback(demo, app)
