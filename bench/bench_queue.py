"""Queue benchmarks: ratios measured side by side in one run (`make bench`).

Each coordinator runs as its own process (as in production); this process is
the client. Rounds of the things being compared are interleaved so drift on a
shared machine hits both sides alike; medians of the rounds are reported.

Prints:
  * SubmitJob rate vs a bare RPC (gRPC health Check) rate, as a ratio, with 16 calls
    in flight (their commits grouped) and one call at a time (goal >= 0.5 each);
  * SubmitJob rate with 100,000 jobs pending vs an empty queue, as a ratio;
  * ListJobs first-page latency with 100,000 pending (p50/p99);
  * delay from a change to its WatchJob event (p50/p99);
  * SubmitJobs of 50 copies of a 4 MiB img2img job vs 1 copy (the batch stores
    its init image once), as a ratio of times.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stablequeue import txt2img
from stablequeue.v1 import queue_pb2, queue_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = bytes.fromhex("89504e470d0a1a0a")


class Coordinator:
    def __init__(self, data_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stablequeue_coordinator", "--listen", "127.0.0.1:0",
             "--http-listen", "127.0.0.1:0",
             "--data-dir", str(data_dir), "--log-level", "WARNING"],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"coordinator did not start: {line!r}")
        self.address = line.rsplit(" ", 1)[-1].strip()
        self.channel = grpc.aio.insecure_channel(self.address)
        self.queue = queue_pb2_grpc.QueueServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()
        self.proc.terminate()
        self.proc.wait(10)


async def rate(call: Callable[[], Awaitable[object]], seconds: float, concurrency: int) -> float:
    """Completed calls per second with `concurrency` calls in flight for `seconds`."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - start)


async def rpc_cpu(
    coordinator: Coordinator, call: Callable[[], Awaitable[object]], calls: int = 3000,
    concurrency: int = 16,
) -> float:  # fmt: skip
    """The coordinator's CPU ms per call: `calls` of them, `concurrency` in flight."""
    process = psutil.Process(coordinator.proc.pid)
    left = calls

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    before = process.cpu_times()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    after = process.cpu_times()
    return (after.user + after.system - before.user - before.system) * 1000 / calls


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def fill(coordinator: Coordinator, jobs: int) -> None:
    spec = txt2img("filler", steps=20)
    started = time.perf_counter()
    for done in range(0, jobs, 1000):
        await coordinator.queue.SubmitJobs(
            queue_pb2.SubmitJobsRequest(spec=spec, count=min(1000, jobs - done))
        )
        if (done + 1000) % 20_000 == 0 or done + 1000 >= jobs:
            print(f"  filled {min(done + 1000, jobs):,}/{jobs:,}", flush=True)
    elapsed = time.perf_counter() - started
    print(f"  ({elapsed:.1f} s, {jobs / elapsed:,.0f} jobs/s through SubmitJobs)")


async def watch_delays(coordinator: Coordinator, changes: int) -> tuple[list[float], list[float]]:
    """(commit->delivery, call start->delivery) in ms for `changes` SetPriority calls."""
    job = (await coordinator.queue.SubmitJob(queue_pb2.SubmitJobRequest(spec=txt2img("w")))).job
    stream = coordinator.queue.WatchJob(queue_pb2.WatchJobRequest(id=job.id))
    await stream.read()  # snapshot
    from_commit, from_call = [], []
    for i in range(changes):
        sent = time.time()
        await coordinator.queue.SetPriority(queue_pb2.SetPriorityRequest(id=job.id, priority=i % 7))
        event = await stream.read()
        while event.type != queue_pb2.JOB_EVENT_TYPE_MOVED:  # e.g. "waiting for a server"
            event = await stream.read()
        received = time.time()
        from_commit.append((received - event.time.ToDatetime().timestamp()) * 1000)
        from_call.append((received - sent) * 1000)
    stream.cancel()
    return from_commit, from_call


