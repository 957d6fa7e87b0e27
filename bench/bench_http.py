"""HTTP/JSON gateway benchmark (`make bench`): what the HTTP API costs next to gRPC.

One coordinator process serves both; this process is the client of each in turn,
rounds interleaved so drift on a shared machine hits both alike (medians reported).
Every HTTP call is a gRPC call made by the gateway inside the coordinator, so the
figures show what that hop and the JSON mapping add.

Prints the latency of one call at a time on each path (p50/p99), then, for a read
(GetQueueStats), a durable write (SubmitJob) and a page of 50 jobs (ListJobs): calls/s
through HTTP and through gRPC with 8 calls in flight, their ratio, and the
coordinator's CPU time per call on each path (psutil).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_queue import Coordinator, fill, pct, rate  # noqa: E402
from stablequeue import txt2img  # noqa: E402
from stablequeue.v1 import common_pb2, queue_pb2  # noqa: E402

CONCURRENCY = 8
SPEC = txt2img("an http cat", steps=20)
SPEC_JSON = {"params": {"prompt": "an http cat", "steps": 20}}


class HttpCoordinator(Coordinator):
    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "HTTP API on" not in line:
            raise RuntimeError(f"no HTTP address: {line!r}")
        self.http_url = line.rsplit(" ", 1)[-1].strip()
        self.ps = psutil.Process(self.proc.pid)

    def cpu(self) -> float:
        times = self.ps.cpu_times()
        return times.user + times.system


async def measure(
    coordinator: HttpCoordinator, call: Callable[[], Awaitable[object]], seconds: float
) -> tuple[float, float]:
    """(calls/s, coordinator CPU ms per call) with CONCURRENCY calls in flight."""
    cpu, start = coordinator.cpu(), time.perf_counter()
    calls_per_s = await rate(call, seconds, CONCURRENCY)
    elapsed, used = time.perf_counter() - start, coordinator.cpu() - cpu
    return calls_per_s, used * 1000 / max(1.0, calls_per_s * elapsed)


async def main(seconds: float, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        coordinator = HttpCoordinator(Path(tmp) / "data")
        limits = httpx.Limits(max_keepalive_connections=CONCURRENCY)
        http = httpx.AsyncClient(base_url=coordinator.http_url + "/api/v1", limits=limits)
        try:
            await fill(coordinator, 1000)
            list_request = queue_pb2.ListJobsRequest(page=common_pb2.PageRequest(page_size=50))
            pairs: dict[str, tuple[Callable[[], Awaitable[object]], ...]] = {
                "GetQueueStats": (
                    lambda: coordinator.queue.GetQueueStats(queue_pb2.GetQueueStatsRequest()),
                    lambda: http.get("/queue/stats"),
                ),
                "SubmitJob": (
                    lambda: coordinator.queue.SubmitJob(queue_pb2.SubmitJobRequest(spec=SPEC)),
                    lambda: http.post("/jobs", json={"spec": SPEC_JSON}),
                ),
                "ListJobs (50)": (
                    lambda: coordinator.queue.ListJobs(list_request),
                    lambda: http.get("/jobs", params={"page.page_size": 50}),
                ),
            }
            answer = await http.get("/queue/stats")
            answer.raise_for_status()
            one: dict[str, list[float]] = {"HTTP": [], "gRPC": []}
            for _ in range(rounds * 100):  # one call at a time: the latency each path adds
                for side, call in (("gRPC", pairs["GetQueueStats"][0]),
                                   ("HTTP", pairs["GetQueueStats"][1])):  # fmt: skip
                    began = time.perf_counter()
                    await call()
                    one[side].append((time.perf_counter() - began) * 1000)
            print(
                f"GetQueueStats one at a time: HTTP p50 {pct(one['HTTP'], 0.5):.2f} ms "
                f"(p99 {pct(one['HTTP'], 0.99):.2f}), gRPC p50 {pct(one['gRPC'], 0.5):.2f} ms "
                f"(p99 {pct(one['gRPC'], 0.99):.2f})"
            )
            print(f"HTTP vs gRPC, {CONCURRENCY} calls in flight, median of {rounds} rounds:")
            for name, (grpc_call, http_call) in pairs.items():
                grpc_side, http_side = [], []
                for _ in range(rounds):
                    grpc_side.append(await measure(coordinator, grpc_call, seconds))
                    http_side.append(await measure(coordinator, http_call, seconds))
                g_rate = statistics.median(r for r, _ in grpc_side)
                h_rate = statistics.median(r for r, _ in http_side)
                g_cpu = statistics.median(c for _, c in grpc_side)
                h_cpu = statistics.median(c for _, c in http_side)
                print(
                    f"  {name:14} HTTP {h_rate:7,.0f}/s  gRPC {g_rate:7,.0f}/s  "
                    f"ratio {h_rate / g_rate:.2f}x   coordinator CPU per call: "
                    f"HTTP {h_cpu:.2f} ms, gRPC {g_cpu:.2f} ms"
                )
        finally:
            await http.aclose()
            await coordinator.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="length of one round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.rounds))
