"""`exec_mode: cli` models: one sd-cli run per job (PROTOCOLS.md §9).

The job's parameters become sd-cli flags after the model's own args (LoRAs as the
`<lora:…>` tags sd-cli reads, an init image and sd.cpp settings as files and flags);
the images are read back from a temporary folder and removed. The process gets its own
group, is killed with it if the job is cancelled, and its last output lines
become the error when it fails. No shell.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stablequeue.v1 import queue_pb2
from stablequeue_agent.config import PLACEHOLDER, ModelConfig, resolve_command
from stablequeue_agent.output import Sampling, Step, is_bar, keep_tail
from stablequeue_agent.output import lines as output_lines
from stablequeue_coordinator.backends import sdcpp_names, sdcpp_options
from stablequeue_coordinator.outputs.store import mime_of

# The files sd.cpp loads as LoRAs (what its `<lora:…>` lookup tries).
LORA_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".gguf")
LORA_DIR_FLAG = "--lora-model-dir"


class CliFailed(Exception):
    """The CLI run failed; the message holds its exit code and last output.
    `retryable`: it was killed (a signal), not refusing the job."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


def cli_flags(
    params: queue_pb2.GenerationParams, folder: Path, lora_dir: Path | None = None
) -> list[str]:
    """sd-cli's flags for the job: output and input files in `folder` (the run's own),
    LoRAs as `<lora:file:weight>` prompt tags found in `lora_dir` (sd-cli reads no other
    form), the job's sd.cpp settings (its extra settings).

    Raises:
        CliFailed: a name, setting or LoRA sd-cli cannot take.
    """
    flags = ["-p", _prompt(params, lora_dir), "-o", str(folder / "output.png")]
    if params.negative_prompt:
        flags += ["-n", params.negative_prompt]
    for flag, value in (("--steps", params.steps), ("-W", params.width), ("-H", params.height),
                        ("--cfg-scale", params.cfg_scale)):  # fmt: skip
        if value:
            flags += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    flags += ["-s", str(params.seed)]
    try:
        method, scheduler = sdcpp_names.translate(params.sampler, params.scheduler)
        settings = sdcpp_options.parse_json(params.extra_json)
    except sdcpp_names.UnknownName as e:
        raise CliFailed(str(e)) from None
    except sdcpp_options.BadOption as e:
        raise CliFailed(f"extra setting {e}") from None
    if method:
        flags += ["--sampling-method", method]
    if scheduler:
        flags += ["--scheduler", scheduler]
    count = (params.batch_size or 1) * (params.iterations or 1)
    if count > 1:
        flags += ["-b", str(count)]
    return flags + _init_image(params, folder) + sdcpp_options.cli_flags(settings, folder)


def _prompt(params: queue_pb2.GenerationParams, lora_dir: Path | None) -> str:
    if not params.loras:
        return params.prompt
    if lora_dir is None:
        raise CliFailed("this model has no LoRA folder")
    tags = [f"<lora:{lora_file(lora_dir, lora.name)}:{lora.weight:g}>" for lora in params.loras]
    return " ".join([params.prompt, *tags])


def _init_image(params: queue_pb2.GenerationParams, folder: Path) -> list[str]:
    """img2img: the init image as a file (`-i`) and its strength."""
    if params.mode != queue_pb2.GENERATION_MODE_IMG2IMG:
        return []
    if len(params.init_images) != 1:
        raise CliFailed(f"sd-cli takes one init image; the job has {len(params.init_images)}")
    data = params.init_images[0]
    suffix = {"image/jpeg": ".jpg", "image/webp": ".webp"}.get(mime_of(data), ".png")
    init = folder / f"init{suffix}"
    init.write_bytes(data)
    flags = ["-i", str(init)]
    if params.denoising_strength:
        flags += ["--strength", f"{params.denoising_strength:g}"]
    return flags


def lora_dir_of(model: ModelConfig, base_dir: Path, models_dir: Path) -> Path | None:
    """Where the model's LoRAs are: the folder its args give sd.cpp (`--lora-model-dir`);
    for a cli model (the agent adds the flag) else the node's models folder's `loras`;
    None for a server started without one."""
    args = list(model.args)
    for i, arg in enumerate(args):
        if arg == LORA_DIR_FLAG and i + 1 < len(args):
            return (base_dir / args[i + 1]).resolve()
        if arg.startswith(LORA_DIR_FLAG + "="):
            return (base_dir / arg.split("=", 1)[1]).resolve()
    if model.exec_mode != "cli":
        return None
    return models_dir / "loras"


def lora_files(folder: Path | None, limit: int = 5000) -> list[str]:
    """The LoRA files below `folder` (relative, sorted); [] without one."""
    if folder is None or not folder.is_dir():
        return []
    found = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.suffix.lower() in LORA_SUFFIXES and p.is_file()
    )
    return found[:limit]


