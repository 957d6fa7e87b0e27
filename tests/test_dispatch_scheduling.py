"""Scheduling through the real coordinator and Forge fakes: slots, models, pauses, timeouts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stablequeue import Client, txt2img
from stablequeue.v1 import processes_pb2, queue_pb2
from tests.conftest import CoordinatorThread, make_settings
from tests.fakes.forge import CHECKPOINTS, FakeForge
from tests.helpers import final_job, register_server, wait_until


@pytest.fixture
def forges() -> Iterator[list[FakeForge]]:
    fakes = [FakeForge(), FakeForge()]
    yield fakes
    for fake in fakes:
        fake.close()


def loaded_model(sq: Client, alias: str) -> str:
    request = processes_pb2.GetServerRequest(alias=alias)
    return str(sq.processes.GetServer(request).server.loaded_model)


def test_a_job_nobody_can_run_says_why(sq: Client) -> None:
    job = sq.submit(txt2img("x", app="comfyui"))
    wait_until(lambda: sq.get_job(job.id).stage == queue_pb2.JOB_STAGE_WAITING_FOR_SERVER)
    assert sq.get_job(job.id).reason == "no comfyui server is registered"
    sq.pause()
    later = sq.submit(txt2img("y"))
    wait_until(lambda: sq.get_job(later.id).reason == "the queue is paused")


def test_every_waiting_job_is_told_why_even_when_the_queue_then_goes_quiet(
    sq: Client, forges: list[FakeForge]
) -> None:
    # Rounds that follow a server's answers look only as deep as the free slots need;
    # the jobs past that learn why they wait on a round at most every half second,
    # and that round must come even if nothing else happens afterwards.
    register_server(sq, "f1", "forge", forges[0].url)
    assert final_job(sq, sq.submit(txt2img("first", steps=1)).id).status == (
        queue_pb2.JOB_STATUS_COMPLETED
    )
    stuck = sq.submit_many(txt2img("x", app="comfyui"), 40)
    reason = "no comfyui server is registered"
    wait_until(lambda: all(sq.get_job(job.id).reason == reason for job in stuck), timeout=10)


def test_a_server_may_save_one_answered_job_while_it_works_on_the_next() -> None:
    """Answered jobs being saved beyond the first take a slot again: saves that fall
    behind hold the server back rather than pile up work a crash would redo."""
    from types import SimpleNamespace

    from stablequeue_coordinator.dispatch.dispatcher import occupied

    def job(alias: str, answered: bool) -> Any:
        return SimpleNamespace(server=SimpleNamespace(row=SimpleNamespace(alias=alias)),
                               answered=answered)  # fmt: skip

    assert occupied([job("a", True)]) == {}
    assert occupied([job("a", True), job("a", False)]) == {"a": 1}
    assert occupied([job("a", True), job("a", True), job("b", True)]) == {"a": 1}
    assert occupied([job("a", True)] * 3 + [job("a", False), job("b", False)]) == {"a": 3, "b": 1}


def test_cancelling_a_pending_job_never_reaches_a_server(
    sq: Client, forges: list[FakeForge]
) -> None:
    forge = forges[0]
    forge.step_seconds = 0.05
    register_server(sq, "f1", "forge", forge.url)
    running = sq.submit(txt2img("running", steps=20))
    waiting = sq.submit(txt2img("waiting", steps=20))
    forge.wait_for_task()
    assert sq.cancel(waiting.id).status == queue_pb2.JOB_STATUS_CANCELLED
    assert final_job(sq, running.id).status == queue_pb2.JOB_STATUS_COMPLETED
    assert [body["prompt"] for _, body in forge.requests] == ["running"]
    assert sq.get_job(waiting.id).status == queue_pb2.JOB_STATUS_CANCELLED


def test_concurrency_limits_are_respected(sq: Client, forges: list[FakeForge]) -> None:
    wide, narrow = forges
    wide.step_seconds = narrow.step_seconds = 0.02
    register_server(sq, "wide", "forge", wide.url, max_concurrency=2)
    register_server(sq, "narrow", "forge", narrow.url)
    jobs = sq.submit_many(txt2img("many", steps=10), 9)
    finals = [final_job(sq, job.id) for job in jobs]
    assert all(j.status == queue_pb2.JOB_STATUS_COMPLETED for j in finals)
    assert (wide.max_in_flight, narrow.max_in_flight) == (2, 1)
    assert {j.server for j in finals} == {"wide", "narrow"}


def test_the_server_with_the_wanted_model_loaded_is_preferred(
    sq: Client, forges: list[FakeForge]
) -> None:
    sd15, sdxl = forges
    sdxl.loaded = str(CHECKPOINTS[0]["title"])
    register_server(sq, "a-sd15", "forge", sd15.url)
    register_server(sq, "b-sdxl", "forge", sdxl.url)
    wait_until(lambda: loaded_model(sq, "a-sd15") != "" and loaded_model(sq, "b-sdxl") != "")
    for model, expected in (
        ("sd_xl_base_1.0", "b-sdxl"),
        ("v1-5-pruned-emaonly", "a-sd15"),
        ("31e35c80fc", "b-sdxl"),  # by short hash
    ):
        done = final_job(sq, sq.submit(txt2img("m", model=model, steps=2)).id)
        assert (done.status, done.server) == (queue_pb2.JOB_STATUS_COMPLETED, expected), model


def test_a_paused_server_gets_no_work_until_resumed(sq: Client, forges: list[FakeForge]) -> None:
    forge = forges[0]
    register_server(sq, "f1", "forge", forge.url)
    assert list(sq.pause(server="f1").paused_servers) == ["f1"]
    job = sq.submit(txt2img("held", steps=2))
    wait_until(lambda: "server f1 is paused" in sq.get_job(job.id).reason)
    assert sq.get_job(job.id).status == queue_pb2.JOB_STATUS_PENDING
    assert forge.requests == []
    sq.resume(server="f1")
    done = final_job(sq, job.id)
    assert (done.status, done.server) == (queue_pb2.JOB_STATUS_COMPLETED, "f1")


def test_an_attempt_that_takes_too_long_is_interrupted_and_counted(
    tmp_path: Path, forges: list[FakeForge]
) -> None:
    forge = forges[0]
    forge.step_seconds = 0.1
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'sq.db'}", attempt_timeout=0.5, max_attempts=1
    )
    coordinator = CoordinatorThread(settings)
    try:
        with coordinator.client() as sq:
            register_server(sq, "f1", "forge", forge.url)
            done = final_job(sq, sq.submit(txt2img("slow", steps=100)).id)
            assert done.status == queue_pb2.JOB_STATUS_FAILED
            assert "gave up after 1 attempts: attempt timed out after 0.5 s" in done.reason
            wait_until(lambda: ("interrupt", {}) in forge.requests)
    finally:
        coordinator.close()


def test_the_next_job_follows_changes_made_while_the_server_works(
    sq: Client, forges: list[FakeForge]
) -> None:
    """A server freed by its answer gets the next job from the dispatcher's last read of
    the queue; a submit, move, priority change or cancel made meanwhile must count."""
    forge = forges[0]
    forge.step_seconds = 0.02
    sq.pause()
    first = sq.submit(txt2img("first", steps=10))
    a, b, c, d = (sq.submit(txt2img(name, steps=10)) for name in "abcd")
    register_server(sq, "f1", "forge", forge.url)
    sq.resume()
    forge.wait_for_task()  # "first" runs; the rest were read as the next ones
    sq.cancel(a.id)
    urgent = sq.submit(txt2img("urgent", steps=10, priority=5))
    sq.move(d.id, "front")
    sq.set_priority(c.id, 3)
    for job in (first, b, c, d, urgent):
        assert final_job(sq, job.id).status == queue_pb2.JOB_STATUS_COMPLETED
    ran = [body["prompt"] for _, body in forge.requests]
    assert ran == ["first", "urgent", "c", "d", "b"]
