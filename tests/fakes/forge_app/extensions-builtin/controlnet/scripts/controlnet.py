"""An always-on script in the shape of Forge's built-in ControlNet (sd_forge_controlnet).

Like the real one (PROTOCOLS.md §12): three units, each a `gr.State` holding a unit
object (with an image array) that its UI components update, and each unit binds a
click handler of its own to Generate — during the scripts' UI, so *before* Forge
wires its own generation call to the same button.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np
from modules import scripts

CALLS: list[str] = []
UNITS = 3


@dataclass
class ControlNetUnit:
    enabled: bool = False
    module: str = "canny"
    model: str = "control_canny [e3fe7712]"
    weight: float = 1.0
    image: Any = None


class UiControlNetUnit(ControlNetUnit):
    """What the real extension binds to Generate: the class itself, called with the
    unit's component values, returning the unit for its State."""

    def __init__(self, enabled: bool, weight: float, *rest: Any) -> None:
        super().__init__(enabled=bool(enabled), weight=float(weight))
        self.image = np.full((8, 8, 3), 200, dtype=np.uint8)


class ControlNetScript(scripts.Script):
    def __init__(self) -> None:
        self.generate: Any = None

    def title(self) -> str:
        return "ControlNet"

    def show(self, is_img2img: bool) -> Any:
        return scripts.AlwaysVisible

    def after_component(self, component: Any, **kwargs: Any) -> None:
        tab = "img2img" if self.is_img2img else "txt2img"
        if kwargs.get("elem_id") == f"{tab}_generate":
            self.generate = component

    def ui(self, is_img2img: bool) -> list[Any]:
        tab = "img2img" if is_img2img else "txt2img"
        units = []
        for n in range(UNITS):
            with gr.Accordion(f"ControlNet Unit {n}", open=False):
                enabled = gr.Checkbox(label="Enable", value=False, elem_id=f"{tab}_cn_enable_{n}")
                weight = gr.Slider(label="Control weight", minimum=0, maximum=2, value=1.0,
                                   elem_id=f"{tab}_cn_weight_{n}")  # fmt: skip
                extra = [gr.Number(value=0, visible=False) for _ in range(22)]
            unit = gr.State(ControlNetUnit(image=np.full((8, 8, 3), 200, dtype=np.uint8)))
            inputs = [enabled, weight, *extra]  # 24 inputs, as the real units have
            for component in (enabled, weight):
                component.change(fn=UiControlNetUnit, inputs=inputs, outputs=unit)
            if self.generate is not None:
                self.generate.click(fn=UiControlNetUnit, inputs=inputs, outputs=unit, queue=False)
            units.append(unit)
        return units

    def setup(self, p: Any, *args: Any) -> None:
        CALLS.append("setup")

    def process(self, p: Any, *args: Any) -> None:
        CALLS.append("process")
