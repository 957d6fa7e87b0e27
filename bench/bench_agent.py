"""Node-agent benchmarks (`make bench`), measured side by side in one run.

Prints:
  * on-demand start overhead: time for the supervisor to declare the test model
    server ready, minus the time the same server takes to accept connections
    when started bare (target < 300 ms);
  * time from a node's death (agent SIGKILLed mid-job) to its job being re-queued,
    in heartbeat intervals (target <= 3);
  * what a node adds per job to its model's own time: a zero-time test sd-server as
    the node's model, one job at a time from SubmitJob to the completed event,
    against the same request sent straight to that server (target < 20 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stablequeue import Client, txt2img  # noqa: E402
from stablequeue.client import serving  # noqa: E402
from stablequeue.v1 import processes_pb2, queue_pb2  # noqa: E402
from stablequeue_agent.config import ModelConfig  # noqa: E402
from stablequeue_agent.process import ModelProcess, free_port  # noqa: E402

SERVER = str(ROOT / "tests" / "fakes" / "sd_server_process.py")


async def bare_start(delay: float) -> float:
    """Seconds until the test server accepts connections, started without the agent."""
    port = free_port()
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, SERVER, "--listen-port", str(port), "--startup-delay", str(delay),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return time.perf_counter() - started
            except OSError:
                await asyncio.sleep(0.002)
    finally:
        proc.kill()
        await proc.wait()


async def supervised_start(delay: float, work: Path) -> float:
    config = ModelConfig(
        command=sys.executable,
        args=[SERVER, "--listen-port", "${PORT}", "--startup-delay", str(delay)],
    )
    process = ModelProcess("bench", config, ROOT, work / "logs")
    started = time.perf_counter()
    await process.start()
    elapsed = time.perf_counter() - started
    await process.stop()
    return elapsed


def start_coordinator(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A coordinator process on a free port, and its address."""
    port = free_port()
    coordinator = subprocess.Popen(
        [sys.executable, "-m", "stablequeue_coordinator", "--listen", f"127.0.0.1:{port}",
         "--http-listen", "127.0.0.1:0",
         "--data-dir", str(data), "--log-level", "WARNING"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return coordinator, f"127.0.0.1:{port}"


def start_agent(address: str, config: Path, work: Path, *extra: str) -> subprocess.Popen[bytes]:
    """An agent (node "bench-node") for the coordinator at `address`, once it listens."""
    _wait_port(int(address.rsplit(":", 1)[1]))
    return subprocess.Popen(
        [sys.executable, "-m", "stablequeue_agent.main", "--coordinator", address,
         "--config", str(config),
         "--name", "bench-node", "--work-dir", str(work / "agent"), *extra],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def death_to_requeue(work: Path, beat: float, sig: signal.Signals) -> float:
    """Seconds from `sig` to an agent running a job to that job being PENDING again.

    SIGKILL: the agent's stream closes at once. SIGSTOP: the agent is frozen with
    its connection open (a hung or cut-off host): only missed heartbeats tell.
    """
    coordinator, address = start_coordinator(work / "data")
    work = work / sig.name
    work.mkdir()
    config = work / "models.yml"
    config.write_text(
        f"models:\n  sd:\n    command: {sys.executable}\n"
        f'    args: ["{SERVER}", "--listen-port", "${{PORT}}"]\n'
    )
    agent = None
    try:
        agent = start_agent(address, config, work, "--heartbeat", str(beat))
        with Client(address) as sq:
            request = processes_pb2.ListNodesRequest()
            while not any(n.connected for n in sq.call("ListNodes", request, "processes").nodes):
                time.sleep(0.02)
            job = sq.submit(txt2img("long", model="sd", steps=500, app="sdcpp"))
            while sq.get_job(job.id).status != queue_pb2.JOB_STATUS_PROCESSING:
                time.sleep(0.01)
            killed = time.perf_counter()
            os.kill(agent.pid, sig)
            while sq.get_job(job.id).status != queue_pb2.JOB_STATUS_PENDING:
                time.sleep(0.01)
            return time.perf_counter() - killed
    finally:
        for process in (agent, coordinator):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        from stablequeue_agent.supervisor import end_orphans

        end_orphans(work / "agent" / "children.json")


def node_job_overhead(work: Path, jobs: int) -> tuple[float, float]:
    """(through the coordinator and the agent, straight to the model's server): median
    ms per one-step job on a zero-time test sd-server that a node runs."""
    import httpx

    coordinator, address = start_coordinator(work / "node-data")
    work = work / "node-job"
    work.mkdir()
    model_port = free_port()
    config = work / "models.yml"
    config.write_text(
        f"models:\n  sd:\n    command: {sys.executable}\n    mode: preload\n"
        f"    port: {model_port}\n    health_path: /sdapi/v1/options\n"
        f'    args: ["{SERVER}", "--listen-port", "{model_port}", "--step-seconds", "0"]\n'
    )
    agent = None
    try:
        agent = start_agent(address, config, work)
        url = f"http://127.0.0.1:{model_port}/sdapi/v1/txt2img"
        with Client(address) as sq, httpx.Client(timeout=30) as http:
            spec = txt2img("a benchmark cat", model="sd", steps=1, seed=1, app="sdcpp")
            through, straight = [], []
            body = {"prompt": "a benchmark cat", "steps": 1, "seed": 1}
            for i in range(jobs + 3):  # the first ones wait for the node and its model
                started = time.perf_counter()
                job = sq.submit(spec)
                for event in sq.watch_job(job.id):
                    if event.job.status == queue_pb2.JOB_STATUS_COMPLETED:
                        break
                if i >= 3:
                    through.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    http.post(url, json=body).raise_for_status()
                    straight.append(time.perf_counter() - started)
            return statistics.median(through) * 1000, statistics.median(straight) * 1000
    finally:
        for process in (agent, coordinator):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(20)
        from stablequeue_agent.supervisor import end_orphans

        end_orphans(work / "agent" / "children.json")


def _wait_port(port: int) -> None:
    """Until the coordinator on `port` serves (it listens before it is active, and
    answers UNAVAILABLE "starting" until then)."""
    deadline = time.monotonic() + 30
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0 and serving(channel):
                    return
            time.sleep(0.05)
    raise RuntimeError("coordinator did not start")


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as name:
        work = Path(name)
        bare, supervised = [], []
        for _ in range(args.rounds):
            bare.append(await bare_start(args.delay))
            supervised.append(await supervised_start(args.delay, work))
        overhead = statistics.median(s - b for s, b in zip(supervised, bare, strict=True))
        killed = death_to_requeue(work, args.heartbeat, signal.SIGKILL)
        frozen = death_to_requeue(work, args.heartbeat, signal.SIGSTOP)
        node_ms, straight_ms = node_job_overhead(work, args.jobs)
    print()
    print(f"StableQueue agent benchmark ({args.rounds} rounds, medians)")
    print(f"  test server ready, bare: {statistics.median(bare) * 1000:.0f} ms; "
          f"through the supervisor: {statistics.median(supervised) * 1000:.0f} ms")  # fmt: skip
    print(f"  on-demand start overhead     {overhead * 1000:6.0f} ms   (target < 300 ms)")
    for label, seconds in (("agent killed (stream closes)", killed),
                           ("agent frozen (heartbeats stop)", frozen)):  # fmt: skip
        print(f"  {label:32s} -> job re-queued in {seconds:5.2f} s = "
              f"{seconds / args.heartbeat:.1f} heartbeat intervals of {args.heartbeat:g} s"
              "   (target <= 3)")  # fmt: skip
    print(f"  node job on a zero-time sd-server: {node_ms:.1f} ms; the same request straight "
          f"to it: {straight_ms:.1f} ms; added {node_ms - straight_ms:.1f} ms"
          "   (target < 20 ms)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--delay", type=float, default=0.5, help="the server's own startup delay")
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--jobs", type=int, default=30, help="node jobs timed")
    asyncio.run(main(parser.parse_args()))
