"""Jobs run end to end on a Forge fake through the real coordinator."""

from __future__ import annotations

import contextlib
import itertools
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from stablequeue import Client, txt2img
from stablequeue.v1 import queue_pb2
from tests.conftest import CoordinatorThread, make_settings
from tests.fakes.forge import FakeForge
from tests.helpers import final_job, register_server, wait_until

PROGRESS = queue_pb2.JOB_EVENT_TYPE_PROGRESS


@pytest.fixture
def forge() -> Iterator[FakeForge]:
    fake = FakeForge()
    yield fake
    fake.close()


def test_forge_job_completes_with_images_and_metadata_on_disk(
    server: CoordinatorThread, sq: Client, forge: FakeForge
) -> None:
    register_server(sq, "forge-1", "forge", forge.url)
    job = sq.submit(
        txt2img("a red fox", model="sd_xl_base_1.0", loras=[("detail", 0.5)], seed=7,
                steps=5, batch_size=2, sampler="Euler a")
    )  # fmt: skip
    done = final_job(sq, job.id)
    assert done.status == queue_pb2.JOB_STATUS_COMPLETED, done.reason
    path, body = forge.requests[-1]
    assert path == "/sdapi/v1/txt2img"
    assert body["override_settings"]["sd_model_checkpoint"] == (
        "sd_xl_base_1.0.safetensors [31e35c80fc]"
    )
    assert body["prompt"] == "a red fox <lora:detail:0.5>"
    assert [r.seed for r in done.results] == [7, 8]
    root = server.coordinator.results.root
    for result in done.results:
        with Image.open(root / result.filename) as image:
            assert image.text["parameters"].startswith("a red fox")
    chunks = list(sq.queue.GetResult(queue_pb2.GetResultRequest(id=done.results[0].id)))
    assert b"".join(c.data for c in chunks) == (root / done.results[0].filename).read_bytes()


def test_a_sampler_or_scheduler_the_server_lacks_fails_with_the_valid_names(
    sq: Client, forge: FakeForge
) -> None:
    """Forge would run an unknown sampler as its default (HTTP 200); the job fails at
    once instead, naming what the server has, and nothing is generated."""
    register_server(sq, "forge-1", "forge", forge.url)
    job = sq.submit(txt2img("x", steps=2, sampler="No Such Sampler"))
    done = final_job(sq, job.id)
    assert done.status == queue_pb2.JOB_STATUS_FAILED and done.attempts == 1
    assert done.reason == (
        "forge-1 has no sampler 'No Such Sampler'; it has: Euler a, Euler, DPM++ 2M, "
        "k_euler_a, k_euler_ancestral, k_euler, k_dpmpp_2m"
    )
    job = sq.submit(txt2img("x", steps=2, sampler="Euler", scheduler="Exponential"))
    done = final_job(sq, job.id)
    assert done.status == queue_pb2.JOB_STATUS_FAILED
    assert "no scheduler 'Exponential'; it has: Automatic, automatic, Uniform" in done.reason
    assert forge.requests == []
    # Known names run, including Forge's "<sampler> <scheduler>" form.
    for sampler, scheduler in (("DPM++ 2M Karras", ""), ("Euler a", "Karras")):
        job = sq.submit(txt2img("x", steps=2, sampler=sampler, scheduler=scheduler))
        assert final_job(sq, job.id).status == queue_pb2.JOB_STATUS_COMPLETED


def test_cancel_running_job_interrupts_forge(sq: Client, forge: FakeForge) -> None:
    forge.step_seconds = 0.2
    register_server(sq, "forge-1", "forge", forge.url)
    job = sq.submit(txt2img("slow", steps=100))
    forge.wait_for_task()
    sq.cancel(job.id)
    wait_until(lambda: ("interrupt", {}) in forge.requests)
    assert sq.get_job(job.id).status == queue_pb2.JOB_STATUS_CANCELLED


