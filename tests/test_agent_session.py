"""sq-agent as a real process talking to a real coordinator: registration, start/stop/logs
commands, heartbeats, offline after missed heartbeats, reconnection, clean exit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import psutil
import pytest
from PIL import Image

from stablequeue import Client
from stablequeue.v1 import processes_pb2
from tests.conftest import CoordinatorThread, make_settings
from tests.helpers import kill_all, raises, wait_until
from tests.test_agent_process import SERVER, alive

ROOT = Path(__file__).resolve().parents[1]
BEAT = 0.3


@pytest.fixture
def coordinator(sqlite_server: CoordinatorThread) -> CoordinatorThread:
    return sqlite_server


def server_model(key: str, *flags: str, **settings: object) -> str:
    """A models.yml entry running the test sd-server."""
    lines = [
        f"  {key}:",
        f"    command: {sys.executable}",
        f'    args: ["{SERVER}", "--listen-port", "${{PORT}}", {", ".join(map(repr, flags))}]',
        "    health_path: /sdapi/v1/options",
        *(f"    {name}: {value}" for name, value in settings.items()),
    ]
    return "\n".join(lines) + "\n"


DEFAULT_MODELS = "default: sd\nmodels:\n" + server_model(
    "sd", "--startup-delay", "0.2", name='"Test model"', idle_timeout=600
)


def start_agent(
    tmp_path: Path, address: str, name: str = "gpu-a", models: str = DEFAULT_MODELS,
    *extra: str,
) -> subprocess.Popen[str]:  # fmt: skip
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "models.yml"
    config.write_text(models)
    return subprocess.Popen(
        [sys.executable, "-m", "stablequeue_agent.main", "--coordinator", address,
         "--config", str(config),
         "--name", name, "--work-dir", str(tmp_path / "agent"), "--heartbeat", str(BEAT),
         *extra],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=(tmp_path / "agent.log").open("w"),
        text=True,
    )  # fmt: skip


def start_cli_agent(
    tmp_path: Path, address: str, name: str, key: str, *args: str
) -> subprocess.Popen[str]:
    """An agent whose one model `key` is the sd-cli stand-in (exec_mode: cli, `args`
    after its own), taking 20 ms per step; it logs what it parsed to tmp_path/args.log."""
    cli = Path(__file__).parent / "fakes" / "sd_cli_process.py"
    config = tmp_path / "models.yml"
    more = "".join(f", {arg!r}" for arg in args)
    config.write_text(
        f"models:\n  {key}:\n    command: {sys.executable}\n    exec_mode: cli\n"
        f'    args: ["{cli}", "-m", "/models/${{MODEL}}.gguf"{more}]\n'
        f"    env: {{SQ_FAKE_ARGS_LOG: {str(tmp_path / 'args.log')!r}}}\n"
    )
    return subprocess.Popen(
        [sys.executable, "-m", "stablequeue_agent.main", "--coordinator", address, "--config",
         str(config), "--name", name, "--work-dir", str(tmp_path / "agent"),
         "--heartbeat", str(BEAT)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "SQ_FAKE_STEP_SECONDS": "0.02"},  # the stand-in's time per step
    )  # fmt: skip


def nodes(sq: Client) -> list[processes_pb2.Node]:
    return list(sq.call("ListNodes", processes_pb2.ListNodesRequest(), "processes").nodes)


def connected(sq: Client, name: str) -> bool:
    return any(n.info.name == name and n.connected for n in nodes(sq))


def test_agent_registers_and_runs_commands(tmp_path: Path, coordinator: CoordinatorThread) -> None:
    agent = start_agent(tmp_path, coordinator.address)
    try:
        with coordinator.client() as sq:
            wait_until(lambda: connected(sq, "gpu-a"))
            (node,) = nodes(sq)
            assert [m.key for m in node.info.models] == ["sd"]
            assert node.info.cpu_count > 0 and node.info.memory_total_mb > 0

            started = sq.call("StartProcess", processes_pb2.StartProcessRequest(model="sd"),
                              "processes").process  # fmt: skip
            assert started.state == processes_pb2.PROCESS_STATE_READY and started.pid > 0
            assert started.node == "gpu-a" or started.node == ""
            logs = sq.call("GetProcessLogs", processes_pb2.GetProcessLogsRequest(model="sd"),
                           "processes").lines  # fmt: skip
            assert any("loading model" in line for line in logs)
            listed = sq.call("ListProcesses", processes_pb2.ListProcessesRequest(), "processes")
            wait_until(lambda: any(
                p.state == processes_pb2.PROCESS_STATE_READY for p in
                sq.call("ListProcesses", processes_pb2.ListProcessesRequest(),
                        "processes").processes))  # fmt: skip
            assert listed.processes

            stopped = sq.call("StopProcess", processes_pb2.StopProcessRequest(model="sd"),
                              "processes").process  # fmt: skip
            assert stopped.state == processes_pb2.PROCESS_STATE_STOPPED
            assert not alive(started.pid)
            with raises(grpc.StatusCode.NOT_FOUND, "no connected node has a model 'nope'"):
                sq.call("StartProcess", processes_pb2.StartProcessRequest(model="nope"),
                        "processes")  # fmt: skip

            # SIGTERM: the agent stops its model processes before it exits.
            running = sq.call("StartProcess", processes_pb2.StartProcessRequest(model="sd"),
                              "processes").process  # fmt: skip
            agent.send_signal(signal.SIGTERM)
            assert agent.wait(15) == 0
            assert not alive(running.pid)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()


def test_a_dead_agent_goes_offline_and_a_new_one_reconnects(
    tmp_path: Path, coordinator: CoordinatorThread
) -> None:
    first = start_agent(tmp_path, coordinator.address)
    second = None
    try:
        with coordinator.client() as sq:
            wait_until(lambda: connected(sq, "gpu-a"))
            os.kill(first.pid, signal.SIGKILL)
            first.wait(10)
            killed_at = time.monotonic()
            wait_until(lambda: not connected(sq, "gpu-a"), timeout=10)
            # Offline within three heartbeat intervals (plus the check's own cadence).
            assert time.monotonic() - killed_at < 3 * BEAT + 1.5
            second = start_agent(tmp_path, coordinator.address)
            wait_until(lambda: connected(sq, "gpu-a"))
    finally:
        kill_all(first, second)
    leftovers = [c for c in psutil.Process().children(recursive=True)
                 if c.status() == psutil.STATUS_ZOMBIE]  # fmt: skip
    assert leftovers == []


def test_sq_node_commands(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, coordinator: CoordinatorThread
) -> None:
    import json

    from stablequeue import txt2img
    from stablequeue.v1 import queue_pb2
    from tests.helpers import final_job
    from tests.test_cli import sq as run_sq

    agent = start_agent(tmp_path, coordinator.address, name="gpu-b")
    try:
        with coordinator.client() as sq:
            wait_until(lambda: connected(sq, "gpu-b"))
        code, out, _ = run_sq(capsys, coordinator, "nodes", "--json")
        assert code == 0 and json.loads(out)[0]["info"]["name"] == "gpu-b"
        assert run_sq(capsys, coordinator, "start", "sd", "--node", "gpu-b")[0] == 0
        code, out, _ = run_sq(capsys, coordinator, "logs", "sd", "--lines", "50")
        assert code == 0 and "loading model" in out
        code, out, _ = run_sq(capsys, coordinator, "processes", "--json")
        assert json.loads(out)[0]["model"] == "sd"
        code, out, _ = run_sq(capsys, coordinator, "processes")
        assert code == 0 and "ready" in out and "UPTIME" in out
        code, out, _ = run_sq(capsys, coordinator, "nodes")
        assert code == 0 and "online" in out and "gpu-b" in out
        assert run_sq(capsys, coordinator, "stop", "sd")[0] == 0
        code, _, err = run_sq(capsys, coordinator, "start", "sd", "--node", "nobody")
        assert code == 1 and "NOT_FOUND: no node named 'nobody'" in err

        # A drained node takes no new job; undrained, it runs it.
        assert run_sq(capsys, coordinator, "drain", "gpu-b")[0] == 0
        with coordinator.client() as sq:
            job = sq.submit(txt2img("held", model="sd", steps=2, app="sdcpp"))
            wait_until(lambda: "gpu-b:sd is paused" in sq.get_job(job.id).reason)
            assert sq.get_job(job.id).status == queue_pb2.JOB_STATUS_PENDING
            assert run_sq(capsys, coordinator, "drain", "gpu-b", "--undo")[0] == 0
            done = final_job(sq, job.id)
            assert (done.status, done.server) == (queue_pb2.JOB_STATUS_COMPLETED, "gpu-b:sd")
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(15)


def test_a_drain_outlives_the_coordinator(tmp_path: Path) -> None:
    """A drain was kept in the coordinator's memory: a restarted coordinator (or one
    that took over) sent jobs to a drained node again. It is stored now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'sq.db'}").model_copy(
        update={"listen": f"127.0.0.1:{port}"}
    )
    first = CoordinatorThread(settings)
    agent = start_agent(tmp_path / "node", first.address, "gpu-d")
    try:
        with first.client() as sq:
            wait_until(lambda: connected(sq, "gpu-d"))
            sq.call("DrainNode", processes_pb2.DrainNodeRequest(node="gpu-d", drain=True),
                    "processes")  # fmt: skip
        first.close()
        second = CoordinatorThread(settings)
        try:
            with second.client() as sq:
                wait_until(lambda: connected(sq, "gpu-d"), 30)
                [node] = nodes(sq)
                assert node.draining
        finally:
            second.close()
    finally:
        stop_agent(agent)  # type: ignore[arg-type]
        if not first.coordinator.stopped:
            first.close()


