"""Metadata from the model file itself: its sidecars (Civitai Helper's .civitai.info,
a .json, a preview image) and its safetensors header; filled into a model's empty
fields. (The other metadata source, Civitai, is `civitai.py`.)"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from stablequeue_coordinator.library import metadata
from stablequeue_coordinator.library.hashing import SAFETENSORS_SUFFIXES
from stablequeue_coordinator.library.metadata import ModelInfo
from stablequeue_coordinator.library.records import name_key
from stablequeue_coordinator.library.safetensors_header import HeaderError, read_header
from stablequeue_coordinator.store.tables import ModelRow


def read_local(path: Path, errors: list[str]) -> tuple[ModelInfo, str]:
    """Sidecars, then safetensors metadata, of one local file; and its preview."""
    if not path.is_file():
        errors.append(f"{path}: gone")
        return ModelInfo(), ""
    info = metadata.read_sidecars(path, errors)
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        try:
            info.fill(metadata.from_safetensors(read_header(path).metadata))
        except (HeaderError, OSError) as e:
            errors.append(f"{path}: {e}")
    preview = metadata.find_preview(path)
    return info, str(preview) if preview else ""


def fill_row(row: ModelRow, info: ModelInfo, preview: str) -> None:
    """Sets the row's empty fields from `info`."""
    values: dict[str, Any] = {
        "name": info.name, "description": info.description, "base_model": info.base_model,
        "civitai_model_id": info.civitai_model_id, "civitai_version_id": info.civitai_version_id,
        "version_name": info.version_name, "source_url": info.source_url,
        "preview_url": info.preview_url, "preview_path": preview,
        "trained_words": json.dumps(info.trained_words) if info.trained_words else "",
        "tags": json.dumps(info.tags) if info.tags else "",
    }  # fmt: skip
    for key, value in values.items():
        if value and getattr(row, key) in ("", 0, "[]", None):
            setattr(row, key, value)
    # A name taken from the file name gives way to a real one.
    if info.name and row.name == name_key(row.name) and row.name != info.name.lower():
        row.name = info.name


def write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".incomplete")
    tmp.write_bytes(data)
    os.replace(tmp, path)
