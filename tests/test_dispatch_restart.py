"""A coordinator killed mid-job: the interrupted Forge job runs again and completes once."""

from __future__ import annotations

import time
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


def test_sigkill_while_jobs_flow_keeps_every_completion_a_watcher_saw(
    tmp_path: Path, database_url: str
) -> None:
    """Claims and finishes share transactions (group commit) and a server gets its
    next job before the last one's images are saved: a completion a watcher was told
    of is on disk and in the store all the same, and no job is lost or kept twice."""
    count = 120
    fakes = [FakeForge(step_seconds=0) for _ in range(3)]
    first = CoordinatorProcess(tmp_path / "data", database_url)
    second = None
    try:
        with Client(first.address) as sq:
            for i, fake in enumerate(fakes):
                sq.processes.RegisterServer(
                    processes_pb2.RegisterServerRequest(
                        alias=f"forge-{i}", kind=common_pb2.APP_KIND_FORGE, base_url=fake.url
                    )
                )
            sq.pause()  # every job queued before the first one starts
            jobs = [j.id for j in sq.submit_many(txt2img("flow", steps=1), count)]
            seen: set[str] = set()
            events = sq.watch_queue(snapshot=False)
            sq.resume()
            for event in events:
                if event.job_event.job.status == queue_pb2.JOB_STATUS_COMPLETED:
                    seen.add(event.job_event.job.id)
                if len(seen) >= count // 3:
                    break
            first.kill()  # mid-flow: jobs claimed, answered, being saved
            events.close()
        assert len(seen) < count

        second = CoordinatorProcess(tmp_path / "data", database_url)
        with Client(second.address) as sq:
            deadline = time.monotonic() + 60
            while (stats := sq.stats()).completed < count:
                assert time.monotonic() < deadline, f"not all jobs ran again: {stats}"
                time.sleep(0.05)
            done = {job.id: job for job in sq.iter_jobs(page_size=100)}
        assert set(done) == set(jobs)
        assert all(j.status == queue_pb2.JOB_STATUS_COMPLETED for j in done.values())
        # What the watcher saw completed was never run again, and kept its one image.
        assert all(done[job_id].attempts == 1 for job_id in seen)
        assert all(len(job.results) == 1 for job in done.values())
        outputs = list((tmp_path / "data" / "outputs").rglob("*.png"))
        assert len(outputs) == count
        assert {p.name for p in outputs} == {
            r.filename.split("/")[-1] for j in done.values() for r in j.results
        }
        # Only jobs under way at the kill ran twice: at most one being saved and one
        # sent per server.
        assert sum(j.attempts - 1 for j in done.values()) <= 2 * len(fakes)
    finally:
        kill_all(first.proc, second.proc if second else None)
        for fake in fakes:
            fake.close()


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