def test_a_job_runs_on_a_node_and_survives_the_node_dying(
    tmp_path: Path, coordinator: CoordinatorThread
) -> None:
    from stablequeue import txt2img
    from stablequeue.v1 import queue_pb2
    from tests.helpers import final_job

    first = start_agent(tmp_path / "a", coordinator.address, name="gpu-a")
    second = None
    try:
        with coordinator.client() as sq:
            wait_until(lambda: connected(sq, "gpu-a"))
            job = sq.submit(txt2img("on a node", model="sd", steps=3, seed=5))
            stages = [event.job.stage for event in sq.watch_job(job.id)]
            # The node's model was stopped: the job shows it starting, then generating.
            starting = stages.index(queue_pb2.JOB_STAGE_STARTING_MODEL)
            assert queue_pb2.JOB_STAGE_GENERATING in stages[starting:]
            quick = sq.get_job(job.id)
            assert (quick.status, quick.server) == (queue_pb2.JOB_STATUS_COMPLETED, "gpu-a:sd")
            assert len(quick.results) == 1 and quick.results[0].seed == 5

            slow = sq.submit(txt2img("long", model="sd", steps=500, app="sdcpp"))
            wait_until(lambda: sq.get_job(slow.id).status == queue_pb2.JOB_STATUS_PROCESSING)
            os.kill(first.pid, signal.SIGKILL)  # the node dies mid-job
            first.wait(10)
            wait_until(lambda: sq.get_job(slow.id).status == queue_pb2.JOB_STATUS_PENDING)
            second = start_agent(tmp_path / "b", coordinator.address, name="gpu-b")
            done = final_job(sq, slow.id)
            assert (done.status, done.server) == (queue_pb2.JOB_STATUS_COMPLETED, "gpu-b:sd")
            assert done.attempts == 2 and len(done.results) == 1
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(15)
    # The killed agent's model server is an orphan now; end it like a restarted agent would.
    from stablequeue_agent.supervisor import end_orphans

    end_orphans(tmp_path / "a" / "agent" / "children.json")


