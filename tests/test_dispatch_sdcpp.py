"""Jobs run end to end on an sd-server fake (native async API and the older sdapi)."""

from __future__ import annotations

import base64
import io
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


def small_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_sd_cpp_settings_reach_the_server_where_it_reads_them(
    sq: Client, sdcpp: FakeSdServer
) -> None:
    """`--extra` carries sd.cpp's own settings; each lands in the img_gen body where
    sd-server reads it (it ignores a key elsewhere without a word)."""
    register_server(sq, "cpp-1", "sdcpp", sdcpp.url)
    control = small_png()
    extra = {"clip_skip": 2, "eta": 0.5, "flow_shift": 3.0, "vae_tiling": True,
             "vae_tile_size": 64, "vae_tile_overlap": 0.25, "cache_mode": "ucache",
             "cache_option": "threshold=0.25", "hires": True, "hires_scale": 1.5,
             "hires_steps": 6, "hires_denoising_strength": 0.4, "hires_upscaler": "Lanczos",
             "control_image": base64.b64encode(control).decode(), "control_strength": 0.8,
             "ref_images": [base64.b64encode(control).decode()]}  # fmt: skip
    spec = txt2img("settings", steps=3, cfg_scale=5.0, app="sdcpp", extra=extra)
    done = final_job(sq, sq.submit(spec).id)
    assert done.status == queue_pb2.JOB_STATUS_COMPLETED, done.reason
    _, body = sdcpp.requests[-1]
    assert body["clip_skip"] == 2 and body["control_strength"] == 0.8
    assert body["sample_params"] == {"sample_steps": 3, "guidance": {"txt_cfg": 5.0},
                                     "eta": 0.5, "flow_shift": 3.0}  # fmt: skip
    assert body["vae_tiling_params"] == {"enabled": True, "tile_size_x": 64, "tile_size_y": 64,
                                         "target_overlap": 0.25}  # fmt: skip
    assert (body["cache_mode"], body["cache_option"]) == ("ucache", "threshold=0.25")
    assert body["hires"] == {"enabled": True, "scale": 1.5, "steps": 6,
                             "denoising_strength": 0.4, "upscaler": "Lanczos"}  # fmt: skip
    assert base64.b64decode(body["control_image"]) == control
    assert [base64.b64decode(i) for i in body["ref_images"]] == [control]


@pytest.mark.parametrize(
    ("extra", "field", "says"),
    [
        ({"clipskip": 2}, "clipskip", "not a stable-diffusion.cpp setting; it takes clip_skip"),
        ({"clip_skip": "2"}, "clip_skip", 'an integer from 1 to 12, got "2"'),
        ({"clip_skip": 40}, "clip_skip", "an integer from 1 to 12, got 40"),
        ({"vae_tiling": 1}, "vae_tiling", "true or false, got 1"),
        ({"hires_scale": 2}, "hires_scale", "only takes effect with hires true"),
        ({"cache_mode": "fast"}, "cache_mode", "one of easycache, ucache"),
        ({"control_image": "not-an-image"}, "control_image", "not valid base64"),
        ({"ref_images": [base64.b64encode(b"text").decode()]}, "ref_images[0]", "not a PNG"),
    ],
)
def test_sd_cpp_settings_sd_cpp_cannot_take_are_refused_at_submit(
    sq: Client, extra: dict[str, object], field: str, says: str
) -> None:
    with raises(grpc.StatusCode.INVALID_ARGUMENT, f"spec.params.extra_json.{field}: {says}"):
        sq.submit(txt2img("refused", app="sdcpp", extra=extra))


def test_settings_a_server_cannot_take_fail_before_anything_is_sent(sq: Client) -> None:
    """An older server (no /sdcpp/v1) and a build without a feature refuse settings
    they would drop; an `any` job with another app's settings fails naming the key."""
    legacy, lacking = FakeSdServer(native=False), FakeSdServer()
    lacking.features["hires"] = False
    try:
        register_server(sq, "cpp-old", "sdcpp", legacy.url)
        register_server(sq, "cpp-nohr", "sdcpp", lacking.url)
        old = final_job(sq, sq.submit(txt2img("old", server="cpp-old", app="sdcpp",
                                              extra={"clip_skip": 2})).id)  # fmt: skip
        assert old.status == queue_pb2.JOB_STATUS_FAILED
        assert "without the /sdcpp/v1 API: it cannot take clip_skip" in old.reason
        hires = final_job(sq, sq.submit(txt2img("hr", server="cpp-nohr", app="sdcpp",
                                                extra={"hires": True})).id)  # fmt: skip
        assert "build has no hires (extra setting hires)" in hires.reason
        forge_only = final_job(sq, sq.submit(txt2img("any", server="cpp-nohr",
                                                     extra={"enable_hr": True})).id)  # fmt: skip
        assert forge_only.status == queue_pb2.JOB_STATUS_FAILED
        assert "extra setting enable_hr: not a stable-diffusion.cpp setting" in forge_only.reason
        assert legacy.requests == [] and lacking.requests == []
    finally:
        legacy.close()
        lacking.close()


def test_a_job_like_the_last_one_is_seen_done_soon_after_it_ends(sq: Client) -> None:
    # sd-server tells no progress: the coordinator learns how long jobs of a shape take
    # and looks closely around that time, instead of on a grid that grows with the time
    # gone (around 0.6 s, its looks came ~0.14 s apart).
    fake = FakeSdServer(step_seconds=0.6)
    try:
        register_server(sq, "cpp-1", "sdcpp", fake.url)
        for _ in range(3):
            done = final_job(sq, sq.submit(txt2img("paced", steps=1, app="sdcpp")).id)
            assert done.status == queue_pb2.JOB_STATUS_COMPLETED, done.reason
        assert len(fake.seen_after) == 3
        assert max(fake.seen_after[1:]) < 0.06, fake.seen_after  # the first one teaches
    finally:
        fake.close()


def test_looks_at_a_job_close_in_around_when_jobs_like_it_ended() -> None:
    from stablequeue_coordinator.backends.sdcpp import POLL_FIRST_S, POLL_SECONDS, next_look

    assert next_look(0.01, None, None) == (0.01, 0.0125)  # nothing known: the growing grid
    assert next_look(0.2, 0.1, None) == (0.2, POLL_SECONDS)
    pause, _ = next_look(0.01, 0.002, 5.0)  # a 5 s shape, just started: looks now and then
    assert pause == POLL_SECONDS
    assert next_look(0.01, 3.95, 5.0) == pytest.approx((0.05, POLL_FIRST_S))  # up to 0.8 x
    assert next_look(0.25, 4.6, 5.0) == pytest.approx((0.05, POLL_FIRST_S))  # 2 %, <= 50 ms
    assert next_look(0.25, 0.85, 1.0) == pytest.approx((0.02, POLL_FIRST_S))
    assert next_look(0.01, 0.041, 0.05) == pytest.approx((POLL_FIRST_S, POLL_FIRST_S))
    assert next_look(0.002, 7.0, 5.0) == (0.002, 0.0025)  # past 1.3 x: the grid again
