"""`modules.styles`: saved prompt styles applied as Forge applies them."""

from __future__ import annotations

from typing import NamedTuple


class PromptStyle(NamedTuple):
    name: str
    prompt: str
    negative_prompt: str
    path: str | None = None


def apply_styles_to_prompt(prompt: str, style_text: str) -> str:
    if "{prompt}" in style_text:
        return style_text.replace("{prompt}", prompt)
    parts = [p for p in (prompt.strip(), style_text.strip()) if p]
    return ", ".join(parts)


class StyleDatabase:
    def __init__(self) -> None:
        self.styles: dict[str, PromptStyle] = {}

    def apply_styles_to_prompt(self, prompt: str, styles: list[str]) -> str:
        for name in styles:
            prompt = apply_styles_to_prompt(prompt, self.styles[name].prompt)
        return prompt

    def apply_negative_styles_to_prompt(self, prompt: str, styles: list[str]) -> str:
        for name in styles:
            prompt = apply_styles_to_prompt(prompt, self.styles[name].negative_prompt)
        return prompt