def test_cli_mode_models_run_one_process_per_job(
    tmp_path: Path, coordinator: CoordinatorThread
) -> None:
    from stablequeue import txt2img
    from stablequeue.v1 import queue_pb2
    from tests.helpers import final_job

    agent = start_cli_agent(tmp_path, coordinator.address, "gpu-c", "flux-cli")
    try:
        with coordinator.client() as sq:
            wait_until(lambda: connected(sq, "gpu-c"))
            # No process lives between jobs: start/stop are refused, saying why.
            for verb in ("StartProcess", "StopProcess"):
                request = getattr(processes_pb2, f"{verb}Request")(model="flux-cli")
                with raises(grpc.StatusCode.FAILED_PRECONDITION, "exec_mode: cli"):
                    call(sq, verb, request)
            spec = txt2img("a lighthouse", model="flux-cli", steps=4, seed=9, batch_size=2,
                           width=512, height=256, sampler="DPM++ 2M SDE",
                           scheduler="Align Your Steps")  # fmt: skip
            done = final_job(sq, sq.submit(spec).id)
            assert (done.status, done.server) == (queue_pb2.JOB_STATUS_COMPLETED, "gpu-c:flux-cli")
            # sd-cli got sd.cpp's own names (it exits with its usage text on others); its
            # text is kept beside ours.
            image = coordinator.coordinator.results.root / done.results[0].filename
            with Image.open(image) as png:
                assert "Sampler: dpm++2m_sde, Scheduler: ays" in png.text["sdcpp_parameters"]
                assert "Sampler: DPM++ 2M SDE" in png.text["parameters"]
            # No seed: the one sd-cli picked is recorded.
            random_seed = final_job(sq, sq.submit(txt2img("any seed", model="flux-cli")).id)
            seed = random_seed.results[0].seed
            image = coordinator.coordinator.results.root / random_seed.results[0].filename
            with Image.open(image) as png:
                assert seed >= 0 and f"Seed: {seed}," in png.text["sdcpp_parameters"]
            assert [(r.width, r.height, r.seed) for r in done.results] == [
                (32, 16, 9),
                (32, 16, 10),
            ]
            failed = final_job(sq, sq.submit(txt2img("FAIL now", model="flux-cli")).id)
            assert failed.status == queue_pb2.JOB_STATUS_FAILED
            assert "exited with code 1" in failed.reason and "simulated failure" in failed.reason
            assert "/20 - " not in failed.reason  # no progress bar in the reason
            # The steps sd-cli prints (redrawn with \r) become the job's progress.
            job = sq.submit(txt2img("steps", model="flux-cli", steps=40))
            steps = [e.job.progress.step for e in sq.watch_job(job.id)
                     if e.type == queue_pb2.JOB_EVENT_TYPE_PROGRESS
                     and e.job.progress.total_steps == 40]  # fmt: skip
            assert len(set(steps)) >= 5 and steps == sorted(steps), steps
        import tempfile

        assert not list(Path(tempfile.gettempdir()).glob("sq-cli-*"))  # outputs removed
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(15)


