"""stable-diffusion.cpp's own settings, carried in a job's extra settings (`--extra`).

Each setting has one name (sd.cpp's, flattened: `hires_scale` is its `hires.scale`),
a type and a range, and the place it goes in sd-server's `/sdcpp/v1/img_gen` body
and on sd-cli's command line (PROTOCOLS.md §9). sd-server ignores a key it does not
know or a value of the wrong type without a word, so everything is checked here:
an unknown key, a wrong type, a value out of range, or a setting that only means
something beside another one (`hires_scale` without `hires`) is refused, naming the
key.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stablequeue_coordinator.outputs.store import mime_of

CACHE_MODES = ("easycache", "ucache", "dbcache", "taylorseer", "cache-dit", "spectrum")
MAX_REF_IMAGES = 8


class BadOption(ValueError):
    """A setting sd.cpp cannot take; `key` names it."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(f"{key}: {why}")
        self.key = key
        self.why = why


@dataclass(frozen=True)
class Option:
    """One setting: its type and range, its place in the img_gen body, its sd-cli flag."""

    kind: str  # "int", "float", "bool", "choice", "text", "image", "images"
    body: tuple[str, ...]  # path in the img_gen body
    flag: str  # sd-cli's flag
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    needs: str = ""  # only with this (bool) setting on
    about: str = ""

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        if self.kind == "bool":
            return "true or false"
        if self.kind in ("image", "images"):
            what = "a base64 PNG, JPEG or WebP image"
            return what if self.kind == "image" else f"a list of up to {MAX_REF_IMAGES} of {what}s"
        if self.kind == "text":
            return "text"
        number = "an integer" if self.kind == "int" else "a number"
        return f"{number} from {self.low:g} to {self.high:g}"


OPTIONS: dict[str, Option] = {
    "clip_skip": Option("int", ("clip_skip",), "--clip-skip", 1, 12,
                        about="CLIP layers to skip (1 = none; 2 is common for anime models)"),
    "eta": Option("float", ("sample_params", "eta"), "--eta", 0, 10,
                  about="noise multiplier of the ancestral/SDE samplers"),
    "flow_shift": Option("float", ("sample_params", "flow_shift"), "--flow-shift", 0, 100,
                         about="shift for flow models (SD3, Flux, Wan)"),
    "vae_tiling": Option("bool", ("vae_tiling_params", "enabled"), "--vae-tiling",
                         about="decode the VAE in tiles (less memory)"),
    "vae_tile_size": Option("int", ("vae_tiling_params", "tile_size"), "--vae-tile-size", 8, 512,
                            needs="vae_tiling", about="tile side, in latent pixels"),
    "vae_tile_overlap": Option("float", ("vae_tiling_params", "target_overlap"),
                               "--vae-tile-overlap", 0, 0.9, needs="vae_tiling"),
    "cache_mode": Option("choice", ("cache_mode",), "--cache-mode", choices=CACHE_MODES,
                         about="step caching (ucache for UNet models, easycache for DiT)"),
    "cache_option": Option("text", ("cache_option",), "--cache-option", needs="cache_mode",
                           about="key=value list, e.g. threshold=0.25"),
    "hires": Option("bool", ("hires", "enabled"), "--hires", about="highres fix"),
    "hires_scale": Option("float", ("hires", "scale"), "--hires-scale", 1, 8, needs="hires"),
    "hires_width": Option("int", ("hires", "target_width"), "--hires-width", 64, 8192,
                          needs="hires"),
    "hires_height": Option("int", ("hires", "target_height"), "--hires-height", 64, 8192,
                           needs="hires"),
    "hires_steps": Option("int", ("hires", "steps"), "--hires-steps", 1, 500, needs="hires"),
    "hires_denoising_strength": Option("float", ("hires", "denoising_strength"),
                                       "--hires-denoising-strength", 0, 1, needs="hires"),
    "hires_upscaler": Option("text", ("hires", "upscaler"), "--hires-upscaler", needs="hires",
                             about="Latent (default), Lanczos, Nearest, Latent (bicubic), ... "
                             "or an upscaler model the server has"),
    "control_image": Option("image", ("control_image",), "--control-image",
                            about="ControlNet input (the model needs --control-net)"),
    "control_strength": Option("float", ("control_strength",), "--control-strength", 0, 2,
                               needs="control_image"),
    "ref_images": Option("images", ("ref_images",), "--ref-image",
                         about="reference images (Flux Kontext, Qwen edit, ...)"),
}  # fmt: skip


