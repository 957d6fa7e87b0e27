"""Scale benchmark (`make bench`): a farm's worth of history and hosts (issue 21).

Prints, each beside its goal:
  * ListJobs and the gallery's ListResults, first page (and the gallery's second), with
    1,000,000 finished jobs and 1,000,000 images stored, p50/p99 next to a bare RPC
    measured in the same rounds (goal < 20 ms);
  * the coordinator's CPU with nothing queued while 100 registered servers are probed on
    their interval and 50 node agents send heartbeats every 5 s (goal < 5% of a core);
  * SubmitJob latency in that farm, one call at a time (p50/p99);
  * 50,000 jobs through that farm's servers (zero-time generation): jobs/s and the
    coordinator's CPU per job (goal <= 1.5 ms).

The stored history is written straight into the coordinator's SQLite database (the
schema migrated by the coordinator's own code) before the coordinator starts; the
servers are the Forge fakes the tests use, the agents in-process stand-ins speaking
the real AgentSession protocol. `--finished` scales the history down for a quick run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path

import psutil
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2
from sqlalchemy import insert

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_dispatch import register  # noqa: E402
from bench.bench_queue import Coordinator, pct  # noqa: E402
from stablequeue import txt2img  # noqa: E402
from stablequeue.v1 import (  # noqa: E402
    common_pb2,
    processes_pb2,
    processes_pb2_grpc,
    queue_pb2,
)
from stablequeue_coordinator.store import Database  # noqa: E402
from stablequeue_coordinator.store.tables import JobRow, ResultRow  # noqa: E402
from tests.fakes.forge import FakeForge  # noqa: E402

CHUNK = 20_000
SPEC = txt2img("a stored cat", steps=20, width=512, height=512).SerializeToString()


def store_history(data: Path, finished: int) -> float:
    """Writes `finished` completed jobs with one image each; returns the seconds taken."""
    began = time.perf_counter()
    db = Database(f"sqlite:///{(data / 'stablequeue.db').resolve()}")
    db.migrate()
    start = datetime(2026, 1, 1)
    with db.engine.begin() as conn:
        for first in range(0, finished, CHUNK):
            jobs, results = [], []
            for i in range(first, min(finished, first + CHUNK)):
                at = start + timedelta(seconds=i)
                job_id = f"{i:016x}"
                jobs.append({
                    "id": job_id, "status": "completed", "stage": "done", "reason": "",
                    "app": "forge", "server": f"gpu-{i % 100}", "priority": 0,
                    "position": i * 1024, "attempts": 1, "submitted_by": "local",
                    "batch_id": job_id, "batch_index": 0, "label": "", "spec": SPEC,
                    "created_at": at, "updated_at": at, "started_at": at, "finished_at": at,
                })  # fmt: skip
                results.append({
                    "id": secrets.token_hex(8), "job_id": job_id, "idx": 0,
                    "path": f"2026-01-01/{job_id}-0.png", "mime": "image/png", "width": 512,
                    "height": 512, "seed": i, "size_bytes": 400_000,
                    "infotext": f"a stored cat\nSteps: 20, Seed: {i}", "prompt": "a stored cat",
                    "model": "sd_xl_base_1.0", "server": f"gpu-{i % 100}", "created_at": at,
                })  # fmt: skip
            conn.execute(insert(JobRow.__table__), jobs)  # type: ignore[attr-defined]
            conn.execute(insert(ResultRow.__table__), results)  # type: ignore[attr-defined]
            if (first // CHUNK) % 10 == 9:
                print(f"  stored {first + CHUNK:,}/{finished:,} jobs and images", flush=True)
    db.close()
    return time.perf_counter() - began


async def latencies(
    calls: dict[str, Callable[[], Awaitable[object]]], rounds: int
) -> dict[str, list[float]]:
    """ms per call of each, interleaved round by round."""
    out: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            began = time.perf_counter()
            await call()
            out[name].append((time.perf_counter() - began) * 1000)
    return out


async def listings(coordinator: Coordinator, rounds: int) -> None:
    page = common_pb2.PageRequest(page_size=50)
    first_gallery = await coordinator.queue.ListResults(queue_pb2.ListResultsRequest(page=page))
    second = common_pb2.PageRequest(page_size=50, page_token=first_gallery.next_page_token)
    completed = [queue_pb2.JOB_STATUS_COMPLETED]
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "bare RPC (health Check)": lambda: coordinator.health.Check(
            health_pb2.HealthCheckRequest()
        ),
        "ListJobs, queue order": lambda: coordinator.queue.ListJobs(
            queue_pb2.ListJobsRequest(page=page)
        ),
        "ListJobs, finished, newest": lambda: coordinator.queue.ListJobs(
            queue_pb2.ListJobsRequest(
                statuses=completed, order=queue_pb2.JOB_ORDER_NEWEST, page=page
            )
        ),
        "gallery, first page": lambda: coordinator.queue.ListResults(
            queue_pb2.ListResultsRequest(page=page)
        ),
        "gallery, second page": lambda: coordinator.queue.ListResults(
            queue_pb2.ListResultsRequest(page=second)
        ),
        "gallery, one server's model": lambda: coordinator.queue.ListResults(
            queue_pb2.ListResultsRequest(model="sd_xl_base_1.0", page=page)
        ),
        # The console's Servers page asks every 3 s; scripts poll it.
        "GetQueueStats": lambda: coordinator.queue.GetQueueStats(queue_pb2.GetQueueStatsRequest()),
    }
    measured = await latencies(calls, rounds)
    for name, values in measured.items():
        goal = "" if name.startswith("bare") else "   (goal < 20 ms)"
        print(f"  {name:30} p50 {pct(values, 0.5):7.2f} ms  p99 {pct(values, 0.99):7.2f} ms{goal}")


async def agent(coordinator: Coordinator, name: str, stop: asyncio.Event) -> None:
    """A node agent stand-in: registers, then a heartbeat every 5 s, as sq-agent does."""
    stub = processes_pb2_grpc.ProcessesServiceStub(coordinator.channel)

    async def messages() -> AsyncIterator[processes_pb2.AgentMessage]:
        info = processes_pb2.NodeInfo(
            name=name, hostname=name, cpu_count=8, memory_total_mb=32_000,
            heartbeat_interval=5, models=[processes_pb2.NodeModel(key="sd", name="SD")],
        )  # fmt: skip
        yield processes_pb2.AgentMessage(register=info)
        while not stop.is_set():
            now = Timestamp()
            now.GetCurrentTime()
            beat = processes_pb2.Heartbeat(time=now, cpu_percent=3.0, memory_used_mb=4000)
            yield processes_pb2.AgentMessage(heartbeat=beat)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5)

    call = stub.AgentSession(messages())
    try:
        async for _ in call:  # commands: none come while nothing is queued
            pass
    except asyncio.CancelledError:
        call.cancel()
        raise


async def through_farm(
    coordinator: Coordinator, spec: queue_pb2.JobSpec, jobs: int, queued: int, servers: int,
    agents: int,
) -> None:  # fmt: skip
    """`jobs` more queued while paused, then released: jobs/s and CPU per job until done."""
    for done in range(0, jobs, 1000):
        request = queue_pb2.SubmitJobsRequest(spec=spec, count=min(1000, jobs - done))
        await coordinator.queue.SubmitJobs(request)
    total = jobs + queued
    process = psutil.Process(coordinator.proc.pid)
    before, began = process.cpu_times(), time.perf_counter()
    await coordinator.queue.ResumeQueue(queue_pb2.ResumeQueueRequest())
    stats = queue_pb2.GetQueueStatsRequest()
    shown = began
    while (finished := (await coordinator.queue.GetQueueStats(stats)).stats.completed) < total:
        if time.perf_counter() - shown > 15:
            shown = time.perf_counter()
            print(f"  ... {finished:,}/{total:,} jobs done", flush=True)
        await asyncio.sleep(0.5)
    after, elapsed = process.cpu_times(), time.perf_counter() - began
    user, kernel = after.user - before.user, after.system - before.system
    print(
        f"  {total:,} jobs through {servers} zero-time Forge fakes ({agents} agents beating): "
        f"{total / elapsed:.0f} jobs/s, coordinator CPU {(user + kernel) * 1000 / total:.2f} ms "
        f"per job ({user * 1000 / total:.2f} user + {kernel * 1000 / total:.2f} kernel)"
        "   (goal <= 1.5 ms)"
    )


async def farm(data: Path, servers: int, agents: int, seconds: float, jobs: int) -> None:
    fakes = [FakeForge(step_seconds=0) for _ in range(servers)]
    coordinator = Coordinator(data)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        await register(coordinator, fakes)
        tasks = [asyncio.create_task(agent(coordinator, f"node-{i}", stop)) for i in range(agents)]
        processes = processes_pb2_grpc.ProcessesServiceStub(coordinator.channel)
        while True:
            listed = await processes.ListNodes(processes_pb2.ListNodesRequest())
            if sum(n.connected for n in listed.nodes) == agents:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)  # registration settles
        process = psutil.Process(coordinator.proc.pid)
        before, began = process.cpu_times(), time.perf_counter()
        await asyncio.sleep(seconds)
        after, elapsed = process.cpu_times(), time.perf_counter() - began
        used = after.user + after.system - before.user - before.system
        probes = sum(f.model_lists for f in fakes)
        print(
            f"  idle coordinator, {servers} servers probed + {agents} agents beating: "
            f"{used / elapsed * 100:.1f}% of a core over {elapsed:.0f} s "
            f"({probes} probes answered in all)   (goal < 5%)"
        )
        await coordinator.queue.PauseQueue(queue_pb2.PauseQueueRequest())
        spec = txt2img("a farm cat", steps=1, app="forge")  # the Forge fakes run them
        submits = await latencies(
            {"submit": lambda: coordinator.queue.SubmitJob(queue_pb2.SubmitJobRequest(spec=spec))},
            400,
        )
        values = submits["submit"]
        print(
            f"  SubmitJob in that farm, one at a time (400): p50 {pct(values, 0.5):.2f} ms, "
            f"p99 {pct(values, 0.99):.2f} ms, mean {statistics.mean(values):.2f} ms"
        )
        if jobs:
            await through_farm(coordinator, spec, jobs, len(values), servers, agents)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await coordinator.close()
        for fake in fakes:
            fake.close()


async def main(args: argparse.Namespace) -> None:
    print("StableQueue scale benchmark")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "history"
        data.mkdir()
        took = store_history(data, args.finished)
        print(f"  ({args.finished:,} finished jobs and images stored in {took:.0f} s)")
        coordinator = Coordinator(data)
        try:
            await listings(coordinator, args.rounds)
        finally:
            await coordinator.close()
        await farm(Path(tmp) / "farm", args.servers, args.agents, args.idle_seconds, args.jobs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--finished", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--servers", type=int, default=100)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=50_000, help="jobs through the farm")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    asyncio.run(main(parser.parse_args()))