def test_cli_models_take_loras_img2img_and_sd_cpp_settings(
    tmp_path: Path, coordinator: CoordinatorThread
) -> None:
    """sd-cli reads LoRAs only as `<lora:…>` tags with --lora-model-dir, an init image
    only as a file (-i), sd.cpp settings only as flags: each job's reach it so, and
    what the model cannot do fails before sd-cli runs."""
    import base64
    import io
    import json

    from stablequeue import txt2img
    from stablequeue.v1 import queue_pb2
    from tests.helpers import final_job

    loras = tmp_path / "loras"
    (loras / "styles").mkdir(parents=True)
    (loras / "styles" / "ink.safetensors").write_bytes(b"lora")
    agent = start_cli_agent(tmp_path, coordinator.address, "gpu-l", "sd15",
                            "--lora-model-dir", str(loras))  # fmt: skip
    log = tmp_path / "args.log"
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (9, 9, 9)).save(buffer, format="PNG")
    try:
        with coordinator.client() as sq:
            wait_until(lambda: connected(sq, "gpu-l"))
            spec = txt2img("a cat", model="sd15", loras=[("ink", 0.7)], steps=2, seed=3,
                           init_images=[buffer.getvalue()], denoising_strength=0.35,
                           scheduler="karras", app="sdcpp",
                           extra={"clip_skip": 2, "vae_tiling": True, "vae_tile_size": 16,
                                  "hires": True, "hires_scale": 1.5})  # fmt: skip
            done = final_job(sq, sq.submit(spec).id)
            assert done.status == queue_pb2.JOB_STATUS_COMPLETED, done.reason
            ran = json.loads(log.read_text().splitlines()[-1])
            assert ran["loras"] == {str(loras / "styles" / "ink.safetensors"): 0.7}
            assert ran["prompt"].strip() == "a cat"  # the tag was read, not drawn
            assert (ran["init_size"], ran["strength"]) == ([64, 48], 0.35)
            assert (ran["scheduler"], ran["clip_skip"], ran["vae_tiling"]) == ("karras", 2, True)
            assert (ran["vae_tile_size"], ran["hires"], ran["hires_scale"]) == ("16x16", True, 1.5)
            runs = len(log.read_text().splitlines())
            # What the model cannot do is refused at submit, or fails before sd-cli runs.
            oil = txt2img("x", model="sd15", app="sdcpp", loras=[("oil", 1.0)], steps=1)
            with raises(grpc.StatusCode.FAILED_PRECONDITION,
                        "LoRA oil is not on gpu-l:sd15, the node model serving sd15",
                        "it has styles/ink.safetensors"):  # fmt: skip
                sq.submit(oil)
            (loras / "oil.safetensors").write_bytes(b"lora")  # seen within a heartbeat
            wait_until(lambda: any("oil.safetensors" in m.loras for n in nodes(sq)
                                   for m in n.info.models))  # fmt: skip
            done = final_job(sq, sq.submit(oil).id)
            assert done.status == queue_pb2.JOB_STATUS_COMPLETED, done.reason
            runs = len(log.read_text().splitlines())
            control = base64.b64encode(buffer.getvalue()).decode()
            spec = txt2img("x", model="sd15", app="sdcpp", extra={"control_image": control})
            no_net = final_job(sq, sq.submit(spec).id)
            assert "load no ControlNet (--control-net)" in no_net.reason
            assert len(log.read_text().splitlines()) == runs
    finally:
        stop_agent(agent)  # type: ignore[arg-type]


