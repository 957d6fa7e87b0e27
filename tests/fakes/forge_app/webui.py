"""Starts the stand-in app: loads scripts (built-in, then extensions), runs the
settings and UI callbacks and serves the page, in Forge's order."""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def page_head(extensions: list[Path]) -> str:
    """What Forge adds to the page for extensions: their javascript/*.js and style.css
    (with `gradioApp()`, from Forge's script.js)."""
    parts = ["<script>function gradioApp() { return document; }</script>"]
    for extension in extensions:
        for script in sorted((extension / "javascript").glob("*.js")):
            parts.append(f"<script>{script.read_text()}</script>")
        style = extension / "style.css"
        if style.is_file():
            parts.append(f"<style>{style.read_text()}</style>")
    return "\n".join(parts)


def load(extensions: list[Path], models: Path, loras: Path) -> None:
    """Imports the app's modules and every extension's scripts."""
    from modules import script_callbacks, scripts, sd_models, ui

    sys.path.insert(0, str(HERE / "extensions-builtin" / "lora"))
    networks = importlib.import_module("networks")
    sd_models.list_models(str(models))
    networks.list_available_networks(str(loras))
    script_callbacks.clear_callbacks()
    folders = [HERE / "modules" / "processing_scripts"]
    folders += [HERE / "extensions-builtin" / "controlnet" / "scripts"]
    folders += [e / "scripts" for e in extensions]
    scripts.load_scripts(folders)
    ui.page_head = page_head(extensions)


def build() -> Any:
    from modules import script_callbacks, ui

    script_callbacks.ui_settings_callback()
    ui.install_component_hooks()
    try:
        return ui.create_ui()
    finally:
        ui.remove_component_hooks()


def serve(demo: Any, port: int) -> None:
    from modules import script_callbacks, ui

    demo.queue()
    options: dict[str, Any] = {}
    if "head" in inspect.signature(demo.launch).parameters:  # gradio 5+: set at launch
        options["head"] = ui.page_head
    app, _, _ = demo.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
        **options,
    )  # fmt: skip
    script_callbacks.app_started_callback(demo, app)
