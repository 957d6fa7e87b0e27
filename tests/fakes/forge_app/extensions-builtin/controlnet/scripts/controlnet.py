"""An always-on script in ControlNet's shape: a unit object carrying an image array."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np
from modules import scripts

CALLS: list[str] = []


@dataclass
class ControlNetUnit:
    enabled: bool = False
    module: str = "canny"
    model: str = "control_canny [e3fe7712]"
    weight: float = 1.0
    image: Any = None


class ControlNetScript(scripts.Script):
    def title(self) -> str:
        return "ControlNet"

    def show(self, is_img2img: bool) -> Any:
        return scripts.AlwaysVisible

    def ui(self, is_img2img: bool) -> list[Any]:
        tab = "img2img" if is_img2img else "txt2img"
        enabled = gr.Checkbox(label="Enable", value=False, elem_id=f"{tab}_cn_enable")
        weight = gr.Slider(label="Control weight", minimum=0, maximum=2, value=1.0,
                           elem_id=f"{tab}_cn_weight")  # fmt: skip
        unit = gr.State(ControlNetUnit(image=np.full((8, 8, 3), 200, dtype=np.uint8)))
        return [enabled, weight, unit]

    def setup(self, p: Any, *args: Any) -> None:
        CALLS.append("setup")

    def process(self, p: Any, *args: Any) -> None:
        CALLS.append("process")