def call(sq: Client, method: str, request: object) -> Any:
    return sq.call(method, request, "processes")


def processes(sq: Client) -> dict[str, processes_pb2.ProcessInfo]:
    listed = call(sq, "ListProcesses", processes_pb2.ListProcessesRequest()).processes
    return {p.model: p for p in listed}


def start(sq: Client, model: str) -> processes_pb2.ProcessInfo:
    return call(sq, "StartProcess", processes_pb2.StartProcessRequest(model=model)).process


def stop_agent(agent: subprocess.Popen[str]) -> None:
    if agent.poll() is None:
        agent.send_signal(signal.SIGTERM)
        agent.wait(15)


def test_a_cancel_reaches_the_agent_and_ends_the_generation(
    tmp_path: Path, coordinator: CoordinatorThread
) -> None:
    from stablequeue import txt2img
    from stablequeue.v1 import queue_pb2
    from tests.helpers import final_job

    agent = start_agent(tmp_path, coordinator.address)
    try:
        with coordinator.client() as sq:
            wait_until(lambda: connected(sq, "gpu-a"))
            server = start(sq, "sd")
            job = sq.submit(txt2img("five seconds of work", model="sd", steps=500, app="sdcpp"))
            # Sampling has begun: the request is on the server.
            wait_until(lambda: sq.get_job(job.id).progress.step >= 1)
            sq.cancel(job.id)
            # sd-server cannot interrupt a generation: the agent stops the server.
            wait_until(lambda: not alive(server.pid), timeout=10)
            assert sq.get_job(job.id).status == queue_pb2.JOB_STATUS_CANCELLED
            wait_until(lambda: processes(sq)["sd"].state == processes_pb2.PROCESS_STATE_STOPPED)
            assert processes(sq)["sd"].jobs_in_flight == 0
            # The model comes back for the next job.
            done = final_job(sq, sq.submit(txt2img("after", model="sd", steps=2)).id)
            assert done.status == queue_pb2.JOB_STATUS_COMPLETED
    finally:
        stop_agent(agent)


def test_sighup_reloads_models_yml_and_unchanged_models_keep_running(
    tmp_path: Path, coordinator: CoordinatorThread
) -> None:
    config = "models:\n" + server_model("keep") + server_model("change") + server_model("drop")
    agent = start_agent(tmp_path, coordinator.address, "gpu-r", config)
    try:
        with coordinator.client() as sq:
            wait_until(lambda: connected(sq, "gpu-r"))
            pids = {key: start(sq, key).pid for key in ("keep", "change", "drop")}
            (tmp_path / "models.yml").write_text(
                "models:\n" + server_model("keep")
                + server_model("change", "--startup-delay", "0.1")
                + server_model("new", mode="preload")
            )  # fmt: skip
            agent.send_signal(signal.SIGHUP)

            def keys() -> list[str]:
                (node,) = nodes(sq)
                return sorted(m.key for m in node.info.models)

            wait_until(lambda: keys() == ["change", "keep", "new"])
            wait_until(lambda: not alive(pids["change"]) and not alive(pids["drop"]))
            wait_until(lambda: processes(sq)["new"].state == processes_pb2.PROCESS_STATE_READY)
            assert alive(pids["keep"]) and processes(sq)["keep"].pid == pids["keep"]
            assert "drop" not in processes(sq)
            changed = start(sq, "change")  # with its new settings
            assert changed.state == processes_pb2.PROCESS_STATE_READY
            assert changed.pid != pids["change"]

            # A broken file changes nothing, and the log says why.
            (tmp_path / "models.yml").write_text("models:\n  broken:\n    command: /nope\n")
            agent.send_signal(signal.SIGHUP)
            log = tmp_path / "agent.log"
            wait_until(lambda: "not reloaded" in log.read_text())
            assert "models.broken.command: '/nope' not found" in log.read_text()
            assert keys() == ["change", "keep", "new"] and alive(pids["keep"])
    finally:
        stop_agent(agent)