def test_server_dying_mid_job_is_retried_elsewhere_and_completes_once(
    server: CoordinatorThread, sq: Client
) -> None:
    first, second = FakeForge(step_seconds=0.2), FakeForge()
    try:
        register_server(sq, "forge-1", "forge", first.url)
        job = sq.submit(txt2img("survivor", steps=50, server=""))
        first.wait_for_task()
        register_server(sq, "forge-2", "forge", second.url)
        first.close()  # the server dies with our request in flight
        done = final_job(sq, job.id)
        assert done.status == queue_pb2.JOB_STATUS_COMPLETED, done.reason
        assert done.server == "forge-2" and done.attempts == 2
        assert len(done.results) == 1
        assert [p for p, _ in second.requests] == ["/sdapi/v1/txt2img"]
    finally:
        second.close()


def test_progress_carries_steps_and_goes_out_only_when_it_changes(
    sq: Client, forge: FakeForge
) -> None:
    """Forge's /internal/progress has no step numbers: they come from the API's state.
    The adapter polls 4 times a second; only reports that change something are events."""
    forge.step_seconds = 0.6  # several polls per step, as on a slow GPU
    register_server(sq, "forge-1", "forge", forge.url)
    job = sq.submit(txt2img("steps", steps=6))
    progress = [e.job.progress for e in sq.watch_job(job.id) if e.type == PROGRESS]
    steps = [p.step for p in progress]
    assert {p.total_steps for p in progress} == {6}
    assert steps == sorted(steps) and len(set(steps)) >= 4 and max(steps) >= 5
    shown = [(p.step, round(p.fraction, 3), round(p.eta_seconds)) for p in progress]
    repeats = [a for a, b in itertools.pairwise(shown) if a == b]
    frames = [p.preview_image for p in progress]
    previews = sum(bool(b) and b != a for a, b in itertools.pairwise([b"", *frames]))
    assert len(repeats) <= previews  # a repeat only when it brings a new preview
    assert 1 <= previews <= 3  # Forge makes one every 10 steps
    first = frames.index(next(f for f in frames if f))
    assert all(frames[first:])  # once shown, every update carries the preview shown


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs for the coordinator's images (mounting needs root, as in CI)."""
    folder = tmp_path / "outputs"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_output_disk_keeps_every_job_and_holds_dispatching_until_there_is_room(
    tmp_path: Path, database_url: str, small_disk: Path, forge: FakeForge
) -> None:
    """`OSError: [Errno 28]` failed each job for good after generating it, one after
    another. Now the job goes back to the queue, dispatching is held with the reason
    (`sq stats`), and both jobs complete once space is freed."""
    filler = small_disk / "filler.bin"
    with filler.open("wb", buffering=0) as f:  # fill the disk to the last byte
        for chunk in (64 << 10, 4 << 10, 1):
            with contextlib.suppress(OSError):
                while True:
                    f.write(bytes(chunk))
    settings = make_settings(tmp_path, database_url).model_copy(update={"output_dir": small_disk})
    running = CoordinatorThread(settings)
    try:
        with running.client() as sq:
            register_server(sq, "forge-1", "forge", forge.url)
            first = sq.submit(txt2img("no room", steps=1))
            wait_until(lambda: sq.stats().pause_reason != "", 30)
            second = sq.submit(txt2img("waits", steps=1))
            assert "output disk is full" in sq.stats().pause_reason and sq.stats().paused
            job = sq.get_job(first.id)
            assert job.status == queue_pb2.JOB_STATUS_PENDING and "disk full" in job.reason
            filler.unlink()  # room again: dispatching resumes by itself
            for job_id in (first.id, second.id):
                done = final_job(sq, job_id)
                assert done.status == queue_pb2.JOB_STATUS_COMPLETED, done.reason
            assert sq.stats().pause_reason == "" and not sq.stats().paused
            assert (small_disk / done.results[0].filename).exists()
    finally:
        running.close()