async def batch_times(coordinator: Coordinator, rounds: int) -> tuple[list[float], list[float]]:
    """Seconds for SubmitJobs of 1 and of 50 copies of a 4 MiB img2img job, interleaved."""
    image = PNG_MAGIC + random.randbytes(4 << 20)
    spec = txt2img("a benchmark cat", init_images=[image])
    one, many = [], []
    for _ in range(rounds * 2):
        for count, times in ((1, one), (50, many)):
            request = queue_pb2.SubmitJobsRequest(spec=spec, count=count)
            started = time.perf_counter()
            await coordinator.queue.SubmitJobs(request)
            times.append(time.perf_counter() - started)
    return one, many


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        empty, deep = Coordinator(Path(tmp) / "empty"), Coordinator(Path(tmp) / "deep")
        try:
            print(f"filling the deep queue with {args.depth:,} jobs")
            await fill(deep, args.depth)
            spec = txt2img("a benchmark cat", steps=20, width=512, height=512)
            request = queue_pb2.SubmitJobRequest(spec=spec)
            check = health_pb2.HealthCheckRequest()

            bare, submit_empty, submit_deep = [], [], []
            bare_one, submit_one = [], []
            for r in range(args.rounds):
                bare_one.append(await rate(lambda: empty.health.Check(check), args.seconds, 1))
                submit_one.append(
                    await rate(lambda: empty.queue.SubmitJob(request), args.seconds, 1)
                )
                bare.append(
                    await rate(lambda: empty.health.Check(check), args.seconds, args.concurrency)
                )
                submit_empty.append(
                    await rate(
                        lambda: empty.queue.SubmitJob(request), args.seconds, args.concurrency
                    )
                )
                submit_deep.append(
                    await rate(
                        lambda: deep.queue.SubmitJob(request), args.seconds, args.concurrency
                    )
                )
                print(f"  round {r + 1}/{args.rounds}: bare {bare[-1]:.0f}/s, submit empty "
                      f"{submit_empty[-1]:.0f}/s, submit deep {submit_deep[-1]:.0f}/s")  # fmt: skip

            first_page = []
            page = queue_pb2.ListJobsRequest(statuses=[queue_pb2.JOB_STATUS_PENDING])
            page.page.page_size = 50
            for _ in range(args.samples):
                started = time.perf_counter()
                reply = await deep.queue.ListJobs(page)
                first_page.append((time.perf_counter() - started) * 1000)
                assert len(reply.jobs) == 50
            stats = (await deep.queue.GetQueueStats(queue_pb2.GetQueueStatsRequest())).stats
            from_commit, from_call = await watch_delays(empty, args.samples)
            one_copy, many_copies = await batch_times(empty, args.rounds)
        finally:
            await empty.close()
            await deep.close()

    b, se, sd = (statistics.median(x) for x in (bare, submit_empty, submit_deep))
    # Ratios are taken within each round (measured back to back), then the median.
    submit_ratio = statistics.median(s / r for s, r in zip(submit_empty, bare, strict=True))
    one_ratio = statistics.median(s / r for s, r in zip(submit_one, bare_one, strict=True))
    depth_ratio = statistics.median(d / e for d, e in zip(submit_deep, submit_empty, strict=True))
    print()
    print(f"StableQueue queue benchmark ({args.rounds} rounds x {args.seconds}s, "
          f"{args.concurrency} calls in flight, medians)")  # fmt: skip
    print(f"  bare RPC (health Check)       {b:8.0f} calls/s")
    print(f"  SubmitJob, empty queue        {se:8.0f} calls/s")
    print(f"  SubmitJob, {stats.pending:,} pending {sd:8.0f} calls/s")
    print(f"  submit / bare RPC ratio       {submit_ratio:8.2f}   (goal >= 0.5; "
          f"{args.concurrency} in flight, grouped commits)")  # fmt: skip
    b1, s1 = statistics.median(bare_one), statistics.median(submit_one)
    print(f"  ... one call at a time        {one_ratio:8.2f}   (goal >= 0.5; bare "
          f"{b1:.0f}/s, submit {s1:.0f}/s)")  # fmt: skip
    print(f"  deep / empty submit ratio     {depth_ratio:8.2f}   (target >= 0.9)")
    print(f"  ListJobs first page @{stats.pending:,}: p50 {pct(first_page, .5):.2f} ms, "
          f"p99 {pct(first_page, .99):.2f} ms   (target < 20 ms)")  # fmt: skip
    print(f"  WatchJob event after commit:  p50 {pct(from_commit, .5):.2f} ms, "
          f"p99 {pct(from_commit, .99):.2f} ms   (target p50 < 5 ms)")  # fmt: skip
    print(f"  WatchJob event after call:    p50 {pct(from_call, .5):.2f} ms, "
          f"p99 {pct(from_call, .99):.2f} ms   (includes the SetPriority round trip)")  # fmt: skip
    o, m = statistics.median(one_copy) * 1000, statistics.median(many_copies) * 1000
    print(f"  SubmitJobs 4 MiB img2img:     1 copy {o:.1f} ms, 50 copies {m:.1f} ms, "
          f"ratio {m / o:.2f}   (the image is stored once per batch)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--depth", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--samples", type=int, default=300)
    asyncio.run(main(parser.parse_args()))