def test_a_taken_port_fails_the_start_and_says_so(
    tmp_path: Path, coordinator: CoordinatorThread
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = "models:\n" + server_model("fixed", port=port)
        agent = start_agent(tmp_path, coordinator.address, "gpu-p", config)
        try:
            with coordinator.client() as sq:
                wait_until(lambda: connected(sq, "gpu-p"))
                with raises(grpc.StatusCode.FAILED_PRECONDITION, f"port {port} is already in use"):
                    start(sq, "fixed")
                failed = processes(sq)["fixed"]
                assert failed.state == processes_pb2.PROCESS_STATE_FAILED
                assert f"port {port} is already in use" in failed.reason
        finally:
            stop_agent(agent)


def test_a_vram_budget_evicts_the_idle_model_and_is_reported(
    tmp_path: Path, coordinator: CoordinatorThread
) -> None:
    config = "models:\n" + server_model("a", vram_mb=600) + server_model("b", vram_mb=600)
    agent = start_agent(tmp_path, coordinator.address, "gpu-v", config, "--vram-mb", "1000")
    try:
        with coordinator.client() as sq:
            wait_until(lambda: connected(sq, "gpu-v"))
            (node,) = nodes(sq)
            assert [(g.vram_total_mb, g.vram_free_mb) for g in node.info.gpus] == [(1000, 1000)]
            first = start(sq, "a")
            second = start(sq, "b")  # 600 + 600 > 1000: idle "a" makes room
            assert not alive(first.pid) and alive(second.pid)
            assert processes(sq)["a"].state == processes_pb2.PROCESS_STATE_STOPPED

            def usage() -> list[tuple[int, int]]:
                return [(g.vram_total_mb, g.vram_free_mb) for g in nodes(sq)[0].usage.gpus]

            wait_until(lambda: usage() == [(1000, 400)])  # heartbeats carry the figures
            assert nodes(sq)[0].usage.memory_used_mb > 0
    finally:
        stop_agent(agent)


def test_an_agent_reaches_a_tls_coordinator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'sq.db'}", tls_cert=cert,
                             tls_key=key)  # fmt: skip
    running = CoordinatorThread(settings)
    agent = start_agent(tmp_path / "a", running.address, "gpu-t", DEFAULT_MODELS,
                        "--tls-ca", str(cert))  # fmt: skip
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with Client(running.address, credentials=credentials) as sq:
            wait_until(lambda: connected(sq, "gpu-t"))
            started = start(sq, "sd")
            assert started.state == processes_pb2.PROCESS_STATE_READY
        # sq speaks TLS too, and says so when the certificate file is missing.
        from stablequeue.cli.main import main as sq_main

        for argv, code in (
            (["--tls-ca", str(cert)], 0),
            (["--tls-ca", str(tmp_path / "no.pem")], 2),
        ):
            with pytest.raises(SystemExit) as exited:
                sq_main(["--addr", running.address, *argv, "nodes", "--json"])
            assert exited.value.code == code
        out, err = capsys.readouterr()
        assert '"gpu-t"' in out and "--tls-ca: cannot read" in err
    finally:
        stop_agent(agent)
        running.close()


