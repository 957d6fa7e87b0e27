"""A small sd-server-compatible program (PROTOCOLS.md §9), run as a real process by tests.

    python tests/fakes/sd_server_process.py --listen-port PORT [--startup-delay S]
        [--crash-after S] [--hang-on-start] [--ignore-sigterm] [--model PATH]
        [--step-seconds S] [--vae-tiling]

Like an sd-server build from before the native async API, it serves the A1111-style
`/sdapi/v1/options` and a blocking `/sdapi/v1/txt2img` once "loaded"; the flags give
the misbehaviours supervision must handle. `GET /fake/requests` (the tests' own, never
called by the agent) says how many generations are running and how many finished.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from PIL import Image, PngImagePlugin


def png(text: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 120, 200)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def bar(done: int, total: int) -> None:
    drawn = ("=" * (50 * done // total)).ljust(50)
    sys.stdout.write(f"\r  |{drawn}| {done}/{total} - 98.50it/s")
    sys.stdout.flush()


Handler = Callable[[web.Request], Awaitable[web.Response]]


def counted(handler: Handler, counts: dict[str, int]) -> Handler:
    """`handler`, counting the requests it is running and those it finished."""

    async def wrapped(request: web.Request) -> web.Response:
        counts["running"] += 1
        try:
            reply = await handler(request)
        finally:
            counts["running"] -= 1
        counts["finished"] += 1
        return reply

    return wrapped


async def reply_json(value: dict[str, int]) -> web.Response:
    return web.json_response(value)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen-port", type=int, required=True)
    parser.add_argument("--listen-ip", default="127.0.0.1")
    parser.add_argument("--model", default="/models/test-model.safetensors")
    parser.add_argument("--startup-delay", type=float, default=0.0)
    parser.add_argument("--crash-after", type=float, default=0.0)
    parser.add_argument("--hang-on-start", action="store_true")
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--step-seconds", type=float, default=0.01)
    parser.add_argument("--vae-tiling", action="store_true")
    args = parser.parse_args()

    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(f"loading model {args.model}", flush=True)
    if args.hang_on_start:
        while True:
            time.sleep(3600)
    time.sleep(args.startup_delay)
    if args.crash_after:

        def crash() -> None:
            time.sleep(args.crash_after)
            print("fatal: simulated crash", flush=True)
            os._exit(3)

        threading.Thread(target=crash, daemon=True).start()

    model_name = args.model.rsplit("/", 1)[-1]
    counts = {"running": 0, "finished": 0}

    async def options(request: web.Request) -> web.Response:
        return web.json_response({"samples_format": "png", "sd_model_checkpoint": model_name})

    async def txt2img(request: web.Request) -> web.Response:
        body = await request.json()
        steps = int(body.get("steps") or 4)
        print(f"generating: {body.get('prompt', '')}", flush=True)  # what tests count
        print("[INFO ] stable-diffusion.cpp:4380 - sampling using Euler A method", flush=True)
        for done in range(1, steps + 1):  # sd.cpp's bar, redrawn with \r (no newline)
            await asyncio.sleep(args.step_seconds)
            bar(done, steps)
        sys.stdout.write("\n[INFO ] stable-diffusion.cpp:5711 - sampling completed\n")
        if args.vae_tiling:  # the tiled decode draws the same bar, over its tiles
            print("[INFO ] stable-diffusion.cpp:5321 - decoding 1 latents", flush=True)
            for done in range(1, 17):
                bar(done, 16)
            sys.stdout.write("\n")
        seed = int(body.get("seed", 42))
        seed = seed if seed >= 0 else 7
        image = base64.b64encode(png(f"{body.get('prompt', '')}\nSteps: {steps}, Seed: {seed}"))
        info = json.dumps({"all_seeds": [seed], "index_of_first_image": 0})
        return web.json_response({"images": [image.decode()], "parameters": body, "info": info})

    app = web.Application()
    app.router.add_get("/sdapi/v1/options", options)
    app.router.add_post("/sdapi/v1/txt2img", counted(txt2img, counts))
    app.router.add_get("/fake/requests", lambda request: reply_json(counts))
    print(f"listening on http://{args.listen_ip}:{args.listen_port}", flush=True)
    web.run_app(
        app,
        host=args.listen_ip,
        port=args.listen_port,
        print=None,
        handle_signals=not args.ignore_sigterm,  # aiohttp would install its own handler
    )


if __name__ == "__main__":
    sys.exit(main())
