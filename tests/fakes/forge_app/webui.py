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


def _inject_into_template(head: str) -> None:
    """A1111 (gradio 3) adds its scripts by rewriting gradio's page template response."""
    import gradio.routes

    original = gradio.routes.templates.TemplateResponse

    def template_response(*args: Any, **kwargs: Any) -> Any:
        response = original(*args, **kwargs)
        response.body = response.body.replace(b"</head>", f"{head}</head>".encode())
        response.init_headers()
        return response

    gradio.routes.templates.TemplateResponse = template_response


def serve(demo: Any, port: int) -> None:
    from modules import script_callbacks, ui

    demo.queue(64)  # as Forge's and A1111's webui.py call it
    options: dict[str, Any] = {}
    if "head" in inspect.signature(demo.launch).parameters:  # gradio 5+: set at launch
        options["head"] = ui.page_head
    elif "head" not in inspect.signature(type(demo)).parameters:
        _inject_into_template(ui.page_head)  # gradio 3: as A1111's reload_javascript()
    app, _, _ = demo.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
        **options,
    )  # fmt: skip
    script_callbacks.app_started_callback(demo, app)
