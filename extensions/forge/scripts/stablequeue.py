"""Registers StableQueue with Forge/A1111 (loaded by `modules.scripts` at start)."""

from __future__ import annotations

from typing import Any

import gradio as gr
from modules import script_callbacks, scripts, shared

try:
    from sq_forge import buttons, options
except ImportError as e:  # the SDK is missing: install.py could not install it
    print(f"StableQueue: not loaded ({e}); restart Forge to let install.py install the SDK")
    buttons = options = None  # type: ignore[assignment]


class StableQueueScript(scripts.Script):
    """Adds the StableQueue options under the generation parameters (no arguments)."""

    sorting_priority = 100

    def title(self) -> str:
        return "StableQueue"

    def show(self, is_img2img: bool) -> Any:
        return scripts.AlwaysVisible if buttons is not None else False

    def ui(self, is_img2img: bool) -> list[Any]:
        buttons.controls("img2img" if is_img2img else "txt2img")
        return []


def _settings() -> None:
    options.register(shared, gr)


def _started(demo: Any, app: Any) -> None:
    buttons.SYNCER.start()
    buttons.SYNCER.now()


if buttons is not None:
    script_callbacks.on_after_component(buttons.on_component)
    script_callbacks.on_ui_settings(_settings)
    script_callbacks.on_ui_tabs(buttons.ui_tabs)
    script_callbacks.on_app_started(_started)
