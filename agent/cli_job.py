"""`exec_mode: cli` models: one sd-cli run per job (PROTOCOLS.md §9).

The job's parameters become sd-cli flags after the model's own args; the images
are read back from a temporary folder and removed. The process gets its own
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

from agent.config import PLACEHOLDER, ModelConfig, resolve_command
from agent.output import Step, keep_tail, step_of
from agent.output import lines as output_lines
from coordinator.backends import sdcpp_names
from stablequeue.v1 import queue_pb2


class CliFailed(Exception):
    """The CLI run failed; the message holds its exit code and last output.
    `retryable`: it was killed (a signal), not refusing the job."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


def cli_flags(params: queue_pb2.GenerationParams, output: Path) -> list[str]:
    flags = ["-p", params.prompt, "-o", str(output)]
    if params.negative_prompt:
        flags += ["-n", params.negative_prompt]
    for flag, value in (("--steps", params.steps), ("-W", params.width), ("-H", params.height),
                        ("--cfg-scale", params.cfg_scale)):  # fmt: skip
        if value:
            flags += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    flags += ["-s", str(params.seed)]
    try:
        method, scheduler = sdcpp_names.translate(params.sampler, params.scheduler)
    except sdcpp_names.UnknownName as e:
        raise CliFailed(str(e)) from None
    if method:
        flags += ["--sampling-method", method]
    if scheduler:
        flags += ["--scheduler", scheduler]
    count = (params.batch_size or 1) * (params.iterations or 1)
    if count > 1:
        flags += ["-b", str(count)]
    return flags


async def run_cli(
    key: str,
    model: ModelConfig,
    base_dir: Path,
    params: queue_pb2.GenerationParams,
    on_step: Callable[[Step], None] | None = None,
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
    with tempfile.TemporaryDirectory(prefix="sq-cli-") as folder:
        output = Path(folder) / "output.png"
        proc = await asyncio.create_subprocess_exec(
            command, *args, *cli_flags(params, output),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True, cwd=base_dir,
            env={**os.environ, **model.env},
        )  # fmt: skip
        tail: collections.deque[str] = collections.deque(maxlen=20)
        try:
            assert proc.stdout is not None
            async for line in output_lines(proc.stdout):
                keep_tail(tail, line)
                step = step_of(line)
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
    said = [line for line in tail if step_of(line) is None]
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
