"""Forge's built-in Seed script: the seed controls, applied to `p` in setup()."""

from __future__ import annotations

from typing import Any

import gradio as gr

from modules import scripts


class ScriptSeed(scripts.Script):
    sorting_priority = 0

    def title(self) -> str:
        return "Seed"

    def show(self, is_img2img: bool) -> Any:
        return scripts.AlwaysVisible

    def ui(self, is_img2img: bool) -> list[Any]:
        tab = "img2img" if is_img2img else "txt2img"
        seed = gr.Number(label="Seed", value=-1, precision=0, elem_id=f"{tab}_seed")
        extras = gr.Checkbox(label="Extra", value=False, elem_id=f"{tab}_subseed_show")
        subseed = gr.Number(label="Variation seed", value=-1, precision=0, elem_id=f"{tab}_subseed")
        strength = gr.Slider(label="Variation strength", minimum=0, maximum=1, value=0)
        from_w = gr.Slider(label="Resize seed from width", minimum=0, maximum=2048, value=0)
        from_h = gr.Slider(label="Resize seed from height", minimum=0, maximum=2048, value=0)
        return [seed, extras, subseed, strength, from_w, from_h]

    def setup(self, p: Any, seed: Any, extras: bool, subseed: Any, strength: float,
              from_w: int, from_h: int) -> None:  # fmt: skip
        p.seed = int(seed)
        if extras and strength > 0:
            p.subseed, p.subseed_strength = int(subseed), strength
        if extras and from_w > 0 and from_h > 0:
            p.seed_resize_from_w, p.seed_resize_from_h = int(from_w), int(from_h)
