"""A small stand-in for stable-diffusion.cpp's `sd-cli` (PROTOCOLS.md §9), run as a process.

It takes the generation flags sd-cli takes, prints sd.cpp's progress bar (redrawn
with `\r`, $SQ_FAKE_STEP_SECONDS per step), writes `-b` PNGs with the `parameters`
chunk (`-o out.png`, or out_1.png .. out_N.png for a batch), logs like sd-cli,
and fails (exit 1) when the prompt contains FAIL.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import time
from pathlib import Path

from PIL import Image, PngImagePlugin
from sdcpp_tables import SAMPLE_METHODS, SCHEDULERS  # beside this file (run as a script)


def sample(steps: int, step_seconds: float) -> None:
    """sd.cpp's progress bar: redrawn in place (`\r`, no newline) after every step."""
    for done in range(1, steps + 1):
        time.sleep(step_seconds)
        bar = ("=" * (50 * done // steps)).ljust(50)
        sys.stdout.write(f"\r  |{bar}| {done}/{steps} - {1 / max(step_seconds, 1e-3):.2f}it/s")
        sys.stdout.flush()
    sys.stdout.write("\n")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-m", "--model", required=True)
    parser.add_argument("-p", "--prompt", required=True)
    parser.add_argument("-n", "--negative-prompt", default="")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("-W", "--width", type=int, default=512)
    parser.add_argument("-H", "--height", type=int, default=512)
    parser.add_argument("--cfg-scale", type=float, default=7.0)
    parser.add_argument("-s", "--seed", type=int, default=42)
    parser.add_argument("--sampling-method", default="euler_a")
    parser.add_argument("--scheduler", default="discrete")
    parser.add_argument("-b", "--batch-count", type=int, default=1)
    parser.add_argument("-o", "--output", default="./output.png")
    args = parser.parse_args()
    # As sd-cli: an unknown name is an error, followed by its usage text.
    for what, value, known in (("sample method", args.sampling_method, SAMPLE_METHODS),
                               ("scheduler", args.scheduler, SCHEDULERS)):  # fmt: skip
        if value not in known:
            print(f"error: invalid {what} {value}", flush=True)
            print("usage: sd-cli [arguments]\n\narguments:\n  -h, --help  show this help")
            return 1
    sample(args.steps, float(os.environ.get("SQ_FAKE_STEP_SECONDS", "0.005")))
    if "FAIL" in args.prompt:
        print("[ERROR] generate_image failed: simulated failure", flush=True)
        return 1
    if args.seed < 0:  # as sd-cli: a random seed, written into the images
        args.seed = random.randrange(2**31)
    out = Path(args.output)
    for i in range(args.batch_count):
        path = out if args.batch_count == 1 else out.with_name(f"{out.stem}_{i + 1}{out.suffix}")
        info = PngImagePlugin.PngInfo()
        info.add_text(
            "parameters",
            f"{args.prompt}\nSteps: {args.steps}, Seed: {args.seed + i}, "
            f"Sampler: {args.sampling_method}, Scheduler: {args.scheduler}",
        )
        buffer = io.BytesIO()
        Image.new("RGB", (args.width // 16, args.height // 16), (200, 50, i * 40)).save(
            buffer, format="PNG", pnginfo=info
        )
        path.write_bytes(buffer.getvalue())
        print(f"save result image {i} to '{path}' (success)", flush=True)
    print(f"{args.batch_count}/{args.batch_count} images saved", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