def test_a_node_model_is_accepted_beside_a_registered_sd_server(
    tmp_path: Path, coordinator: CoordinatorThread
) -> None:
    """Once a registered sd-server reported its inventory, the submit-time check knew
    only registered servers: a job for a node's model was refused ('not on any
    server (cpp)'). Node models count as well."""
    from stablequeue import txt2img
    from stablequeue.v1 import queue_pb2
    from tests.fakes.sdcpp import FakeSdServer
    from tests.helpers import final_job, register_server

    registered = FakeSdServer()
    agent = start_cli_agent(tmp_path, coordinator.address, "gpu-n", "sd15")
    try:
        with coordinator.client() as sq:
            register_server(sq, "cpp", "sdcpp", registered.url)
            wait_until(lambda: "cpp" in coordinator.coordinator.library.inventoried)
            wait_until(lambda: connected(sq, "gpu-n"))
            job = sq.submit(txt2img("on the node", model="sd15", steps=1, app="sdcpp"))
            done = final_job(sq, job.id)
            assert (done.status, done.server) == (queue_pb2.JOB_STATUS_COMPLETED, "gpu-n:sd15")
            with raises(grpc.StatusCode.FAILED_PRECONDITION, "not on any server"):
                sq.submit(txt2img("nowhere", model="sd99", steps=1, app="sdcpp"))
            # The node's model also answers to the file it loads.
            done = final_job(sq, sq.submit(txt2img("file", model="sd15.gguf", steps=1)).id)
            assert (done.status, done.server) == (queue_pb2.JOB_STATUS_COMPLETED, "gpu-n:sd15")
            # `sq models where` lists the node's model, by its key or its file.
            from stablequeue.v1 import models_pb2

            for reference in ("sd15", "sd15.gguf"):
                request = models_pb2.LocateModelRequest(reference=reference)
                where = sq.call("LocateModel", request, "models").locations
                assert [(w.host, w.path, w.verified) for w in where] == [
                    ("gpu-n:sd15", "/models/sd15.gguf", False)
                ]
            with raises(grpc.StatusCode.NOT_FOUND):
                sq.call("LocateModel", models_pb2.LocateModelRequest(reference="sd99"), "models")
    finally:
        stop_agent(agent)  # type: ignore[arg-type]
        registered.close()


def test_node_models_report_the_steps_their_output_shows(
    tmp_path: Path, coordinator: CoordinatorThread
) -> None:
    """sd-server's job API has no steps, but it redraws a progress bar on stdout with
    `\\r` and no newline: the agent reads it as it comes, the job gets step/total, and
    `sq logs` shows the current bar while sampling."""
    from stablequeue import txt2img
    from stablequeue.v1 import queue_pb2

    # With VAE tiling sd.cpp draws the same bar over its tiles after sampling (16 here).
    models = "models:\n" + server_model("sd", "--vae-tiling")
    agent = start_agent(tmp_path, coordinator.address, "gpu-a", models)
    try:
        with coordinator.client() as sq:
            wait_until(lambda: connected(sq, "gpu-a"))
            job = sq.submit(txt2img("steps", model="sd", steps=200, app="sdcpp"))
            seen: list[tuple[int, int]] = []
            bar = ""
            for event in sq.watch_job(job.id):
                progress = event.job.progress
                if event.type == queue_pb2.JOB_EVENT_TYPE_PROGRESS and progress.total_steps:
                    seen.append((progress.step, progress.total_steps))
                    if not bar and 20 < progress.step < 150:
                        logs = call(sq, "GetProcessLogs", processes_pb2.GetProcessLogsRequest(
                            model="sd", lines=5)).lines  # fmt: skip
                        bar = next((line for line in logs if "/200 - " in line), "")
            assert event.job.status == queue_pb2.JOB_STATUS_COMPLETED, event.job.reason
        steps = [s for s, _ in seen]
        assert {t for _, t in seen} == {200}  # never the tiles
        assert len(set(steps)) >= 5 and steps == sorted(steps) and steps[-1] >= 150, steps
        assert bar.strip().startswith("|") and "it/s" in bar, bar  # one line per redraw, live
    finally:
        stop_agent(agent)  # type: ignore[arg-type]


def test_a_node_model_killed_mid_job_is_retried_and_completes_once(
    tmp_path: Path, coordinator: CoordinatorThread
) -> None:
    """kill -9 of the node's sd-server while it generates: a failure that may pass, so
    the job is tried again (the model restarted on demand) instead of failing for good
    with an empty 'GET /sdcpp/v1/jobs/... failed: '."""
    from stablequeue import txt2img
    from stablequeue.v1 import queue_pb2
    from tests.helpers import final_job

    agent = start_agent(tmp_path, coordinator.address)
    try:
        with coordinator.client() as sq:
            wait_until(lambda: connected(sq, "gpu-a"))
            job = sq.submit(txt2img("crash me", model="sd", steps=300, app="sdcpp"))
            wait_until(lambda: sq.get_job(job.id).progress.step > 20)
            os.kill(processes(sq)["sd"].pid, signal.SIGKILL)
            done = final_job(sq, job.id)
            assert done.status == queue_pb2.JOB_STATUS_COMPLETED, done.reason
            assert done.attempts == 2 and len(done.results) == 1
    finally:
        stop_agent(agent)  # type: ignore[arg-type]


