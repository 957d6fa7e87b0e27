"""Model-library benchmarks (`make bench`): hashing and scanning, side by side in one run.

Prints:
  * hashing a 1 GiB safetensors file: our SHA-256 + AutoV2 + AutoV1 pass vs plain
    `hashlib.sha256` over the same file (target >= 0.9x), and what the tensor-data
    hash (AutoV3) and BLAKE3 add;
  * scanning two such files vs one (throughput ratio; target >= 1.6x on 2 cores);
  * a rescan of 10,000 unchanged files (target < 3 s);
  * peak memory (RSS) while hashing (target < 200 MB).

Files are built in a temporary folder (the two-file case uses hard links, so
1 GiB of disk is enough); reads come from the page cache after the first round,
so what is compared is CPU, not the disk.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stablequeue_coordinator.library.hashing import BLOCK, HAS_BLAKE3, hash_file  # noqa: E402
from stablequeue_coordinator.library.service import ModelLibrary  # noqa: E402
from stablequeue_coordinator.store.db import Database  # noqa: E402

MiB = 1024 * 1024


def make_safetensors(path: Path, size: int) -> None:
    """A valid safetensors file with one uint8 tensor of `size` bytes."""
    header = json.dumps({"big": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}})
    header += " " * (-len(header) % 8)
    chunk = os.urandom(64 * MiB)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header.encode())
        for written in range(0, size, len(chunk)):
            f.write(chunk[: min(len(chunk), size - written)])


def plain_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while block := f.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class PeakRss:
    """Samples this process's RSS every 5 ms while active."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def scan_seconds(library: ModelLibrary) -> float:
    start = time.perf_counter()
    async for _ in library.scan(force=True):
        pass
    return time.perf_counter() - start


async def rescan_seconds(tmp: Path, files: int) -> tuple[float, float]:
    root = tmp / "many"
    for i in range(files):
        folder = root / f"{i // 500:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"model_{i:05d}.ckpt").write_bytes(i.to_bytes(4, "big") * 16)
    db = Database(f"sqlite:///{tmp / 'many.db'}")
    db.migrate()
    library = ModelLibrary(db, [root])
    try:
        first = time.perf_counter()
        async for _ in library.scan():
            pass
        first_s = time.perf_counter() - first
        start = time.perf_counter()
        async for progress in library.scan():
            final = progress
        assert final.files_cached == files and final.files_hashed == 0, final
        return first_s, time.perf_counter() - start
    finally:
        db.close()


async def main(args: argparse.Namespace) -> None:
    size = args.size_mib * MiB
    with tempfile.TemporaryDirectory(dir=args.tmp) as name:
        tmp = Path(name)
        one, two = tmp / "one", tmp / "two"
        one.mkdir()
        two.mkdir()
        big = one / "big.safetensors"
        print(f"writing a {args.size_mib} MiB safetensors file", flush=True)
        make_safetensors(big, size)
        os.link(big, two / "a.safetensors")
        os.link(big, two / "b.safetensors")
        assert hash_file(big).sha256 == plain_sha256(big)

        plain, ours, with_v3, with_b3 = [], [], [], []
        for r in range(args.rounds):
            plain.append(timed(lambda: plain_sha256(big)))
            ours.append(timed(lambda: hash_file(big)))
            with_v3.append(timed(lambda: hash_file(big, tensor_hash=True)))
            if HAS_BLAKE3:
                with_b3.append(timed(lambda: hash_file(big, blake3=True)))
            print(f"  round {r + 1}/{args.rounds}: plain {plain[-1]:.2f} s, ours {ours[-1]:.2f} s",
                  flush=True)  # fmt: skip

        db = Database(f"sqlite:///{tmp / 'scan.db'}")
        db.migrate()
        singles, doubles = [], []
        with PeakRss() as rss:
            baseline = psutil.Process().memory_info().rss
            for _ in range(args.rounds):
                singles.append(await scan_seconds(ModelLibrary(db, [one], workers=2)))
                doubles.append(await scan_seconds(ModelLibrary(db, [two], workers=2)))
        db.close()
        first_scan, rescan = await rescan_seconds(tmp, args.files)

    ratio = statistics.median(p / o for p, o in zip(plain, ours, strict=True))
    v3 = statistics.median(v / o for v, o in zip(with_v3, ours, strict=True))
    parallel = statistics.median(s * 2 / d for s, d in zip(singles, doubles, strict=True))
    mb_s = size / MiB / statistics.median(ours)
    print()
    print(f"StableQueue library benchmark ({args.rounds} rounds, {args.size_mib} MiB file, "
          f"{os.cpu_count()} cores, medians)")  # fmt: skip
    print(f"  hashing: plain sha256 {size / MiB / statistics.median(plain):.0f} MiB/s, "
          f"ours (sha256+AutoV2+AutoV1) {mb_s:.0f} MiB/s")  # fmt: skip
    print(f"  ours / plain sha256 throughput    {ratio:.2f}   (target >= 0.9)")
    print(f"  + tensor-data hash (AutoV3): time x{v3:.2f}")
    if with_b3:
        b3 = statistics.median(b / o for b, o in zip(with_b3, ours, strict=True))
        print(f"  + BLAKE3: time x{b3:.2f}")
    print(
        f"  two-file scan / one-file scan throughput  {parallel:.2f}   (target >= 1.6 on 2 cores)"
    )
    print(f"  rescan of {args.files:,} unchanged files: {rescan:.2f} s   (target < 3 s; "
          f"first scan {first_scan:.2f} s)")  # fmt: skip
    print(
        f"  peak RSS while scanning: {rss.peak / MiB:.0f} MiB "
        f"({(rss.peak - baseline) / MiB:+.0f} MiB over the process before)   (target < 200 MB)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--tmp", default=None, help="folder for the test files (default: TMPDIR)")
    asyncio.run(main(parser.parse_args()))
