"""What a model file is (type) and what it was made for (base model family).

The folder it sits in decides first (A1111/Forge and ComfyUI folder names), then
the safetensors tensor names, then the metadata trainers write (`modelspec.*`,
kohya `ss_*`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import PurePath

# Folder name (lower case) -> model type; A1111/Forge and ComfyUI conventions.
FOLDERS = {
    "stable-diffusion": "checkpoint",
    "checkpoints": "checkpoint",
    "diffusion_models": "diffusion_model",
    "unet": "diffusion_model",
    "lora": "lora",
    "loras": "lora",
    "lycoris": "lora",
    "vae": "vae",
    "vae_approx": "vae",
    "text_encoders": "text_encoder",
    "clip": "text_encoder",
    "text_encoder": "text_encoder",
    "embeddings": "embedding",
    "esrgan": "upscaler",
    "realesrgan": "upscaler",
    "swinir": "upscaler",
    "upscale_models": "upscaler",
    "controlnet": "controlnet",
}
EXTENSIONS = {".safetensors", ".ckpt", ".pt", ".pth", ".gguf", ".sft", ".bin"}


def type_from_folder(relative: PurePath) -> str:
    """The type the innermost known folder of `relative` names, or ""."""
    for part in reversed(relative.parts[:-1]):
        found = FOLDERS.get(part.lower())
        if found:
            return found
    return ""


def type_from_tensors(names: Iterable[str]) -> str:
    """The type suggested by safetensors tensor names, or ""."""
    keys = list(names)
    if any(k.startswith(("lora_unet_", "lora_te")) or ".lora_down." in k or ".lora_A." in k
           for k in keys):  # fmt: skip
        return "lora"
    if any(k in ("emb_params", "string_to_param.*") or k.startswith(("clip_l", "clip_g"))
           for k in keys) and len(keys) <= 4:  # fmt: skip
        return "embedding"
    has_unet = any(k.startswith("model.diffusion_model.") for k in keys)
    has_vae = any(k.startswith("first_stage_model.") for k in keys)
    if has_unet and has_vae:
        return "checkpoint"
    if has_unet or any(
        k.startswith(("double_blocks.", "joint_blocks.", "input_blocks.")) for k in keys
    ):
        return "diffusion_model"
    if any(k.startswith(("encoder.down", "decoder.up")) for k in keys) and not has_unet:
        return "vae"
    if any(k.startswith(("text_model.", "encoder.block.", "shared.")) for k in keys):
        return "text_encoder"
    return ""


def base_model(metadata: Mapping[str, str], names: Iterable[str]) -> str:
    """SD1, SD2, SDXL, Pony, SD3, Flux, … from metadata, else tensor names; "" if unknown."""
    text = " ".join(
        metadata.get(k, "")
        for k in ("modelspec.architecture", "ss_base_model_version", "ss_sd_model_name",
                  "modelspec.title")
    ).lower()  # fmt: skip
    if "pony" in text:
        return "Pony"
    for needle, family in (
        ("flux", "Flux"),
        ("stable-diffusion-3", "SD3"),
        ("sd3", "SD3"),
        ("xl", "SDXL"),
        ("stable-diffusion-v2", "SD2"),
        ("sd_v2", "SD2"),
        ("stable-diffusion-v1", "SD1"),
        ("sd_v1", "SD1"),
    ):
        if needle in text:
            return family
    if metadata.get("ss_v2") == "True":
        return "SD2"
    keys = list(names)

    def some(*prefixes: str) -> bool:
        return any(k.startswith(prefixes) for k in keys)

    if some("double_blocks.", "model.diffusion_model.double_blocks.", "lora_unet_double_blocks"):
        return "Flux"
    if some("joint_blocks.", "model.diffusion_model.joint_blocks."):
        return "SD3"
    if some(
        "conditioner.embedders.1.", "lora_te2_", "lora_unet_input_blocks_4_1_transformer_blocks_1"
    ):
        return "SDXL"
    if some("cond_stage_model.model."):
        return "SD2"
    if some("cond_stage_model.transformer.", "lora_te_text_model", "lora_unet_down_blocks"):
        return "SD1"
    return ""
