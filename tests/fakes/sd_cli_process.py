"""A small stand-in for stable-diffusion.cpp's `sd-cli` (PROTOCOLS.md §9), run as a process.

It takes the generation flags sd-cli takes, prints sd.cpp's progress bar (redrawn
with `\r`, $SQ_FAKE_STEP_SECONDS per step), writes `-b` PNGs with the `parameters`
chunk (`-o out.png`, or out_1.png .. out_N.png for a batch), logs like sd-cli,
and fails (exit 1) when the prompt contains FAIL. Like sd-cli it reads LoRAs only
as `<lora:path:weight>` prompt tags, and only with `--lora-model-dir` (a missing
file is a warning and the tag is dropped); images given by path must load.
Each run appends what it parsed (JSON) to $SQ_FAKE_ARGS_LOG when that is set.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import sys
import time
from pathlib import Path

from PIL import Image, PngImagePlugin
from sdcpp_tables import SAMPLE_METHODS, SCHEDULERS  # beside this file (run as a script)


def load_tensors(count: int = 140) -> None:
    """sd.cpp's tensor-loading bar (a rate in MB/s, not steps), redrawn with `\r`."""
    for done in range(10, count + 1, 10):
        bar = ("#" * (50 * done // count)).ljust(50)
        sys.stdout.write(f"\r  |{bar}| {done}/{count} - 469.63MB/s\x1b[K")
    sys.stdout.write("\n[INFO ] model_loader.cpp:1304 - loading tensors completed\n")
    sys.stdout.flush()


def bar(done: int, total: int, step_seconds: float) -> None:
    """sd.cpp's progress bar: redrawn in place (`\r`, no newline)."""
    drawn = ("=" * (50 * done // total)).ljust(50)
    sys.stdout.write(f"\r  |{drawn}| {done}/{total} - {1 / max(step_seconds, 1e-3):.2f}it/s")
    sys.stdout.flush()


def sample(steps: int, step_seconds: float, method: str) -> None:
    """Sampling as sd.cpp logs it: a line before, the bar after every step, a line after."""
    print(f"[INFO ] stable-diffusion.cpp:4380 - sampling using {method} method", flush=True)
    for done in range(1, steps + 1):
        time.sleep(step_seconds)
        bar(done, steps, step_seconds)
    sys.stdout.write("\n[INFO ] stable-diffusion.cpp:5711 - sampling completed, taking 0.10s\n")
    sys.stdout.flush()


def decode(tiles: int) -> None:
    """The VAE decode; tiled, it draws the same bar over its tiles."""
    print("[INFO ] stable-diffusion.cpp:5321 - decoding 1 latents", flush=True)
    for done in range(1, tiles + 1):
        bar(done, tiles, 0.001)
    sys.stdout.write("\n" if tiles else "")
    print("[INFO ] stable-diffusion.cpp:5391 - decode_first_stage completed", flush=True)


LORA_TAG = re.compile(r"<lora:([^:>]+):([^>]+)>")


def loras_of(args: argparse.Namespace) -> dict[str, float]:
    """The `<lora:…>` tags sd-cli applies (removed from the prompt): read only with
    --lora-model-dir, a path relative to it, tried with sd.cpp's extensions."""
    found: dict[str, float] = {}
    if not args.lora_model_dir:
        return found
    for name, weight in LORA_TAG.findall(args.prompt):
        path = Path(args.lora_model_dir, name)
        candidates = [
            path,
            *(path.with_name(path.name + e) for e in (".gguf", ".safetensors", ".pt", ".ckpt")),
        ]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            print(f"[WARN ] can not found lora {path}", flush=True)
        else:
            found[str(hit)] = found.get(str(hit), 0.0) + float(weight)
    args.prompt = LORA_TAG.sub("", args.prompt)
    return found


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
    parser.add_argument("-i", "--init-img", default="")
    parser.add_argument("--strength", type=float, default=0.75)
    parser.add_argument("--lora-model-dir", default="")
    parser.add_argument("--clip-skip", type=int, default=-1)
    parser.add_argument("--eta", type=float)
    parser.add_argument("--flow-shift", type=float)
    parser.add_argument("--vae-tiling", action="store_true")
    parser.add_argument("--vae-tile-size", default="32x32")
    parser.add_argument("--vae-tile-overlap", type=float, default=0.5)
    parser.add_argument("--cache-mode", choices=("easycache", "ucache", "dbcache", "taylorseer",
                                                 "cache-dit", "spectrum"))  # fmt: skip
    parser.add_argument("--cache-option", default="")
    parser.add_argument("--hires", action="store_true")
    parser.add_argument("--hires-scale", type=float, default=2.0)
    parser.add_argument("--hires-width", type=int, default=0)
    parser.add_argument("--hires-height", type=int, default=0)
    parser.add_argument("--hires-steps", type=int, default=0)
    parser.add_argument("--hires-denoising-strength", type=float, default=0.7)
    parser.add_argument("--hires-upscaler", default="Latent")
    parser.add_argument("--control-net", default="")
    parser.add_argument("--control-image", default="")
    parser.add_argument("--control-strength", type=float, default=0.9)
    parser.add_argument("-r", "--ref-image", action="append", default=[])
    args = parser.parse_args()
    args.loras = loras_of(args)
    for path in [args.init_img, args.control_image, *args.ref_image]:
        if path:
            try:
                Image.open(path).load()
            except OSError:
                print(f"[ERROR] load image from '{path}' failed", flush=True)
                return 1
    if args.init_img:  # as sd-cli: the init image sets the size when none is given
        with Image.open(args.init_img) as init:
            args.init_size = list(init.size)
    if os.environ.get("SQ_FAKE_ARGS_LOG"):
        with open(os.environ["SQ_FAKE_ARGS_LOG"], "a") as log:
            log.write(json.dumps(vars(args)) + "\n")
    # As sd-cli: an unknown name is an error, followed by its usage text.
    for what, value, known in (("sample method", args.sampling_method, SAMPLE_METHODS),
                               ("scheduler", args.scheduler, SCHEDULERS)):  # fmt: skip
        if value not in known:
            print(f"error: invalid {what} {value}", flush=True)
            print("usage: sd-cli [arguments]\n\narguments:\n  -h, --help  show this help")
            return 1
    load_tensors()
    sample(args.steps, float(os.environ.get("SQ_FAKE_STEP_SECONDS", "0.005")), args.sampling_method)
    decode(16 if args.vae_tiling else 0)
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
