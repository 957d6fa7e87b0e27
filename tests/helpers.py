"""Small helpers shared by tests."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from stablequeue import Client, StableQueueError
from stablequeue.app_kinds import APPS
from stablequeue.v1 import processes_pb2, queue_pb2

PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


@contextlib.contextmanager
def raises(code: grpc.StatusCode, *fragments: str) -> Iterator[None]:
    """Expects a StableQueueError with this status code and message fragments."""
    with pytest.raises(StableQueueError) as info:
        yield
    assert info.value.code == code, info.value
    for fragment in fragments:
        assert fragment in info.value.message, info.value.message


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Polls with a deadline (for effects in another process)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def register_server(sq: Client, alias: str, kind: str, url: str, **fields: Any) -> None:
    """Registers a backend server ("forge", "comfyui" or "sdcpp") with the coordinator."""
    sq.call(
        "RegisterServer",
        processes_pb2.RegisterServerRequest(alias=alias, kind=APPS[kind], base_url=url, **fields),
        "processes",
    )


def final_job(sq: Client, job_id: str) -> queue_pb2.Job:
    """Follows a job to its final state and returns it in full (results included)."""
    last = None
    for event in sq.watch_job(job_id):
        last = event
    assert last is not None
    return sq.get_job(last.job.id)


def kill_all(*processes: subprocess.Popen[str] | None) -> None:
    """Kills and reaps the child processes a test started that are still running."""
    for process in processes:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()


async def subscriptions(bus: Any) -> set[Any]:
    """The event bus's whole-queue subscriptions (run it on the coordinator's loop):
    a watcher is listening once its subscription is among them."""
    return set(bus._all)
