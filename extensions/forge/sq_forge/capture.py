"""What Generate would run, as a StableQueue job.

The Queue button receives the same inputs as Generate. They go through the app's
own processing constructor (`modules.txt2img.txt2img_create_processing`, or for
img2img the app's function up to the point where it would run the scripts), so
styles, hires fix, override settings and every always-on script's arguments end
up on the processing object `p` exactly as for Generate. `spec_from_processing`
then reads `p` into a JobSpec in the form of the app's own HTTP API
(`/sdapi/v1/txt2img` fields, `alwayson_scripts`, images as base64). Nothing is
generated here.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import inspect
import io
import json
import re
import sys
import threading
import uuid
from typing import Any

from stablequeue.v1 import common_pb2, queue_pb2

# Processing fields that are not API request fields, or are sent another way.
TYPED = {
    "seed": "seed",
    "steps": "steps",
    "cfg_scale": "cfg_scale",
    "width": "width",
    "height": "height",
    "sampler_name": "sampler",
    "scheduler": "scheduler",
    "batch_size": "batch_size",
    "n_iter": "iterations",
}
NOT_SENT = {
    "prompt",  # sent with the styles applied
    "negative_prompt",
    "sd_model",
    "outpath_samples",
    "outpath_grids",
    "sampler_index",
    "do_not_save_samples",
    "do_not_save_grid",
    "extra_generation_params",
    "overlay_images",
    "do_not_reload_embeddings",
    "script_args",
    "scripts",
    "styles",
    "init_images",
    "override_settings",
    "override_settings_restore_afterwards",
    "firstpass_image",
    "user",
}
# Built-in always-on scripts whose values the constructor already put on `p`
# (seed, sampler/steps/scheduler, refiner); the API takes them as plain fields.
BUILTIN_MARK = "processing_scripts"
OWN_TITLE = "StableQueue"


# `<lora:name:weight>` in a prompt: sent as the job's LoRAs, so the coordinator runs it
# only where those LoRAs are and names them as that server does. Other forms
# (`<lora:name:te:unet>`, `<lora:name:1:lbw=...>`) stay in the text.
LORA_TAG = re.compile(r"<lora:([^:<>]+)(?::(-?\d+(?:\.\d+)?))?>")
MAX_LORAS = 50


class CaptureError(Exception):
    """The request cannot be queued; the message says why (shown to the user)."""


class _Captured(BaseException):
    def __init__(self, p: Any) -> None:
        super().__init__()
        self.p = p
        self.scripts = p.scripts
        self.script_args = p.script_args


_local = threading.local()


def _intercept(runner: Any) -> None:
    """Makes `runner.run` stop a capturing thread right before anything would run."""
    if getattr(runner, "_stablequeue_capture", False):
        return
    original = runner.run

    def run(p: Any, *args: Any) -> Any:
        if getattr(_local, "capturing", False):
            raise _Captured(p)
        return original(p, *args)

    runner.run = run
    runner._stablequeue_capture = True


def call_with_request(fn: Any, request: Any, values: list[Any]) -> Any:
    """Calls an app function the way gradio would: `request` where its signature wants it."""
    args = list(values)
    for index, param in enumerate(inspect.signature(fn).parameters.values()):
        if param.kind is param.VAR_POSITIONAL:
            break
        if param.name == "request" or "Request" in str(param.annotation):
            args.insert(index, request)
            break
    return fn(*args)


def build_processing(tab: str, request: Any, values: list[Any]) -> tuple[Any, Any, Any]:
    """(p, its script runner, its script args) for Generate's input `values` on `tab`.

    `values[0]` is Generate's task id (replaced by ours); the rest are passed as
    Generate passes them.
    """
    import modules.scripts as app_scripts

    task_id = f"stablequeue-{uuid.uuid4().hex[:12]}"
    values = [task_id, *values[1:]]
    if tab == "txt2img":
        import modules.txt2img as module

        runner = app_scripts.scripts_txt2img
        names = ("txt2img_create_processing", "txt2img")
    else:
        import modules.img2img as module  # type: ignore[no-redef]

        runner = app_scripts.scripts_img2img
        names = ("img2img_create_processing", "img2img_function", "img2img")
    create = getattr(module, names[0], None)
    if create is not None:
        p = call_with_request(create, request, values)
        return p, p.scripts, p.script_args
    fn = next((getattr(module, n) for n in names[1:] if hasattr(module, n)), None)
    if fn is None:
        raise CaptureError(f"this app has no {tab} processing function StableQueue knows")
    _intercept(runner)
    _local.capturing = True
    try:
        call_with_request(fn, request, values)
    except _Captured as captured:
        return captured.p, captured.scripts, captured.script_args
    finally:
        _local.capturing = False
    raise CaptureError(f"{tab}: this mode cannot be queued (batch from a folder runs locally only)")


def jsonable(value: Any, depth: int = 0) -> Any:
    """A script argument in the API's JSON form: images as base64 PNG, objects as dicts."""
    if depth > 8:
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return jsonable(value.value, depth + 1)
    image = encode_image(value)
    if image is not None:
        return image
    if isinstance(value, dict):
        return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v, depth + 1) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: jsonable(getattr(value, f.name), depth + 1) for f in dataclasses.fields(value)
        }
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    if hasattr(value, "__dict__"):
        return {k: jsonable(v, depth + 1) for k, v in vars(value).items() if not k.startswith("_")}
    return str(value)


