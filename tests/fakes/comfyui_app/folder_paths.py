"""`folder_paths`: model folders by name (set by `configure` in tests)."""

from __future__ import annotations

import os

supported_pt_extensions = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
folder_names_and_paths: dict[str, tuple[list[str], set[str]]] = {}
models_dir = ""


def configure(root: str) -> None:
    """The default tree: <root>/<folder> for each of ComfyUI's model folders."""
    global models_dir
    models_dir = root
    folder_names_and_paths.clear()
    for name in ("checkpoints", "loras", "vae", "text_encoders", "diffusion_models",
                 "controlnet", "upscale_models", "embeddings", "clip_vision"):  # fmt: skip
        folder_names_and_paths[name] = ([os.path.join(root, name)], supported_pt_extensions)
    folder_names_and_paths["custom_nodes"] = ([os.path.join(root, "..", "custom_nodes")], set())


def map_legacy(folder_name: str) -> str:
    return {"unet": "diffusion_models", "clip": "text_encoders"}.get(folder_name, folder_name)


def get_folder_paths(folder_name: str) -> list[str]:
    return list(folder_names_and_paths[map_legacy(folder_name)][0])


def get_filename_list(folder_name: str) -> list[str]:
    folders, extensions = folder_names_and_paths[map_legacy(folder_name)]
    names: set[str] = set()
    for folder in folders:
        for base, _, files in os.walk(folder, followlinks=True):
            for file in files:
                if not extensions or os.path.splitext(file)[1].lower() in extensions:
                    names.add(os.path.relpath(os.path.join(base, file), folder).replace("\\", "/"))
    return sorted(names)


def get_full_path(folder_name: str, filename: str) -> str | None:
    folder_name = map_legacy(folder_name)
    if folder_name not in folder_names_and_paths:
        return None
    filename = os.path.relpath(os.path.join("/", filename), "/")
    for folder in folder_names_and_paths[folder_name][0]:
        path = os.path.join(folder, filename)
        if os.path.isfile(path):
            return path
    return None
