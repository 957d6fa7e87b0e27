"""Forge's built-in Sampler script: sampler, scheduler and steps, applied in setup()."""

from __future__ import annotations

from typing import Any

import gradio as gr

from modules import scripts


class ScriptSampler(scripts.Script):
    sorting_priority = 1

    def title(self) -> str:
        return "Sampler"

    def show(self, is_img2img: bool) -> Any:
        return scripts.AlwaysVisible

    def ui(self, is_img2img: bool) -> list[Any]:
        tab = "img2img" if is_img2img else "txt2img"
        sampler = gr.Dropdown(label="Sampling method", choices=["Euler a", "Euler", "DPM++ 2M"],
                              value="Euler a", elem_id=f"{tab}_sampling")  # fmt: skip
        scheduler = gr.Dropdown(label="Schedule type", choices=["Automatic", "Karras", "Simple"],
                                value="Automatic", elem_id=f"{tab}_scheduler")  # fmt: skip
        steps = gr.Slider(label="Sampling steps", minimum=1, maximum=150, step=1, value=20,
                          elem_id=f"{tab}_steps")  # fmt: skip
        return [steps, sampler, scheduler]

    def setup(self, p: Any, steps: int, sampler_name: str, scheduler: str) -> None:
        p.steps, p.sampler_name, p.scheduler = int(steps), sampler_name, scheduler
