"""`modules.infotext_utils`: override settings and the send-to-tab bindings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

registered_param_bindings: list[Any] = []


def create_override_settings_dict(text_pairs: list[str] | None) -> dict[str, Any]:
    """`["CLIP skip: 2"]` -> `{"CLIP_stop_at_last_layers": 2}` (the UI's override box)."""
    names = {"CLIP skip": "CLIP_stop_at_last_layers", "Model": "sd_model_checkpoint"}
    result: dict[str, Any] = {}
    for pair in text_pairs or []:
        key, _, value = pair.partition(": ")
        name = names.get(key, key)
        result[name] = int(value) if value.isdigit() else value
    return result


@dataclass
class ParamBinding:
    paste_button: Any
    tabname: str
    source_text_component: Any = None
    source_image_component: Any = None
    source_tabname: str | None = None
    override_settings_component: Any = None
    paste_field_names: list[str] | None = None


def register_paste_params_button(binding: ParamBinding) -> None:
    registered_param_bindings.append(binding)


def connect_paste_params_buttons() -> None:
    """Forge wires each binding to its tab's fields; the stand-in records them only."""
