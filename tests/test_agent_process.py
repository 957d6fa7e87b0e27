"""Supervising real model-server processes: config validation, start/ready/stop, timeouts,
crashes, SIGTERM ignored, port conflicts, a stop during start, no zombies."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from pathlib import Path

import psutil
import pytest

from stablequeue_agent.config import ConfigError, ModelConfig, load_config
from stablequeue_agent.process import ModelProcess, StartFailed, State

SERVER = str(Path(__file__).parent / "fakes" / "sd_server_process.py")


def model(*flags: str, **settings: object) -> ModelConfig:
    return ModelConfig(
        command=sys.executable,
        args=[SERVER, "--listen-port", "${PORT}", *flags],
        health_path="/sdapi/v1/options",
        **settings,  # type: ignore[arg-type]
    )


def supervised(tmp_path: Path, config: ModelConfig, grace: float = 5.0) -> ModelProcess:
    states: list[tuple[State, str]] = []
    process = ModelProcess("m", config, tmp_path, tmp_path / "logs",
                           lambda key, state, detail: states.append((state, detail)),
                           grace=grace)  # fmt: skip
    process.transitions = states  # type: ignore[attr-defined]
    return process


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_config_errors_name_the_model_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "models.yml"
    path.write_text(
        f"""
default: nope
models:
  a:
    command: {sys.executable}
    args: ["--port", "${{PORT}}"]
    port: 7000
    colour: blue
  b:
    command: ./missing-binary
    args: ["x"]
  c:
    command: {sys.executable}
    args: ["--listen-port", "${{PORT}}"]
    port: 7000
  d:
    args: []
  e:
    command: {sys.executable}
    exec_mode: cli
    args: ["--port", "${{PORT}}", "${{WHAT}}"]
"""
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    for expected in ("models.a.colour: unknown key", "models.d.command: Field required"):
        assert expected in message, message
    # Structural errors come first; fix them and the semantic checks report the rest.
    path.write_text(path.read_text().replace("    colour: blue\n", "").replace(
        "  d:\n    args: []\n", ""))  # fmt: skip
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    for expected in (
        "default: 'nope' is not one of the models",
        "models.b.command: './missing-binary' not found or not executable",
        "models.b.args: no port is set, so the args must pass ${PORT}",
        "models.c.port: 7000 is also used by models.a",
        "models.e.args: ${PORT} is for servers",
        "models.e.args: unknown placeholder ${WHAT}",
    ):
        assert expected in message, message


async def test_start_until_healthy_then_stop(tmp_path: Path) -> None:
    process = supervised(tmp_path, model("--startup-delay", "0.3"))
    # Two callers starting at once share one start (one process).
    await asyncio.gather(process.start(), process.start())
    assert process.state is State.READY and process.pid is not None
    pid = process.pid
    transitions = process.transitions  # type: ignore[attr-defined]
    # Starting, then starting with its pid (so it is on record), then ready.
    assert [s for s, _ in transitions] == [State.STARTING, State.STARTING, State.READY]
    assert f"process {pid} started" in transitions[1][1]
    assert any("loading model" in line for line in process.tail)
    await process.start()  # already ready: nothing happens
    assert process.pid == pid
    await process.stop()
    await process.stop()  # idempotent
    assert process.state is State.STOPPED and not alive(pid)
    assert "loading model" in (tmp_path / "logs" / "m.log").read_text()


async def test_hang_on_start_fails_at_the_timeout(tmp_path: Path) -> None:
    process = supervised(tmp_path, model("--hang-on-start", startup_timeout=1.0))
    started = time.monotonic()
    with pytest.raises(StartFailed, match="not ready after 1 s"):
        await process.start()
    assert time.monotonic() - started < 3.0
    assert process.state is State.FAILED and "loading model" in process.detail
    assert not alive(process.pid or 0)


async def test_a_child_exiting_during_start_fails_at_once(tmp_path: Path) -> None:
    config = ModelConfig(command=sys.executable, args=[SERVER, "--listen-port", "${PORT}",
                         "--no-such-flag"], startup_timeout=30)  # fmt: skip
    process = supervised(tmp_path, config)
    started = time.monotonic()
    with pytest.raises(StartFailed, match="exited with code 2 while starting") as info:
        await process.start()
    assert time.monotonic() - started < 5.0
    assert "unrecognized arguments" in str(info.value)  # its last output, for the user


async def test_sigterm_ignored_means_sigkill_after_the_grace(tmp_path: Path) -> None:
    process = supervised(tmp_path, model("--ignore-sigterm"), grace=0.5)
    await process.start()
    pid = process.pid or 0
    started = time.monotonic()
    await process.stop()
    assert 0.4 < time.monotonic() - started < 3.0
    assert process.state is State.STOPPED and not alive(pid)


async def test_a_port_in_use_is_refused(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = supervised(tmp_path, model(port=port))
        with pytest.raises(StartFailed, match=f"port {port} is already in use"):
            await process.start()
        assert process.state is State.FAILED and process.pid is None


async def test_a_stop_during_start_cancels_it(tmp_path: Path) -> None:
    process = supervised(tmp_path, model("--hang-on-start"))
    starting = asyncio.create_task(process.start())
    deadline = time.monotonic() + 10
    while process.pid is None:  # the child appears inside start()
        assert time.monotonic() < deadline, "the child never started"
        await asyncio.sleep(0.01)
    pid = process.pid
    await process.stop()
    with pytest.raises((asyncio.CancelledError, StartFailed)):
        await starting
    assert process.state is State.STOPPED and not alive(pid)


def test_no_zombies_are_left() -> None:
    zombies = [c for c in psutil.Process().children(recursive=True)
               if c.status() == psutil.STATUS_ZOMBIE]  # fmt: skip
    assert zombies == []


def test_a_failed_runs_reason_leaves_out_every_progress_bar() -> None:
    """What sd-cli prints before it is killed while loading (tensor bars in MB/s, then
    sampling bars in s/it): the reason keeps its words, no bar of either kind."""
    import collections

    from stablequeue_agent.cli_job import reason
    from stablequeue_agent.output import keep_tail, readable

    printed = [
        "[INFO ] model_loader.cpp:242  - load models/sd15.safetensors using safetensors format",
        "  |###########                                       | 140/686 - 469.63MB/s",
        "  |##############################################    | 644/686 - 555.00MB/s",
        "[INFO ] stable-diffusion.cpp:4380 - sampling using DPM++ (2M) method",
        "  |================>                                 | 1/3 - 2.39s/it",
    ]
    tail: collections.deque[str] = collections.deque(maxlen=20)
    for line in printed:
        keep_tail(tail, line)
    assert len(tail) == 4  # one redraw replaced the one before it
    said = reason(tail)
    assert "MB/s" not in said and "s/it" not in said and "sampling using DPM++" in said
    assert readable("killed:" + printed[2] + "\n" + printed[4]) == "killed:"
