"""Download benchmark (`make bench`): our downloader vs a plain streamed copy, side by side.

Prints the throughput of `fetch_url` (streams to a partial file, hashes every
library hash on a writer thread, links into place) against a plain httpx stream
written straight to a file, and of `fetch_url` with its default fsync (the bytes
are on disk before the file appears), for the same bytes from the same loopback
server (a separate process serving the file with sendfile). Rounds alternate, so
a noisy machine slows both alike, and start with no dirty pages left by the other
(os.sync untimed: the plain copy's writeback would otherwise land in our fsync);
the ratio of medians is the figure (target >= 0.8).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stablequeue_coordinator.downloads.fetch import fetch_url, partial_path  # noqa: E402

SERVER = """
import sys
from aiohttp import web
path, port = sys.argv[1], int(sys.argv[2])
app = web.Application()
app.router.add_get("/model.safetensors", lambda request: web.FileResponse(path))
web.run_app(app, host="127.0.0.1", port=port, print=None)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_file(path: Path, size: int) -> str:
    """A safetensors-shaped file of `size` bytes (so AutoV3 is computed too)."""
    header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        head = len(header).to_bytes(8, "little") + header
        f.write(head)
        digest.update(head)
        block = os.urandom(4 * 2**20)
        left = size - len(head)
        while left > 0:
            piece = block[: min(left, len(block))]
            f.write(piece)
            digest.update(piece)
            left -= len(piece)
    return digest.hexdigest()


async def plain(url: str, target: Path) -> None:
    async with httpx.AsyncClient(timeout=60) as client, client.stream("GET", url) as response:
        with open(target, "wb") as f:  # noqa: ASYNC230 (the plain baseline, as people write it)
            async for chunk in response.aiter_raw():
                f.write(chunk)


async def ours(url: str, target: Path, sha256: str, round_id: str, durable: bool) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        await fetch_url(
            client, url, target, partial_path(target, round_id), sha256=sha256, durable=durable
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sq-bench-dl-") as folder:
        work = Path(folder)
        source = work / "source.safetensors"
        sha = make_file(source, args.size_mb * 2**20)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-c", SERVER, str(source), str(port)])
        try:
            url = f"http://127.0.0.1:{port}/model.safetensors"
            deadline = time.monotonic() + 20
            while True:
                try:
                    httpx.head(url)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            times: dict[str, list[float]] = {"plain": [], "ours": [], "durable": []}
            for n in range(args.rounds):
                for name in times:
                    target = work / f"{name}-{n}.safetensors"
                    os.sync()  # neither round inherits the other's unwritten pages
                    started = time.perf_counter()
                    if name == "plain":
                        asyncio.run(plain(url, target))
                    else:
                        asyncio.run(ours(url, target, sha, f"{name}{n}", name == "durable"))
                    times[name].append(time.perf_counter() - started)
                    target.unlink()
        finally:
            server.terminate()
            server.wait()
    size = args.size_mb / 1024
    plain_s, ours_s, durable_s = (statistics.median(times[k]) for k in times)
    print(f"\nStableQueue download benchmark ({args.size_mb} MiB from loopback, "
          f"{args.rounds} rounds, medians)")  # fmt: skip
    print(f"  plain streamed copy              {size / plain_s:6.2f} GiB/s")
    print(f"  ours, every hash                 {size / ours_s:6.2f} GiB/s")
    print(f"  ours, every hash + fsync         {size / durable_s:6.2f} GiB/s   (the default)")
    print(f"  ratio ours/plain                 {plain_s / ours_s:6.2f}   (target >= 0.8)")
    print(
        f"  ratio ours+fsync/plain           {plain_s / durable_s:6.2f}   (what durability costs)"
    )


if __name__ == "__main__":
    main()
