"""`sq` end to end: the real command-line entry point against a real coordinator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stablequeue import txt2img
from stablequeue.cli.main import main
from tests.conftest import CoordinatorThread
from tests.fakes.forge import FakeForge
from tests.helpers import PNG_1PX


def sq(
    capsys: pytest.CaptureFixture[str], server: CoordinatorThread, *args: str
) -> tuple[int, str, str]:
    """Runs `sq --addr ADDR ARGS...`; returns (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--addr", server.address, *args])
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def test_submit_with_every_flag_then_show_as_json(
    capsys: pytest.CaptureFixture[str], sqlite_server: CoordinatorThread, tmp_path: Path
) -> None:
    image = tmp_path / "in.png"
    image.write_bytes(PNG_1PX)
    code, out, _ = sq(
        capsys, sqlite_server, "submit", "a red fox", "--negative", "blurry", "--model", "sdxl",
        "--lora", "detail:0.5", "--lora", "plain", "--seed", "7", "--steps", "25", "--cfg", "6",
        "--width", "832", "--height", "1216", "--sampler", "Euler a", "--scheduler", "karras",
        "--batch-size", "2", "--iterations", "2", "--denoise", "0.4", "--init-image", str(image),
        "--extra", '{"enable_hr": false}', "--app", "forge", "--server", "gpu-1",
        "--priority", "3", "--label", "cli", "--json",
    )  # fmt: skip
    assert code == 0
    [job] = json.loads(out)
    params = job["spec"]["params"]
    assert params["mode"] == "GENERATION_MODE_IMG2IMG"
    assert params["loras"] == [{"name": "detail", "weight": 0.5}, {"name": "plain", "weight": 1.0}]
    assert (params["steps"], params["width"], params["height"], params["seed"]) == (
        25,
        832,
        1216,
        "7",
    )
    assert job["spec"]["target_server"] == "gpu-1" and job["spec"]["priority"] == 3

    code, out, _ = sq(capsys, sqlite_server, "show", job["id"], "--json")
    assert code == 0 and json.loads(out)["id"] == job["id"]
    code, out, _ = sq(capsys, sqlite_server, "show", job["id"])
    assert code == 0 and "a red fox" in out and "PENDING" in out


def test_count_workflow_list_move_priority_cancel_retry_delete(
    capsys: pytest.CaptureFixture[str], sqlite_server: CoordinatorThread, tmp_path: Path
) -> None:
    flow = tmp_path / "flow.json"
    flow.write_text(json.dumps({"1": {"class_type": "KSampler", "inputs": {"seed": 1}}}))
    code, out, _ = sq(capsys, sqlite_server, "submit", "--workflow", str(flow), "--json")
    flow_job = json.loads(out)[0]["id"]
    code, out, _ = sq(
        capsys, sqlite_server, "submit", "cats", "--count", "3", "--seed", "5", "--json"
    )
    jobs = [j["id"] for j in json.loads(out)]
    assert code == 0 and len(jobs) == 3

    assert sq(capsys, sqlite_server, "move", jobs[2], "--front")[0] == 0
    assert sq(capsys, sqlite_server, "move", jobs[0], "--after", jobs[1])[0] == 0
    assert sq(capsys, sqlite_server, "priority", flow_job, "-5")[0] == 0
    code, out, _ = sq(capsys, sqlite_server, "jobs", "--json")
    assert [j["id"] for j in json.loads(out)["jobs"]] == [jobs[2], jobs[1], jobs[0], flow_job]

    code, out, _ = sq(capsys, sqlite_server, "cancel", jobs[0], jobs[1])
    assert code == 0 and out.count("cancelled") == 2
    assert sq(capsys, sqlite_server, "retry", jobs[0])[0] == 0
    assert sq(capsys, sqlite_server, "delete", jobs[1])[0] == 0
    code, out, _ = sq(capsys, sqlite_server, "jobs", "--all", "--json")
    assert {j["id"] for j in json.loads(out)["jobs"]} == {jobs[0], jobs[2], flow_job}
    code, out, _ = sq(capsys, sqlite_server, "jobs")
    assert code == 0 and flow_job in out and "PENDING" in out


def test_stats_pause_resume_and_keys(
    capsys: pytest.CaptureFixture[str], sqlite_server: CoordinatorThread
) -> None:
    assert "PAUSED" in sq(capsys, sqlite_server, "pause")[1]
    code, out, _ = sq(capsys, sqlite_server, "stats", "--json")
    assert json.loads(out)["paused"] is True
    assert "PAUSED" not in sq(capsys, sqlite_server, "resume")[1]

    code, out, _ = sq(capsys, sqlite_server, "keys", "create", "laptop", "--scope", "submit")
    secret = out.strip().splitlines()[-1]
    assert code == 0 and secret.startswith("sq_")
    code, out, _ = sq(capsys, sqlite_server, "keys", "list", "--json")
    [key] = json.loads(out)
    assert key["name"] == "laptop" and secret not in out
    assert sq(capsys, sqlite_server, "keys", "revoke", key["id"])[0] == 0
    code, out, _ = sq(capsys, sqlite_server, "--api-key", secret, "stats")
    assert code == 1


def test_errors_print_the_server_message_and_exit_non_zero(
    capsys: pytest.CaptureFixture[str], sqlite_server: CoordinatorThread
) -> None:
    code, _, err = sq(capsys, sqlite_server, "submit", "x", "--steps", "9999")
    assert code == 1 and "INVALID_ARGUMENT: spec.params.steps" in err
    code, _, err = sq(capsys, sqlite_server, "show", "nope")
    assert code == 1 and "NOT_FOUND: no job with id 'nope'" in err
    code, _, err = sq(capsys, sqlite_server, "submit")
    assert code == 2 and "prompt" in err
    code, _, err = sq(capsys, sqlite_server, "--addr", "127.0.0.1:1", "--timeout", "2", "stats")
    assert code == 1 and "cannot reach the coordinator" in err


def test_watch_follows_a_job_to_its_end_and_exits_non_zero_unless_completed(
    capsys: pytest.CaptureFixture[str], sqlite_server: CoordinatorThread
) -> None:
    with sqlite_server.client() as client:
        job = client.submit(txt2img("x"))
        client.cancel(job.id)
    code, out, _ = sq(capsys, sqlite_server, "watch", job.id)
    assert code == 1 and "CANCELLED" in out


def test_watch_json_prints_one_event_per_line(
    capsys: pytest.CaptureFixture[str], sqlite_server: CoordinatorThread
) -> None:
    with sqlite_server.client() as client:
        job = client.submit(txt2img("x"))
        client.cancel(job.id)
    code, out, _ = sq(capsys, sqlite_server, "watch", job.id, "--json")
    [event] = [json.loads(line) for line in out.splitlines()]
    assert code == 1
    assert event["type"] == "JOB_EVENT_TYPE_SNAPSHOT"
    assert event["job"]["status"] == "JOB_STATUS_CANCELLED"


def test_servers_add_list_disable_remove(
    capsys: pytest.CaptureFixture[str], sqlite_server: CoordinatorThread
) -> None:
    code, out, _ = sq(
        capsys, sqlite_server, "servers", "add", "gpu-1", "--kind", "forge",
        "--url", "http://127.0.0.1:9", "--username", "u", "--password", "secret", "--json",
    )  # fmt: skip
    assert code == 0 and json.loads(out)["has_credentials"] is True and "secret" not in out
    code, out, _ = sq(capsys, sqlite_server, "servers", "list", "--json")
    assert [s["alias"] for s in json.loads(out)] == ["gpu-1"]
    assert sq(capsys, sqlite_server, "servers", "disable", "gpu-1")[0] == 0
    code, out, _ = sq(capsys, sqlite_server, "servers", "show", "gpu-1", "--json")
    assert json.loads(out)["enabled"] is False
    code, _, err = sq(
        capsys, sqlite_server, "servers", "add", "x", "--kind", "forge", "--url", "ftp://x"
    )
    assert code == 1 and "INVALID_ARGUMENT: base_url" in err
    assert sq(capsys, sqlite_server, "servers", "remove", "gpu-1")[0] == 0
    code, out, _ = sq(capsys, sqlite_server, "servers", "list")
    assert code == 0 and "gpu-1" not in out


def test_images_list_get_and_delete(
    capsys: pytest.CaptureFixture[str], sqlite_server: CoordinatorThread, tmp_path: Path
) -> None:
    forge = FakeForge()
    try:
        run = lambda *args: sq(capsys, sqlite_server, *args)  # noqa: E731
        assert run("servers", "add", "f1", "--kind", "forge", "--url", forge.url)[0] == 0
        code, out, _ = run("submit", "a gallery fox", "--seed", "3", "--wait", "--json")
        assert code == 0, out
        job_id = json.loads(out)[0]["id"]
        code, out, _ = run("images", "--job", job_id, "--json")
        (result,) = json.loads(out)["results"]
        assert result["job_id"] == job_id and result["seed"] == "3"
        stored = (sqlite_server.coordinator.results.root / result["filename"]).read_bytes()
        assert len(json.loads(run("images", "--text", "gallery", "--json")[1])["results"]) == 1
        assert json.loads(run("images", "--text", "wolf", "--json")[1])["results"] == []
        assert run("images")[0] == 0  # the table renders
        assert json.loads(run("images", "--since", "2999-01-01", "--json")[1])["results"] == []
        assert run("images", "--since", "yesterday")[0] == 2  # argparse: not a date

        target = tmp_path / "fox.png"
        code, out, _ = run("image", "get", result["id"], "-o", str(target))
        assert code == 0 and target.read_bytes() == stored
        code, _, err = run("image", "get", result["id"], "-o", str(target))
        assert code == 2 and "exists" in err  # never overwritten silently
        assert run("image", "get", result["id"], "-o", str(target), "--force")[0] == 0
        code, _, _ = run("image", "get", result["id"], "-o", str(tmp_path))
        assert code == 0 and (tmp_path / Path(result["filename"]).name).read_bytes() == stored
        assert not list(tmp_path.glob(".sq-*"))  # no temporary files left behind

        assert run("image", "delete", result["id"])[0] == 0
        assert json.loads(run("images", "--job", job_id, "--json")[1])["results"] == []
        code, _, err = run("image", "get", result["id"], "-o", str(tmp_path / "gone.png"))
        assert code == 1 and "NOT_FOUND" in err and not (tmp_path / "gone.png").exists()
    finally:
        forge.close()


@pytest.mark.parametrize("kind", ["forge", "sdcpp"])
def test_unseeded_submits_get_random_seeds_recorded_as_their_images_say(
    capsys: pytest.CaptureFixture[str], sqlite_server: CoordinatorThread, kind: str
) -> None:
    """`sq submit` without --seed sends -1; the backend picks a seed; the seed recorded
    with the image (and shown by `sq show` and `sq images`) is the one in its infotext."""
    import re

    from stablequeue_coordinator.outputs import png
    from tests.fakes.sdcpp import FakeSdServer

    backend = FakeForge() if kind == "forge" else FakeSdServer()
    try:
        run = lambda *args: sq(capsys, sqlite_server, *args)  # noqa: E731
        assert run("servers", "add", "b1", "--kind", kind, "--url", backend.url)[0] == 0
        seeds = []
        for _ in range(2):
            code, out, _ = run("submit", "an unseeded fox", "--steps", "2", "--wait", "--json")
            assert code == 0, out
            (job,) = json.loads(out)
            assert job["spec"]["params"]["seed"] == "-1"  # asked for a random seed
            code, out, _ = run("images", "--job", job["id"], "--json")
            (result,) = json.loads(out)["results"]
            stored = (sqlite_server.coordinator.results.root / result["filename"]).read_bytes()
            named = re.search(r"Seed: (\d+)", png.text(stored)["parameters"])
            assert named is not None and result["seed"] == named.group(1)
            code, out, _ = run("show", job["id"])
            assert code == 0 and f"(seed {result['seed']})" in out
            seeds.append(result["seed"])
        assert seeds[0] != seeds[1]
    finally:
        backend.close()


def test_a_server_that_is_up_without_telling_its_model_shows_unknown() -> None:
    """A ComfyUI says which model it holds only once it ran a prompt: not "-", which
    reads as "none", but unknown; a server that is down shows "-"."""
    from rich.console import Console

    from stablequeue.cli import render
    from stablequeue.v1 import processes_pb2

    up = processes_pb2.Server(alias="comfy", health=processes_pb2.SERVER_HEALTH_UP)
    down = processes_pb2.Server(alias="gone", health=processes_pb2.SERVER_HEALTH_DOWN)
    loaded = processes_pb2.Server(
        alias="forge", health=processes_pb2.SERVER_HEALTH_UP, loaded_model="sd15.safetensors"
    )
    console = Console(width=200, record=True)
    console.print(render.servers_table([up, down, loaded]))
    rows = {line.split("│")[1].strip(): line for line in console.export_text().splitlines()
            if line.count("│") > 2}  # fmt: skip
    assert "unknown" in rows["comfy"] and "sd15.safetensors" in rows["forge"]
    assert rows["gone"].rstrip().rstrip("│").rstrip().endswith("-")


def test_output_into_a_closed_pipe_ends_quietly(server: CoordinatorThread) -> None:
    """`sq jobs --json | head -1`: the reader leaves early; no BrokenPipe traceback."""
    import subprocess
    import sys

    with server.client() as client:
        for i in range(60):
            client.submit(txt2img(f"job {i}", app="forge"))
    sq_command = f"{sys.executable} -c 'from stablequeue.cli.main import main; main()'"
    command = f"{sq_command} --addr {server.address} jobs --json | head -c 100 > /dev/null"
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
    assert result.stderr == ""
