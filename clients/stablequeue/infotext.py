"""A1111/Forge "parameters" infotext (PROTOCOLS.md §2), so PNG Info and Civitai read our images."""

from __future__ import annotations

import json

from stablequeue.v1 import queue_pb2


def quote(value: object) -> str:
    """A1111's `infotext_utils.quote`: JSON-quote values containing , : or newline."""
    text = str(value)
    if any(ch in text for ch in ",\n:"):
        return json.dumps(text, ensure_ascii=False)
    return text


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def build(params: queue_pb2.GenerationParams, seed: int, model: str = "") -> str:
    """The three-line infotext for one image of a parameter job."""
    prompt = params.prompt
    if params.loras:
        prompt += "".join(f" <lora:{lora.name}:{_number(lora.weight)}>" for lora in params.loras)
    lines = [prompt]
    if params.negative_prompt:
        lines.append(f"Negative prompt: {params.negative_prompt}")
    fields: list[tuple[str, object]] = []
    if params.steps:
        fields.append(("Steps", params.steps))
    if params.sampler:
        fields.append(("Sampler", params.sampler))
    if params.scheduler:
        fields.append(("Schedule type", params.scheduler))
    if params.cfg_scale:
        fields.append(("CFG scale", _number(params.cfg_scale)))
    fields.append(("Seed", seed))
    if params.width and params.height:
        fields.append(("Size", f"{params.width}x{params.height}"))
    if model:
        fields.append(("Model", model))
    if params.mode == queue_pb2.GENERATION_MODE_IMG2IMG and params.denoising_strength:
        fields.append(("Denoising strength", _number(params.denoising_strength)))
    fields.append(("Version", "StableQueue"))
    lines.append(", ".join(f"{key}: {quote(value)}" for key, value in fields))
    return "\n".join(lines)
