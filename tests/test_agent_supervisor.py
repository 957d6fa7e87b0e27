"""A node's model processes as policies: idle stop, preload restart, crash loops,
VRAM eviction and children left behind by a crashed agent — all with real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from stablequeue_agent.config import AgentConfig, ModelConfig
from stablequeue_agent.process import State
from stablequeue_agent.supervisor import Supervisor
from tests.test_agent_process import SERVER, alive


def model(*flags: str, **settings: object) -> ModelConfig:
    return ModelConfig(
        command=sys.executable,
        args=[SERVER, "--listen-port", "${PORT}", *flags],
        health_path="/sdapi/v1/options",
        **settings,  # type: ignore[arg-type]
    )


def supervisor(tmp_path: Path, free_vram: Callable[[], int] | None = None,
               **models: ModelConfig) -> Supervisor:  # fmt: skip
    config = AgentConfig(models=models, base_dir=tmp_path)
    return Supervisor(config, tmp_path / "agent", free_vram, grace=1.0, restart_backoff=0.1)


async def until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_on_demand_starts_for_a_job_and_stops_when_idle(tmp_path: Path) -> None:
    agent = supervisor(tmp_path, sd=model(idle_timeout=0.5))
    await agent.start()
    try:
        process = agent.processes["sd"]
        assert process.state is State.STOPPED  # on demand: nothing runs yet
        await agent.ensure_ready("sd")
        agent.job_started("sd")
        started = time.monotonic()
        # An idle check well past the idle timeout has run, and a job is in flight.
        await until(lambda: agent.idle_checked_at > started + 0.6, within=5)
        assert process.state is State.READY
        agent.job_finished("sd")
        await until(lambda: process.state is State.STOPPED, within=3)
    finally:
        await agent.close()


async def test_preload_restarts_after_kill_9(tmp_path: Path) -> None:
    agent = supervisor(tmp_path, sd=model(mode="preload"))
    await agent.start()
    try:
        process = agent.processes["sd"]
        await until(lambda: process.state is State.READY)
        first = process.pid or 0
        os.kill(first, signal.SIGKILL)
        await until(lambda: process.state is State.READY and process.pid != first)
        assert not alive(first)
    finally:
        await agent.close()


async def test_a_model_that_keeps_crashing_is_left_failed_with_its_output(
    tmp_path: Path,
) -> None:
    agent = supervisor(tmp_path, sd=model("--crash-after", "0.2", mode="preload"))
    await agent.start()
    try:
        process = agent.processes["sd"]
        # The fifth crash is recorded as the supervisor decides not to restart again.
        await until(lambda: len(agent._crashes["sd"]) >= 5, within=30)
        assert process.state is State.FAILED and "simulated crash" in process.detail
    finally:
        await agent.close()


async def test_idle_models_are_evicted_for_vram_least_recently_used_first(
    tmp_path: Path,
) -> None:
    total = 8000
    agent: Supervisor | None = None

    def free() -> int:
        assert agent is not None
        used = sum(agent.config.models[k].vram_mb for k, p in agent.processes.items()
                   if p.state is State.READY)  # fmt: skip
        return total - used

    agent = supervisor(tmp_path, free, a=model(vram_mb=3000), b=model(vram_mb=3000),
                       c=model(vram_mb=5000))  # fmt: skip
    await agent.start()
    try:
        await agent.ensure_ready("a")
        await agent.ensure_ready("b")
        agent.job_started("b")  # busy: never evicted
        await agent.ensure_ready("c")
        assert agent.processes["a"].state is State.STOPPED  # the idle one made room
        assert agent.processes["b"].state is State.READY
        assert agent.processes["c"].state is State.READY
    finally:
        await agent.close()


async def test_a_restarted_agent_ends_the_children_of_a_crashed_one(tmp_path: Path) -> None:
    crashed = supervisor(tmp_path, sd=model(mode="preload"))
    await crashed.start()
    process = crashed.processes["sd"]
    await until(lambda: process.state is State.READY)
    orphan = process.pid or 0
    # The agent dies without stopping its child (its tasks just vanish).
    for task in [*crashed._tasks, crashed._idle]:
        if task:
            task.cancel()
    assert alive(orphan)

    successor = supervisor(tmp_path, sd=model())
    await successor.start()
    try:
        await until(lambda: not alive(orphan))
    finally:
        await successor.close()
    # Reap what is ours in this test process (a real agent is a separate process).
    for child in psutil.Process().children():
        if child.pid == orphan:
            child.wait(5)


async def test_a_reload_restarts_only_what_changed_and_waits_for_running_jobs(
    tmp_path: Path,
) -> None:
    agent = supervisor(tmp_path, keep=model(), change=model(), drop=model())
    await agent.start()
    try:
        for key in ("keep", "change", "drop"):
            await agent.ensure_ready(key)
        pids = {key: agent.processes[key].pid for key in ("keep", "change", "drop")}
        agent.job_started("change")  # a job is running on the model that changes
        new = AgentConfig(
            models={"keep": model(), "change": model("--startup-delay", "0.1"),
                    "fresh": model(mode="preload")},
            base_dir=tmp_path,
        )  # fmt: skip
        assert agent.reload(new) == (["fresh"], ["change"], ["drop"])
        await until(lambda: not alive(pids["drop"]) and "drop" not in agent.processes)
        await until(lambda: agent.processes["fresh"].state is State.READY)
        reloaded = time.monotonic()
        await until(lambda: agent.idle_checked_at > reloaded)  # the supervisor moved on
        assert alive(pids["change"])  # its job is still running
        agent.job_finished("change")
        await until(lambda: not alive(pids["change"]))
        process = await agent.ensure_ready("change")  # comes back with its new settings
        assert process.pid != pids["change"] and "--startup-delay" in process.config.args
        assert agent.processes["keep"].pid == pids["keep"] and alive(pids["keep"])
        try:
            await agent.ensure_ready("drop")
            raise AssertionError("a removed model started")
        except KeyError:
            pass
    finally:
        await agent.close()


async def test_a_child_still_starting_is_on_record_for_the_next_agent(tmp_path: Path) -> None:
    agent = supervisor(tmp_path, slow=model("--hang-on-start", startup_timeout=30))
    await agent.start()
    starting = asyncio.create_task(agent.ensure_ready("slow"))
    try:
        await until(lambda: agent.processes["slow"].pid is not None)
        pid = agent.processes["slow"].pid
        # The agent dies now (nothing more runs); a new one reads what was recorded.
        await until(lambda: f'"pid": {pid}' in (tmp_path / "agent" / "children.json").read_text())
        from stablequeue_agent.supervisor import end_orphans

        assert await asyncio.to_thread(end_orphans, tmp_path / "agent" / "children.json") == [pid]
        assert not alive(pid)
    finally:
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await agent.close()