def test_a_cli_run_killed_mid_job_is_retried_and_a_refusal_is_final(
    tmp_path: Path, coordinator: CoordinatorThread
) -> None:
    from stablequeue import txt2img
    from stablequeue.v1 import queue_pb2
    from tests.helpers import final_job

    agent = start_cli_agent(tmp_path, coordinator.address, "gpu-k", "cli")
    try:
        with coordinator.client() as sq:
            wait_until(lambda: connected(sq, "gpu-k"))
            job = sq.submit(txt2img("kill me", model="cli", steps=200))
            wait_until(lambda: sq.get_job(job.id).progress.step > 10)
            [run] = [p for p in psutil.Process(agent.pid).children(recursive=True)
                     if "sd_cli_process" in " ".join(p.cmdline())]  # fmt: skip
            run.kill()
            done = final_job(sq, job.id)
            assert done.status == queue_pb2.JOB_STATUS_COMPLETED, done.reason
            assert done.attempts == 2
            refused = final_job(sq, sq.submit(txt2img("FAIL", model="cli", steps=2)).id)
            assert (refused.status, refused.attempts) == (queue_pb2.JOB_STATUS_FAILED, 1)
    finally:
        stop_agent(agent)  # type: ignore[arg-type]


def test_a_frozen_agent_that_comes_back_does_not_generate_the_job_twice(
    tmp_path: Path, coordinator: CoordinatorThread
) -> None:
    """SIGSTOP the agent mid-job: offline after missed heartbeats, the job re-queued.
    SIGCONT: the node is back and gets attempt 2 while attempt 1 still runs there.
    Updates carry their attempt: attempt 1's are ignored and it is ended, so the job
    completes from attempt 2 and the model generates it to the end once."""
    from stablequeue import txt2img
    from stablequeue.v1 import queue_pb2
    from tests.helpers import final_job

    agent = start_agent(tmp_path, coordinator.address)
    try:
        with coordinator.client() as sq:
            wait_until(lambda: connected(sq, "gpu-a"))
            # (a model server runs on while its agent is frozen: 5 s of work outlasts
            # the freeze, so attempt 1 is still generating when the agent is back)
            job = sq.submit(txt2img("only once", model="sd", steps=500, app="sdcpp"))
            wait_until(lambda: sq.get_job(job.id).progress.step > 20)
            agent.send_signal(signal.SIGSTOP)
            try:
                wait_until(lambda: not connected(sq, "gpu-a"), timeout=15)
                wait_until(lambda: sq.get_job(job.id).status == queue_pb2.JOB_STATUS_PENDING)
            finally:
                agent.send_signal(signal.SIGCONT)
            done = final_job(sq, job.id)
            assert done.status == queue_pb2.JOB_STATUS_COMPLETED, done.reason
            assert done.attempts >= 2 and len(done.results) == 1
        log = tmp_path / "agent" / "logs" / "sd.log"
        # The model's server (the one serving now: attempt 1's was restarted to end it)
        # is idle, and its output has all it generated: nothing runs any more.
        [server] = [p for p in psutil.Process(agent.pid).children(recursive=True)
                    if "sd_server_process" in " ".join(p.cmdline())]  # fmt: skip
        port = server.cmdline()[server.cmdline().index("--listen-port") + 1]

        def idle_and_logged() -> bool:
            counts = httpx.get(f"http://127.0.0.1:{port}/fake/requests").json()
            logged = log.read_text().count("| 500/500 -")
            return counts["running"] == 0 and logged >= counts["finished"]

        wait_until(idle_and_logged, timeout=30)
        output = log.read_text()
        finished = [line for line in output.splitlines() if "| 500/500 -" in line]
        assert len(finished) == 1, output[-2000:]  # sampled to the end once
    finally:
        stop_agent(agent)  # type: ignore[arg-type]
