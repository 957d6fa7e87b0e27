"""A coordinator killed mid-job: the interrupted Forge job runs again and completes once."""

from __future__ import annotations

from pathlib import Path

from stablequeue import Client, txt2img
from stablequeue.v1 import common_pb2, processes_pb2, queue_pb2
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
