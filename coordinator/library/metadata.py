"""Model metadata from the files around a model (PROTOCOLS.md §4, §5).

Sources fill only fields still empty, in this order: the Forge/A1111 `.json`
sidecar, a Civitai `.civitai.info` sidecar, the safetensors `__metadata__`, then
(optionally) the Civitai API. Sidecars that cannot be parsed are skipped with
the reason, never fatal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

PREVIEW_EXTENSIONS = ("png", "jpg", "jpeg", "webp")
FAMILIES = {"sd1": "SD1", "sd2": "SD2", "sdxl": "SDXL", "flux": "Flux", "sd3": "SD3"}


@dataclass
class ModelInfo:
    name: str = ""
    description: str = ""
    base_model: str = ""
    trained_words: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    civitai_model_id: int = 0
    civitai_version_id: int = 0
    version_name: str = ""
    source_url: str = ""
    preview_url: str = ""  # a remote preview (Civitai) not downloaded yet

    def fill(self, other: ModelInfo) -> None:
        """Takes `other`'s values for the fields still empty here."""
        for f in fields(self):
            if not getattr(self, f.name) and getattr(other, f.name):
                setattr(self, f.name, getattr(other, f.name))

    def is_empty(self) -> bool:
        return not any(getattr(self, f.name) for f in fields(self))


def _words(text: str) -> list[str]:
    return [w.strip() for w in text.split(",") if w.strip()]


def from_forge_json(data: dict[str, Any]) -> ModelInfo:
    """The A1111/Forge user-metadata sidecar (`<name>.json`)."""
    version = str(data.get("sd version") or data.get("sd_version_str") or "")
    return ModelInfo(
        description=str(data.get("description") or data.get("notes") or ""),
        base_model=FAMILIES.get(version.lower(), ""),
        trained_words=_words(str(data.get("activation text") or "")),
    )


def from_civitai(data: dict[str, Any]) -> ModelInfo:
    """A `/model-versions/by-hash` answer, as the API returns it or a `.civitai.info` holds it."""
    model = data.get("model") or {}
    model_id = int(data.get("modelId") or 0)
    version_id = int(data.get("id") or 0)
    images = [i for i in data.get("images") or [] if isinstance(i, dict) and i.get("url")]
    return ModelInfo(
        name=str(model.get("name") or ""),
        description=str(data.get("description") or ""),
        base_model=str(data.get("baseModel") or ""),
        trained_words=[str(w) for w in data.get("trainedWords") or []],
        civitai_model_id=model_id,
        civitai_version_id=version_id,
        version_name=str(data.get("name") or ""),
        source_url=(
            f"https://civitai.com/models/{model_id}?modelVersionId={version_id}" if model_id else ""
        ),
        preview_url=str(images[0]["url"]) if images else "",
    )


def from_safetensors(metadata: dict[str, str]) -> ModelInfo:
    """kohya `ss_*` and ModelSpec `modelspec.*` keys."""
    tags = metadata.get("modelspec.tags", "")
    return ModelInfo(
        name=metadata.get("modelspec.title") or metadata.get("ss_output_name") or "",
        description=metadata.get("modelspec.description", ""),
        trained_words=_words(metadata.get("modelspec.trigger_phrase", "")),
        tags=_words(tags),
    )


def read_sidecars(model: Path, errors: list[str]) -> ModelInfo:
    """Forge `.json` then `.civitai.info` next to `model`; unreadable ones go to `errors`."""
    info = ModelInfo()
    stem = model.with_suffix("")
    for sidecar, parse in (
        (stem.with_name(stem.name + ".json"), from_forge_json),
        (stem.with_name(stem.name + ".civitai.info"), from_civitai),
    ):
        if not sidecar.is_file():
            continue
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            info.fill(parse(data))
        except (OSError, ValueError) as e:
            errors.append(f"{sidecar}: unreadable sidecar ({e})")
    return info


def find_preview(model: Path) -> Path | None:
    """`<name>.preview.<ext>` or `<name>.<ext>` next to the model (A1111 and ComfyUI)."""
    stem = model.with_suffix("")
    for ext in PREVIEW_EXTENSIONS:
        for candidate in (
            stem.with_name(f"{stem.name}.preview.{ext}"),
            stem.with_name(f"{stem.name}.{ext}"),
        ):
            if candidate.is_file():
                return candidate
    return None