def lora_file(folder: Path, name: str) -> str:
    """The file (relative to `folder`) of the LoRA `name` names: its file name, with or
    without the extension, or its path below `folder`.

    Raises:
        CliFailed: no such LoRA there (listing some that are).
    """
    want = name.strip().lower().replace("\\", "/")
    found = lora_files(folder)
    for path in found:
        stem = path.rsplit(".", 1)[0].lower()
        if want in (path.lower(), stem, stem.rsplit("/", 1)[-1], path.rsplit("/", 1)[-1].lower()):
            if ":" in path or ">" in path:  # the tag's own separators
                raise CliFailed(f"LoRA file {path!r}: sd-cli cannot load a name with ':' or '>'")
            return path
    some = ", ".join(p.rsplit(".", 1)[0] for p in found[:8]) or "none"
    raise CliFailed(f"no LoRA {name!r} in {folder}; it has {some}")


def check_settings(model: ModelConfig, extra_json: str) -> None:
    """Settings the model's process cannot honour as configured.

    Raises:
        CliFailed: e.g. a control image for a model started without a ControlNet.
    """
    try:
        settings: dict[str, Any] = sdcpp_options.parse_json(extra_json)
    except sdcpp_options.BadOption as e:
        raise CliFailed(f"extra setting {e}") from None
    if "control_image" in settings and not any(a.startswith("--control-net") for a in model.args):
        raise CliFailed(
            "control_image: this model's args load no ControlNet (--control-net), so "
            "sd.cpp would ignore the image"
        )


async def run_cli(
    key: str,
    model: ModelConfig,
    base_dir: Path,
    params: queue_pb2.GenerationParams,
    on_step: Callable[[Step], None] | None = None,
    models_dir: Path | None = None,
) -> list[bytes]:
    """Runs the CLI once for `params`; returns the PNG bytes it wrote, in order.
    `on_step` gets each progress redraw it prints while sampling.

    Raises:
        CliFailed: the command is missing, exits non-zero, or writes no image.
    """
    command = resolve_command(model.command, base_dir)
    if command is None:
        raise CliFailed(f"{model.command!r} not found or not executable")
    values = {"MODEL": key, "HOST": "127.0.0.1"}
    args = [PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), a) for a in model.args]
    check_settings(model, params.extra_json)
    lora_dir = lora_dir_of(model, base_dir, models_dir or base_dir)
    assert lora_dir is not None  # a cli model always has one
    if params.loras and LORA_DIR_FLAG not in " ".join(args):
        args += [LORA_DIR_FLAG, str(lora_dir)]  # sd-cli reads no `<lora:…>` tag without it
    with tempfile.TemporaryDirectory(prefix="sq-cli-") as folder:
        output = Path(folder) / "output.png"
        flags = await asyncio.to_thread(cli_flags, params, Path(folder), lora_dir)
        proc = await asyncio.create_subprocess_exec(
            command, *args, *flags,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True, cwd=base_dir,
            env={**os.environ, **model.env},
        )  # fmt: skip
        tail: collections.deque[str] = collections.deque(maxlen=20)
        try:
            assert proc.stdout is not None
            sampling = Sampling()
            async for line in output_lines(proc.stdout):
                keep_tail(tail, line)
                step = sampling.step(line)
                if step is not None and on_step is not None:
                    on_step(step)
            code = await proc.wait()
        except asyncio.CancelledError:  # the job was cancelled: end the run
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            raise
        if code < 0:
            raise CliFailed(f"{key} was killed by signal {-code}: {reason(tail)}", retryable=True)
        if code != 0:
            raise CliFailed(f"{key} exited with code {code}: {reason(tail)}")
        images = await asyncio.to_thread(_read_outputs, output)
        if not images:
            raise CliFailed(f"{key} wrote no image: {reason(tail)}")
        return images


def reason(tail: collections.deque[str]) -> str:
    """What a failed run said: its error lines (sd-cli prints its usage text after
    them), else its last lines; never a progress bar."""
    said = [line for line in tail if not is_bar(line)]
    errors = [line for line in said if "error" in line.lower() or "invalid" in line.lower()]
    return " | ".join(errors[-3:] or said[-3:]) or "no output"


def _read_outputs(output: Path) -> list[bytes]:
    """`output.png`, or `output_1.png` .. `output_N.png` for a batch, in order."""
    if output.exists():
        return [output.read_bytes()]
    batch = sorted(
        output.parent.glob(f"{output.stem}_*{output.suffix}"),
        key=lambda p: int(p.stem.rsplit("_", 1)[1]),
    )
    return [path.read_bytes() for path in batch]
