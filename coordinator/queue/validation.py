"""Validation of submitted jobs. Each rule names its field; nothing invalid is stored."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from stablequeue.v1 import common_pb2, queue_pb2
from stablequeue_coordinator.backends import sdcpp_names, sdcpp_options
from stablequeue_coordinator.common import NAME, check_enum
from stablequeue_coordinator.errors import InvalidArgument

MAX_PROMPT_CHARS = 20_000
MAX_STEPS = 500
MIN_SIDE, MAX_SIDE = 64, 8192
MAX_CFG = 100.0
MAX_BATCH_SIZE = 64
MAX_ITERATIONS = 100
MAX_SEED = 2**32 - 1
MAX_LORAS = 50
MAX_LORA_WEIGHT = 10.0
MAX_NAME_CHARS = 500
# Forge always-on script arguments carry images (ControlNet units), as base64.
MAX_EXTRA_JSON_BYTES = 16 << 20
MAX_WORKFLOW_BYTES = 16 << 20
MAX_INIT_IMAGES = 16
MAX_INIT_IMAGE_BYTES = 48 << 20
MAX_PRIORITY = 1000
MAX_LABEL_CHARS = 200
MAX_IDEMPOTENCY_KEY_CHARS = 200
MAX_COUNT = 1000
# What one SubmitJobs request may add to the database: each copy stores its spec (its
# init images, workflow, extra settings) in full.
MAX_REQUEST_BYTES = 256 << 20
MAX_JSON_DEPTH = 64
MAX_REQUIRED_MODELS = 50
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF")


def _range(field: str, value: float, low: float, high: float, *, zero_ok: bool = False) -> None:
    if zero_ok and value == 0:
        return
    if not low <= value <= high:
        raise InvalidArgument(
            field, f"must be within {_num(low)} .. {_num(high)}, got {_num(value)}"
        )


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _max_chars(field: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidArgument(field, f"at most {limit} characters, got {len(value)}")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range for a number")
    return value


def _depth(value: Any) -> int:
    """How deep JSON containers nest (walked without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return deepest if isinstance(value, dict | list) else 0


def _json_object(field: str, text: str, limit: int) -> dict[str, Any]:
    if len(text.encode()) > limit:
        raise InvalidArgument(field, f"at most {limit} bytes of JSON")
    too_deep = InvalidArgument(field, f"nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except json.JSONDecodeError as e:
        raise InvalidArgument(field, f"malformed JSON ({e.msg} at line {e.lineno})") from e
    except ValueError as e:
        raise InvalidArgument(field, str(e)) from None
    except RecursionError:
        raise too_deep from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise too_deep
    if not isinstance(value, dict):
        raise InvalidArgument(field, f"must be a JSON object, got {type(value).__name__}")
    return value


def validate_params(p: queue_pb2.GenerationParams) -> None:
    check_enum("spec.params.mode", queue_pb2.GenerationMode, p.mode, allow_zero=True)
    if not p.prompt.strip():
        raise InvalidArgument("spec.params.prompt", "required (or send a workflow instead)")
    _max_chars("spec.params.prompt", p.prompt, MAX_PROMPT_CHARS)
    _max_chars("spec.params.negative_prompt", p.negative_prompt, MAX_PROMPT_CHARS)
    _range("spec.params.seed", p.seed, -1, MAX_SEED)
    _range("spec.params.steps", p.steps, 1, MAX_STEPS, zero_ok=True)
    _range("spec.params.cfg_scale", p.cfg_scale, 0, MAX_CFG)
    for name, side in (("width", p.width), ("height", p.height)):
        _range(f"spec.params.{name}", side, MIN_SIDE, MAX_SIDE, zero_ok=True)
        if side % 8:
            raise InvalidArgument(f"spec.params.{name}", f"must be a multiple of 8, got {side}")
    _range("spec.params.batch_size", p.batch_size, 1, MAX_BATCH_SIZE, zero_ok=True)
    _range("spec.params.iterations", p.iterations, 1, MAX_ITERATIONS, zero_ok=True)
    _range("spec.params.denoising_strength", p.denoising_strength, 0, 1)
    for name in ("sampler", "scheduler", "model"):
        _max_chars(f"spec.params.{name}", getattr(p, name), MAX_NAME_CHARS)
    _validate_loras(p)
    _validate_init_images(p)
    if p.extra_json:
        _json_object("spec.params.extra_json", p.extra_json, MAX_EXTRA_JSON_BYTES)


def _validate_loras(p: queue_pb2.GenerationParams) -> None:
    if len(p.loras) > MAX_LORAS:
        raise InvalidArgument("spec.params.loras", f"at most {MAX_LORAS} LoRAs")
    for i, lora in enumerate(p.loras):
        if not lora.name.strip():
            raise InvalidArgument(f"spec.params.loras[{i}].name", "required")
        _max_chars(f"spec.params.loras[{i}].name", lora.name, MAX_NAME_CHARS)
        _range(f"spec.params.loras[{i}].weight", lora.weight, -MAX_LORA_WEIGHT, MAX_LORA_WEIGHT)


def _validate_init_images(p: queue_pb2.GenerationParams) -> None:
    field = "spec.params.init_images"
    if p.mode == queue_pb2.GENERATION_MODE_IMG2IMG and not p.init_images:
        raise InvalidArgument(field, "img2img needs at least one init image")
    if p.mode != queue_pb2.GENERATION_MODE_IMG2IMG and p.init_images:
        raise InvalidArgument(field, "only img2img takes init images (set mode to IMG2IMG)")
    if len(p.init_images) > MAX_INIT_IMAGES:
        raise InvalidArgument(field, f"at most {MAX_INIT_IMAGES} images")
    total = sum(len(image) for image in p.init_images)
    if total > MAX_INIT_IMAGE_BYTES:
        raise InvalidArgument(
            field, f"{total / 2**20:.1f} MiB in all exceeds {MAX_INIT_IMAGE_BYTES >> 20} MiB"
        )
    for i, image in enumerate(p.init_images):
        if not image.startswith(IMAGE_MAGIC):
            raise InvalidArgument(f"{field}[{i}]", "not a PNG, JPEG or WebP image")


def validate_workflow(text: str) -> None:
    """Checks a ComfyUI API-format workflow: node id -> {class_type, inputs}."""
    graph = _json_object("spec.workflow_json", text, MAX_WORKFLOW_BYTES)
    if not graph:
        raise InvalidArgument("spec.workflow_json", "the workflow has no nodes")
    if "nodes" in graph and "links" in graph:
        raise InvalidArgument(
            "spec.workflow_json",
            "this is a UI-format workflow; export it with 'Save (API Format)'",
        )
    for node_id, node in graph.items():
        field = f"spec.workflow_json[{node_id!r}]"
        if not isinstance(node, dict):
            raise InvalidArgument(field, "each node must be an object")
        if not isinstance(node.get("class_type"), str) or not node["class_type"]:
            raise InvalidArgument(f"{field}.class_type", "required string")
        if not isinstance(node.get("inputs", {}), dict):
            raise InvalidArgument(f"{field}.inputs", "must be an object")


def normalize_spec(spec: queue_pb2.JobSpec) -> queue_pb2.JobSpec:
    """Validates a job spec and returns a copy with defaults made explicit.

    Raises:
        InvalidArgument: naming the first field that breaks a rule.
    """
    check_enum("spec.app", common_pb2.AppKind, spec.app, allow_zero=True)
    out = queue_pb2.JobSpec()
    out.CopyFrom(spec)
    payload = spec.WhichOneof("payload")
    if payload is None:
        raise InvalidArgument("spec", "send either params (with a prompt) or workflow_json")
    if payload == "workflow_json":
        validate_workflow(spec.workflow_json)
        if spec.app in (common_pb2.APP_KIND_FORGE, common_pb2.APP_KIND_SDCPP):
            raise InvalidArgument("spec.app", "a ComfyUI workflow can only run on COMFYUI")
        out.app = common_pb2.APP_KIND_COMFYUI
    else:
        validate_params(spec.params)
        if spec.app == common_pb2.APP_KIND_UNSPECIFIED:
            out.app = common_pb2.APP_KIND_ANY
        if out.params.mode == queue_pb2.GENERATION_MODE_UNSPECIFIED:
            out.params.mode = queue_pb2.GENERATION_MODE_TXT2IMG
        if spec.app == common_pb2.APP_KIND_SDCPP:
            _validate_sdcpp_names(spec.params)
            _validate_sdcpp_settings(spec.params)
        elif spec.params.extra_json:
            _validate_forge_extra(spec.params.extra_json)
    if spec.target_server and not NAME.match(spec.target_server):
        raise InvalidArgument(
            "spec.target_server", "letters, digits, '.', '_' or '-', at most 100 characters"
        )
    validate_priority("spec.priority", spec.priority)
    _max_chars("spec.label", spec.label, MAX_LABEL_CHARS)
    _validate_models(spec, out)
    if spec.comfy_ui_workflow:
        if payload != "workflow_json":
            raise InvalidArgument("spec.comfy_ui_workflow", "only with a workflow job")
        _json_object("spec.comfy_ui_workflow", spec.comfy_ui_workflow, MAX_WORKFLOW_BYTES)
    return out


def _validate_sdcpp_names(p: queue_pb2.GenerationParams) -> None:
    """Names stable-diffusion.cpp has (its own, or A1111's it translates); it would run
    its default for any other without a word."""
    label, schedule = sdcpp_names.split_label(p.sampler, p.scheduler)
    for field, check, value in (
        ("spec.params.sampler", sdcpp_names.sample_method, label),
        ("spec.params.scheduler", sdcpp_names.scheduler_name, schedule),
    ):
        try:
            check(value)
        except sdcpp_names.UnknownName as e:
            raise InvalidArgument(field, str(e)) from None


# Forge/A1111 payload fields the typed parameters own (checked there against their
# limits); the extra settings would override them unchecked.
TYPED_FORGE_FIELDS = {
    "prompt": "prompt", "negative_prompt": "negative_prompt", "seed": "seed",
    "steps": "steps", "cfg_scale": "cfg_scale", "width": "width", "height": "height",
    "sampler_name": "sampler", "sampler_index": "sampler", "scheduler": "scheduler",
    "batch_size": "batch_size", "n_iter": "iterations", "init_images": "init_images",
}  # fmt: skip
OBJECT_FIELDS = ("override_settings", "alwayson_scripts")


def _validate_forge_extra(extra_json: str) -> None:
    """Extra settings of a Forge/A1111 job: the payload fields the typed parameters own
    are set there (with their limits), and the objects Forge expects are objects."""
    extra = _json_object("spec.params.extra_json", extra_json, MAX_EXTRA_JSON_BYTES)
    for key, typed in TYPED_FORGE_FIELDS.items():
        if key in extra:
            raise InvalidArgument(
                f"spec.params.extra_json.{key}", f"set it as spec.params.{typed} (checked there)"
            )
    strength = extra.get("denoising_strength")  # txt2img: the hires fix's (Forge's API)
    number = isinstance(strength, int | float) and not isinstance(strength, bool)
    if strength is not None and not (number and 0 <= strength <= 1):
        raise InvalidArgument(
            "spec.params.extra_json.denoising_strength", f"a number from 0 to 1, got {strength!r}"
        )
    for key in OBJECT_FIELDS:
        if key in extra and not isinstance(extra[key], dict):
            raise InvalidArgument(
                f"spec.params.extra_json.{key}",
                f"must be a JSON object, got {type(extra[key]).__name__}",
            )


def _validate_sdcpp_settings(p: queue_pb2.GenerationParams) -> None:
    """stable-diffusion.cpp's own settings in the extra settings: sd-server would ignore
    an unknown key or a value of the wrong type without a word."""
    try:
        sdcpp_options.parse_json(p.extra_json)
    except sdcpp_options.BadOption as e:
        raise InvalidArgument(f"spec.params.extra_json.{e.key}", e.why) from None


def _validate_models(spec: queue_pb2.JobSpec, out: queue_pb2.JobSpec) -> None:
    """Required model files: workflow jobs only, each named and identified by SHA-256."""
    if not spec.models:
        return
    if spec.WhichOneof("payload") != "workflow_json":
        raise InvalidArgument("spec.models", "only a workflow job lists its model files")
    if len(spec.models) > MAX_REQUIRED_MODELS:
        raise InvalidArgument("spec.models", f"at most {MAX_REQUIRED_MODELS} files")
    for i, model in enumerate(spec.models):
        field = f"spec.models[{i}]"
        if not model.name.strip():
            raise InvalidArgument(f"{field}.name", "required: the name the workflow uses")
        _max_chars(f"{field}.name", model.name, MAX_NAME_CHARS)
        _max_chars(f"{field}.folder", model.folder, 100)
        sha = model.sha256.lower()
        if not SHA256_HEX.match(sha):
            raise InvalidArgument(f"{field}.sha256", f"64 hex digits, got {model.sha256[:70]!r}")
        out.models[i].sha256 = sha


def validate_priority(field: str, priority: int) -> None:
    _range(field, priority, -MAX_PRIORITY, MAX_PRIORITY)


def validate_idempotency_key(key: str) -> None:
    _max_chars("idempotency_key", key, MAX_IDEMPOTENCY_KEY_CHARS)


def validate_count(count: int, spec: queue_pb2.JobSpec | None = None) -> None:
    """`count` copies within MAX_COUNT and, with the spec, within MAX_REQUEST_BYTES: the
    batch's init images are stored once, everything else once per copy."""
    if not 1 <= count <= MAX_COUNT:
        raise InvalidArgument("count", f"must be within 1 .. {MAX_COUNT}, got {count}")
    if spec is None:
        return
    images = sum(len(i) for i in spec.params.init_images) if spec.HasField("params") else 0
    size = spec.ByteSize() - images
    total = images + size * count
    if total > MAX_REQUEST_BYTES:
        raise InvalidArgument(
            "count",
            f"{count} copies of a {size / 2**20:.1f} MiB job would store "
            f"{total / 2**20:,.0f} MiB; one request may add {MAX_REQUEST_BYTES >> 20} MiB "
            "(send fewer copies, or a smaller workflow or prompt)",
        )
