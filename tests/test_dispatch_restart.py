"""A coordinator killed mid-job: the interrupted Forge job runs again and completes once."""

from __future__ import annotations

from pathlib import Path

import pytest

from stablequeue import Client, txt2img
from stablequeue.v1 import common_pb2, processes_pb2, queue_pb2
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.forge import FakeForge
from tests.helpers import kill_all
from tests.test_durability import CoordinatorProcess


def test_sigkill_mid_job_requeues_the_forge_job_and_it_completes_once(
    tmp_path: Path, database_url: str
) -> None:
    forge = FakeForge(step_seconds=0.05)
    first = CoordinatorProcess(tmp_path / "data", database_url)
    second = None
    try:
        with Client(first.address) as sq:
            sq.processes.RegisterServer(
                processes_pb2.RegisterServerRequest(
                    alias="forge-1", kind=common_pb2.APP_KIND_FORGE, base_url=forge.url
                )
            )
            job = sq.submit(txt2img("interrupted", steps=40))
            forge.wait_for_task()
        first.kill()

        second = CoordinatorProcess(tmp_path / "data", database_url)
        with Client(second.address) as sq:
            for event in sq.watch_job(job.id):
                last = event.job
            done = sq.get_job(last.id)
            assert done.status == queue_pb2.JOB_STATUS_COMPLETED, done.reason
            assert done.attempts == 2
            assert len(done.results) == 1
            outputs = list((tmp_path / "data" / "outputs").rglob("*.png"))
            assert len(outputs) == 1
    finally:
        kill_all(first.proc, second.proc if second else None)
        forge.close()


@pytest.mark.parametrize("kind", ["forge", "comfyui", "sdcpp"])
async def test_a_coordinator_past_its_lease_tells_no_backend_to_generate(kind: str) -> None:
    """A coordinator frozen between claiming a job and sending it must not send it when
    it wakes: the new active one re-queued and sent it already (seen once as a ComfyUI
    prompt sent twice). Each adapter asks the attempt right before its request."""
    from stablequeue_coordinator.backends.base import Attempt, ServerConfig
    from stablequeue_coordinator.backends.registry import make_backend
    from stablequeue_coordinator.errors import NotActive
    from tests.fakes.sdcpp import FakeSdServer

    fake = {"forge": FakeForge, "comfyui": FakeComfyUI, "sdcpp": FakeSdServer}[kind]()
    backend = make_backend(ServerConfig(f"{kind}-1", kind, fake.url))
    model = {"comfyui": "sd_xl_base_1.0.safetensors"}.get(kind, "")
    job = queue_pb2.Job(id="0123456789abcdef", spec=txt2img("frozen", steps=2, model=model))
    attempt = Attempt(job, "5a0c1e7e-0000-4000-8000-000000000001", lambda p: None)
    attempt.may_send = lambda: False
    try:
        with pytest.raises(NotActive, match="lease ran out"):
            await backend.run(attempt)
        generated = (
            fake.prompts if isinstance(fake, FakeComfyUI)
            else [path for path, _ in fake.requests if "img" in path]
        )  # fmt: skip
        assert generated == []
    finally:
        await backend.close()
        fake.close()
