"""Jobs run end to end on a Forge fake through the real coordinator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PIL import Image

from stablequeue import Client, txt2img
from stablequeue.v1 import queue_pb2
from tests.conftest import CoordinatorThread
from tests.fakes.forge import FakeForge
from tests.helpers import final_job, register_server, wait_until


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


def test_rejected_request_fails_at_once_with_the_backend_message(
    sq: Client, forge: FakeForge
) -> None:
    register_server(sq, "forge-1", "forge", forge.url)
    job = sq.submit(txt2img("x", steps=2, sampler="No Such Sampler"))
    done = final_job(sq, job.id)
    assert done.status == queue_pb2.JOB_STATUS_FAILED
    assert "Sampler not found" in done.reason and done.attempts == 1


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
