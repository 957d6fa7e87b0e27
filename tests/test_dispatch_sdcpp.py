"""Jobs run end to end on an sd-server fake (native async API and the older sdapi)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from PIL import Image

from stablequeue import Client, txt2img
from stablequeue.v1 import processes_pb2, queue_pb2
from tests.conftest import CoordinatorThread
from tests.fakes.sdcpp import FakeSdServer
from tests.helpers import final_job, raises, register_server, wait_until


@pytest.fixture
def sdcpp() -> Iterator[FakeSdServer]:
    fake = FakeSdServer()
    yield fake
    fake.close()


def test_native_job_completes_with_structured_loras_and_sd_cpp_metadata(
    server: CoordinatorThread, sq: Client, sdcpp: FakeSdServer
) -> None:
    register_server(sq, "cpp-1", "sdcpp", sdcpp.url)
    wait_until(lambda: loaded_model(sq, "cpp-1") != "")
    spec = txt2img("a pixel castle", model="sd_xl_turbo_1.0_fp16", loras=[("ink", 0.6)],
                   sampler="Euler a", steps=4, cfg_scale=1.5, seed=11, batch_size=2,
                   width=512, height=512)  # fmt: skip
    done = final_job(sq, sq.submit(spec).id)
    assert done.status == queue_pb2.JOB_STATUS_COMPLETED, done.reason
    path, body = sdcpp.requests[-1]
    assert path == "/sdcpp/v1/img_gen"
    assert body["prompt"] == "a pixel castle"  # no <lora:> tags: sd-server refuses them
    assert body["lora"] == [
        {"path": "styles/ink.safetensors", "multiplier": 0.6, "is_high_noise": False}
    ]
    assert body["sample_params"] == {
        "sample_method": "euler_a",
        "sample_steps": 4,
        "guidance": {"txt_cfg": 1.5},
    }
    assert body["batch_count"] == 2 and body["seed"] == 11
    assert [r.seed for r in done.results] == [11, 12]
    root = server.coordinator.results.root
    with Image.open(root / done.results[1].filename) as image:
        # Ours (A1111's form, which PNG Info and Civitai read); sd.cpp's kept beside it.
        assert "Seed: 12" in image.text["parameters"]
        assert "Sampler: Euler a" in image.text["parameters"]
        assert "Version: StableQueue" in image.text["parameters"]
        assert "stable-diffusion.cpp" in image.text["sdcpp_parameters"]
    # No seed (-1): sd.cpp picks one and says it in its image; that seed is recorded.
    done = final_job(sq, sq.submit(txt2img("random", steps=1, app="sdcpp")).id)
    with Image.open(root / done.results[0].filename) as image:
        own = image.text["sdcpp_parameters"]
        assert done.results[0].seed >= 0 and f"Seed: {done.results[0].seed}," in own
        assert f"Seed: {done.results[0].seed}," in image.text["parameters"]


def test_older_server_without_the_native_api_uses_sdapi(sq: Client) -> None:
    legacy = FakeSdServer(native=False)
    try:
        register_server(sq, "cpp-old", "sdcpp", legacy.url)
        spec = txt2img("a boat", loras=[("pixel-art", 1.0)], steps=2, seed=5, app="sdcpp")
        done = final_job(sq, sq.submit(spec).id)
        assert done.status == queue_pb2.JOB_STATUS_COMPLETED, done.reason
        path, body = legacy.requests[-1]
        assert path == "/sdapi/v1/txt2img"
        assert body["lora"] == [
            {"path": "pixel-art.safetensors", "multiplier": 1.0, "is_high_noise": False}
        ]
        assert [r.seed for r in done.results] == [5]
    finally:
        legacy.close()


def test_generation_failure_fails_at_once_with_the_servers_message(
    sq: Client, sdcpp: FakeSdServer
) -> None:
    register_server(sq, "cpp-1", "sdcpp", sdcpp.url)
    done = final_job(sq, sq.submit(txt2img("FAIL please", app="sdcpp")).id)
    assert done.status == queue_pb2.JOB_STATUS_FAILED and done.attempts == 1
    assert "generate_image returned no results" in done.reason


def test_a_job_whose_lora_no_server_has_waits_naming_it(
    server: CoordinatorThread, sq: Client, sdcpp: FakeSdServer
) -> None:
    register_server(sq, "cpp-1", "sdcpp", sdcpp.url)
    wait_until(lambda: "cpp-1" in server.coordinator.library.inventoried)
    job = sq.submit(txt2img("x", loras=[("nope", 1.0)], app="sdcpp"))
    wait_until(lambda: sq.get_job(job.id).reason == "cpp-1 does not have nope")
    assert sdcpp.requests == []


def test_a_job_for_a_model_the_server_does_not_serve_is_refused(
    server: CoordinatorThread, sq: Client, sdcpp: FakeSdServer
) -> None:
    register_server(sq, "cpp-1", "sdcpp", sdcpp.url)
    wait_until(lambda: "cpp-1" in server.coordinator.library.inventoried)
    with raises(grpc.StatusCode.FAILED_PRECONDITION, "model 'sd_xl_base_1.0' is not on any"):
        sq.submit(txt2img("x", model="sd_xl_base_1.0"))
    assert sdcpp.requests == []


def test_cancel_drops_a_queued_job_and_leaves_a_generating_one_to_finish(
    sq: Client, sdcpp: FakeSdServer
) -> None:
    sdcpp.step_seconds = 0.2
    register_server(sq, "cpp-1", "sdcpp", sdcpp.url, max_concurrency=2)
    first = sq.submit(txt2img("first", steps=20, app="sdcpp"))
    second = sq.submit(txt2img("second", steps=20, app="sdcpp"))
    wait_until(lambda: len(sdcpp.jobs) == 2)
    generating, queued = sorted(sdcpp.jobs, key=lambda j: sdcpp.jobs[j]["status"])
    assert sdcpp.jobs[queued]["status"] == "queued"
    sq.cancel(second.id)
    wait_until(lambda: (queued, 200) in sdcpp.cancels)
    assert sdcpp.jobs[queued]["status"] == "cancelled"
    sq.cancel(first.id)
    wait_until(lambda: (generating, 409) in sdcpp.cancels)  # sd-server cannot interrupt
    assert sq.get_job(first.id).status == queue_pb2.JOB_STATUS_CANCELLED
    assert sq.get_job(second.id).status == queue_pb2.JOB_STATUS_CANCELLED


def loaded_model(sq: Client, alias: str) -> str:
    request = processes_pb2.GetServerRequest(alias=alias)
    return str(sq.processes.GetServer(request).server.loaded_model)


def test_a1111_sampler_and_schedule_names_reach_sd_cpp_as_its_own(
    sq: Client, sdcpp: FakeSdServer
) -> None:
    """sd-server runs its default for a name it does not know, without a word: names are
    translated with sd.cpp's own tables, and an sdcpp job naming one it lacks is
    refused at submit, listing the valid ones."""
    register_server(sq, "cpp-1", "sdcpp", sdcpp.url)
    cases = [
        (("DPM++ 2M SDE Karras", ""), ("dpm++2m_sde", "karras")),
        (("Euler a", "Align Your Steps"), ("euler_a", "ays")),
        (("DDIM", "Uniform"), ("ddim_trailing", "discrete")),
        (("dpm++2mv2", "sgm_uniform"), ("dpm++2mv2", "sgm_uniform")),  # sd.cpp's own names
    ]
    for (sampler, scheduler), expected in cases:
        spec = txt2img("names", sampler=sampler, scheduler=scheduler, steps=1, app="sdcpp")
        done = final_job(sq, sq.submit(spec).id)
        assert done.status == queue_pb2.JOB_STATUS_COMPLETED, done.reason
        sample = sdcpp.requests[-1][1]["sample_params"]
        assert (sample["sample_method"], sample["scheduler"]) == expected
        assert sdcpp.used[-1] == expected  # what it really ran with
    automatic = txt2img("names", sampler="Euler", scheduler="Automatic", steps=1, app="sdcpp")
    final_job(sq, sq.submit(automatic).id)
    assert "scheduler" not in sdcpp.requests[-1][1]["sample_params"]  # sd.cpp's default
    with raises(grpc.StatusCode.INVALID_ARGUMENT, "spec.params.sampler", "dpm++2m_sde", "UniPC"):
        sq.submit(txt2img("x", sampler="UniPC", app="sdcpp"))
    with raises(grpc.StatusCode.INVALID_ARGUMENT, "spec.params.scheduler", "ays"):
        sq.submit(txt2img("x", sampler="Euler", scheduler="Turbo", app="sdcpp"))


def test_a_job_waiting_in_sd_servers_own_queue_shows_its_position(
    sq: Client, sdcpp: FakeSdServer
) -> None:
    """sd-server queues what it cannot start yet: such a job is not 'generating' but
    'queued on cpp-1 (position 1)', until sd-server starts it."""
    sdcpp.step_seconds = 0.05
    register_server(sq, "cpp-1", "sdcpp", sdcpp.url, max_concurrency=2)
    first = sq.submit(txt2img("first", steps=20, app="sdcpp"))
    wait_until(lambda: sq.get_job(first.id).status == queue_pb2.JOB_STATUS_PROCESSING)
    second = sq.submit(txt2img("second", steps=2, app="sdcpp"))
    wait_until(lambda: "position 1" in sq.get_job(second.id).reason, timeout=5)
    shown = sq.get_job(second.id)
    assert shown.stage == queue_pb2.JOB_STAGE_WAITING_FOR_SERVER
    assert shown.reason == "queued on cpp-1 (position 1)"
    done = final_job(sq, second.id)
    assert done.status == queue_pb2.JOB_STATUS_COMPLETED, done.reason
    assert final_job(sq, first.id).status == queue_pb2.JOB_STATUS_COMPLETED


def test_a_server_that_could_not_interrupt_stays_busy_until_the_generation_ends(
    sq: Client, sdcpp: FakeSdServer
) -> None:
    """Cancelling a generating job on a registered sd-server (409: it cannot interrupt)
    ends the job at once, but the server still generates: the next job is not sent
    there until that generation has ended."""
    sdcpp.step_seconds = 0.05
    register_server(sq, "cpp-1", "sdcpp", sdcpp.url)
    first = sq.submit(txt2img("long", steps=30, app="sdcpp"))
    wait_until(lambda: any(j["status"] == "generating" for j in sdcpp.jobs.values()))
    sq.cancel(first.id)
    assert sq.get_job(first.id).status == queue_pb2.JOB_STATUS_CANCELLED
    after = final_job(sq, sq.submit(txt2img("next", steps=1, app="sdcpp")).id)
    assert after.status == queue_pb2.JOB_STATUS_COMPLETED, after.reason
    assert sdcpp.busy_at_submit == [False, False]  # it waited for the cancelled one


def test_the_sdapi_route_never_sends_a_generation_that_may_still_run_again(
    sq: Client,
) -> None:
    """The blocking /sdapi route has no job to look up: when the answer never comes
    (a time-out, a broken connection) the server may still be generating, so the job
    fails saying so instead of being sent again."""
    legacy = FakeSdServer(native=False)
    legacy.drop_connections = True
    try:
        register_server(sq, "cpp-old", "sdcpp", legacy.url)
        done = final_job(sq, sq.submit(txt2img("once", steps=2, app="sdcpp")).id)
        assert done.status == queue_pb2.JOB_STATUS_FAILED
        assert "may still be running" in done.reason and done.attempts == 1
        assert [p for p, _ in legacy.requests] == ["/sdapi/v1/txt2img"]  # sent once
    finally:
        legacy.close()


def test_the_servers_own_limits_are_checked_before_sending(sq: Client, sdcpp: FakeSdServer) -> None:
    """`capabilities.limits` (max batch 8, sizes 64 .. 4096 here): a job outside them
    fails naming the limit, and nothing is sent."""
    register_server(sq, "cpp-1", "sdcpp", sdcpp.url)
    big = final_job(sq, sq.submit(txt2img("many", batch_size=12, app="sdcpp")).id)
    assert big.status == queue_pb2.JOB_STATUS_FAILED
    assert "batch_count 8 at most; asked 12" in big.reason
    wide = final_job(sq, sq.submit(txt2img("wide", width=6144, height=512, app="sdcpp")).id)
    assert "width 4096 at most; asked 6144" in wide.reason
    assert sdcpp.requests == []