def _image(key: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise BadOption(key, f"{OPTIONS[key].describe()}, got {type(value).__name__}")
    try:
        data = base64.b64decode(value.split(",", 1)[-1], validate=True)
    except (binascii.Error, ValueError):
        raise BadOption(key, "not valid base64") from None
    if mime_of(data) == "application/octet-stream":
        raise BadOption(key, "not a PNG, JPEG or WebP image")
    return data


def _number(option: Option, value: Any, wrong: BadOption) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise wrong
    if option.kind == "int" and not (isinstance(value, int) or float(value).is_integer()):
        raise wrong
    assert option.low is not None and option.high is not None
    if not option.low <= value <= option.high:
        raise wrong
    return int(value) if option.kind == "int" else float(value)


def _value(key: str, option: Option, value: Any) -> Any:
    """`value` checked against `option`; images decoded to bytes."""
    wrong = BadOption(key, f"{option.describe()}, got {json.dumps(value)[:40]}")
    if option.kind == "bool":
        if not isinstance(value, bool):
            raise wrong
        return value
    if option.kind in ("int", "float"):
        return _number(option, value, wrong)
    if option.kind == "choice":
        if not isinstance(value, str) or value not in option.choices:
            raise wrong
        return value
    if option.kind == "text":
        if not isinstance(value, str) or not value.strip() or len(value) > 500:
            raise BadOption(key, "non-empty text of at most 500 characters")
        return value
    if option.kind == "image":
        return _image(key, value)
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_REF_IMAGES:
        raise wrong
    return [_image(f"{key}[{i}]", item) for i, item in enumerate(value)]


def parse(extra: dict[str, Any]) -> dict[str, Any]:
    """The job's sd.cpp settings, checked; images as bytes.

    Raises:
        BadOption: naming the first key sd.cpp cannot take and why.
    """
    settings: dict[str, Any] = {}
    for key, value in extra.items():
        option = OPTIONS.get(key)
        if option is None:
            raise BadOption(
                key, "not a stable-diffusion.cpp setting; it takes " + ", ".join(OPTIONS)
            )
        settings[key] = _value(key, option, value)
    for key in settings:
        needs = OPTIONS[key].needs
        if needs and not settings.get(needs):
            on = "true" if OPTIONS[needs].kind == "bool" else "set"
            raise BadOption(key, f"only takes effect with {needs} {on}; set both or neither")
    return settings


def parse_json(extra_json: str) -> dict[str, Any]:
    """`parse` of a job's `extra_json` ("" → no settings).

    Raises:
        BadOption: as `parse`; also for text that is not a JSON object.
    """
    if not extra_json:
        return {}
    try:
        extra = json.loads(extra_json)
    except json.JSONDecodeError as e:
        raise BadOption("extra_json", f"malformed JSON ({e.msg})") from None
    if not isinstance(extra, dict):
        raise BadOption("extra_json", "must be a JSON object")
    return parse(extra)


def apply_to_body(body: dict[str, Any], settings: dict[str, Any]) -> None:
    """Puts `settings` into an img_gen body, where sd-server reads each."""
    for key, value in settings.items():
        *parents, leaf = OPTIONS[key].body
        place = body
        for parent in parents:
            place = place.setdefault(parent, {})
        if leaf == "tile_size":  # one side for both
            place["tile_size_x"] = place["tile_size_y"] = value
        elif isinstance(value, bytes):
            place[leaf] = base64.b64encode(value).decode()
        elif isinstance(value, list):
            place[leaf] = [base64.b64encode(item).decode() for item in value]
        else:
            place[leaf] = value


def cli_flags(settings: dict[str, Any], folder: Path) -> list[str]:
    """sd-cli's flags for `settings`; images are written into `folder` (the run's own)."""
    flags: list[str] = []
    for key, value in settings.items():
        flag = OPTIONS[key].flag
        if isinstance(value, bool):
            flags += [flag] if value else []
        elif key == "vae_tile_size":
            flags += [flag, f"{value}x{value}"]
        elif isinstance(value, bytes):
            flags += [flag, _write(folder / key, value)]
        elif isinstance(value, list):
            for i, item in enumerate(value):
                flags += [flag, _write(folder / f"{key}_{i}", item)]
        elif isinstance(value, float):
            flags += [flag, f"{value:g}"]
        else:
            flags += [flag, str(value)]
    return flags


def _write(path: Path, data: bytes) -> str:
    suffix = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}[mime_of(data)]
    path = path.with_suffix(suffix)
    path.write_bytes(data)
    return str(path)