def image_bytes(value: Any) -> bytes | None:
    """PNG bytes of a PIL image or an image array; None for anything else."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Forge always has Pillow
        return None
    if hasattr(value, "__array_interface__") and not isinstance(value, Image.Image):
        try:
            import numpy as np

            array = np.asarray(value)
            if array.ndim not in (2, 3):
                return None
            if array.dtype != np.uint8:
                array = array.clip(0, 255).astype(np.uint8)
            value = Image.fromarray(array)
        except (TypeError, ValueError):
            return None
    if not isinstance(value, Image.Image):
        return None
    buffer = io.BytesIO()
    value.save(buffer, format="PNG")
    return buffer.getvalue()


def encode_image(value: Any) -> str | None:
    data = image_bytes(value)
    return base64.b64encode(data).decode() if data is not None else None


def script_payload(scripts: Any, script_args: Any) -> dict[str, Any]:
    """`alwayson_scripts` (and a chosen selectable script) in the API's form."""
    args = list(script_args or ())
    payload: dict[str, Any] = {}
    always: dict[str, Any] = {}
    for script in getattr(scripts, "alwayson_scripts", []):
        title = script.title()
        if title == OWN_TITLE or BUILTIN_MARK in str(getattr(script, "filename", "")):
            continue
        if script.args_to <= script.args_from:
            continue
        always[title.lower()] = {"args": jsonable(args[script.args_from : script.args_to])}
    if always:
        payload["alwayson_scripts"] = always
    selectable = getattr(scripts, "selectable_scripts", [])
    index = args[0] if args and isinstance(args[0], int) else 0
    if 0 < index <= len(selectable):
        script = selectable[index - 1]
        payload["script_name"] = script.title().lower()
        payload["script_args"] = jsonable(args[script.args_from : script.args_to])
    return payload


def apply_styles(p: Any) -> tuple[str, str]:
    """The prompts with the chosen styles applied, as the app would apply them."""
    prompt, negative = p.prompt, p.negative_prompt
    styles = list(getattr(p, "styles", None) or [])
    if not styles:
        return prompt, negative
    from modules import shared

    database = shared.prompt_styles
    return (
        database.apply_styles_to_prompt(prompt, styles),
        database.apply_negative_styles_to_prompt(negative, styles),
    )


def split_loras(prompt: str) -> tuple[str, list[tuple[str, float]]]:
    """The prompt without the LoRA tags of LoRAs this Forge has, and those LoRAs."""
    networks = sys.modules.get("networks")  # Forge's/A1111's built-in Lora extension
    known = getattr(networks, "available_networks", {})
    found: list[tuple[str, float]] = []

    def take(match: re.Match[str]) -> str:
        name, weight = match.group(1).strip(), float(match.group(2) or 1.0)
        if name not in known or abs(weight) > 10 or len(found) >= MAX_LORAS:
            return match.group(0)
        found.append((name, weight))
        return ""

    text = LORA_TAG.sub(take, prompt)
    if found:
        text = re.sub(r"[ \t]{2,}", " ", text)
        text = re.sub(r"\s+,", ",", text).strip().strip(",").strip()
    return text, found


def checkpoint(title: str) -> tuple[str, str]:
    """(sha256 or "", title) of the checkpoint `title` names, from the app's own list."""
    from modules import sd_models

    info = sd_models.checkpoints_list.get(title)
    if info is None:
        match = getattr(sd_models, "get_closet_checkpoint_match", None)
        info = match(title) if match else None
    if info is None:
        return "", title
    sha = getattr(info, "sha256", None) or ""
    if not sha:
        try:
            from modules import hashes

            sha = hashes.sha256_from_cache(info.filename, f"checkpoint/{info.name}") or ""
        except (ImportError, AttributeError, OSError):
            sha = ""
    return sha.lower(), info.title


def spec_from_processing(
    p: Any,
    scripts: Any,
    script_args: Any,
    *,
    img2img: bool,
    target: str = "",
    priority: int = 0,
) -> queue_pb2.JobSpec:
    """The job for processing object `p`: typed parameters plus every other field as extra."""
    from modules import shared

    prompt, negative = apply_styles(p)
    prompt, loras = split_loras(prompt)
    params = queue_pb2.GenerationParams(
        mode=queue_pb2.GENERATION_MODE_IMG2IMG if img2img else queue_pb2.GENERATION_MODE_TXT2IMG,
        prompt=prompt,
        negative_prompt=negative,
        loras=[queue_pb2.LoraRef(name=name, weight=weight) for name, weight in loras],
    )
    extra: dict[str, Any] = {}
    fields = (
        [f.name for f in dataclasses.fields(p) if f.init] if dataclasses.is_dataclass(p) else []
    )
    for name in fields:
        value = getattr(p, name, None)
        if name in TYPED:
            if value not in (None, ""):
                target_field = TYPED[name]
                kind = type(getattr(params, target_field))
                setattr(params, target_field, kind(value))
            continue
        if name in NOT_SENT or value is None:
            continue
        if name == "denoising_strength" and img2img:
            params.denoising_strength = float(value)
            continue
        extra[name] = jsonable(value)
    if img2img:
        images = [image_bytes(i) for i in (getattr(p, "init_images", None) or [])]
        if not images or any(i is None for i in images):
            raise CaptureError("img2img: choose a source image first")
        params.init_images.extend(i for i in images if i is not None)
    overrides = dict(getattr(p, "override_settings", None) or {})
    title = str(overrides.get("sd_model_checkpoint") or shared.opts.sd_model_checkpoint or "")
    sha, title = checkpoint(title) if title else ("", "")
    if title:
        overrides["sd_model_checkpoint"] = title
    params.model = sha or title
    if overrides:
        extra["override_settings"] = jsonable(overrides)
    extra.update(script_payload(scripts, script_args))
    params.extra_json = json.dumps(extra)
    return queue_pb2.JobSpec(
        app=common_pb2.APP_KIND_FORGE,
        params=params,
        target_server=target,
        priority=priority,
        label=title.split(" [", 1)[0] if title else "",
    )
