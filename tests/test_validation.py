"""Bad input gets INVALID_ARGUMENT naming the field and the rule, and nothing is stored."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest

from stablequeue import Client, StableQueueError, txt2img
from stablequeue.v1 import queue_pb2
from stablequeue_coordinator.errors import InvalidArgument
from stablequeue_coordinator.queue.validation import normalize_spec
from tests.conftest import CoordinatorThread
from tests.helpers import PNG_1PX, raises


def params(**overrides: Any) -> queue_pb2.JobSpec:
    return txt2img(overrides.pop("prompt", "a cat"), **overrides)


CASES: list[tuple[str, queue_pb2.JobSpec, str, str]] = [
    ("empty", queue_pb2.JobSpec(), "spec", "either params"),
    ("no prompt", params(prompt="  "), "spec.params.prompt", "required"),
    ("long prompt", params(prompt="x" * 20_001), "spec.params.prompt", "at most 20000"),
    (
        "long negative",
        params(negative_prompt="x" * 20_001),
        "spec.params.negative_prompt",
        "at most",
    ),
    ("steps", params(steps=501), "spec.params.steps", "1 .. 500"),
    ("negative steps", params(steps=-1), "spec.params.steps", "1 .. 500"),
    ("width small", params(width=32), "spec.params.width", "64 .. 8192"),
    ("width odd", params(width=513), "spec.params.width", "multiple of 8"),
    ("height big", params(height=9000), "spec.params.height", "64 .. 8192"),
    ("cfg", params(cfg_scale=101), "spec.params.cfg_scale", "0 .. 100"),
    ("seed", params(seed=2**32), "spec.params.seed", "-1 .. 4294967295"),
    ("seed low", params(seed=-2), "spec.params.seed", "-1 .."),
    ("batch", params(batch_size=65), "spec.params.batch_size", "1 .. 64"),
    ("iterations", params(iterations=101), "spec.params.iterations", "1 .. 100"),
    ("denoise", params(denoising_strength=1.5), "spec.params.denoising_strength", "0 .. 1"),
    ("lora name", params(loras=[("", 1.0)]), "spec.params.loras[0].name", "required"),
    (
        "lora weight",
        params(loras=[("a", 1), ("b", 11)]),
        "spec.params.loras[1].weight",
        "-10 .. 10",
    ),
    ("extra not json", params(), "spec.params.extra_json", "malformed JSON"),
    ("extra array", params(), "spec.params.extra_json", "must be a JSON object"),
    ("img2img no image", params(), "spec.params.init_images", "at least one"),
    ("txt2img with image", params(), "spec.params.init_images", "only img2img"),
    ("not an image", params(init_images=[b"hello"]), "spec.params.init_images[0]", "PNG, JPEG"),
    ("unknown mode", params(), "spec.params.mode", "unknown value 9"),
    ("unknown app", params(), "spec.app", "unknown value 77"),
    ("bad server", params(server="gpu 1; rm"), "spec.target_server", "letters, digits"),
    ("priority", params(priority=1001), "spec.priority", "-1000 .. 1000"),
    ("label", params(label="l" * 201), "spec.label", "at most 200"),
    (
        "workflow malformed",
        queue_pb2.JobSpec(workflow_json="{nope"),
        "spec.workflow_json",
        "malformed JSON",
    ),
    ("workflow list", queue_pb2.JobSpec(workflow_json="[1]"), "spec.workflow_json", "JSON object"),
    ("workflow empty", queue_pb2.JobSpec(workflow_json="{}"), "spec.workflow_json", "no nodes"),
    (
        "workflow ui format",
        queue_pb2.JobSpec(workflow_json=json.dumps({"nodes": [], "links": []})),
        "spec.workflow_json",
        "Save (API Format)",
    ),
    (
        "workflow node",
        queue_pb2.JobSpec(workflow_json=json.dumps({"1": {"inputs": {}}})),
        "spec.workflow_json['1'].class_type",
        "required",
    ),
    (
        "workflow on forge",
        queue_pb2.JobSpec(app=1, workflow_json=json.dumps({"1": {"class_type": "A"}})),
        "spec.app",
        "only run on COMFYUI",
    ),
]
CASES[17][1].params.extra_json = "{bad"
CASES[18][1].params.extra_json = "[1, 2]"
CASES[19][1].params.mode = queue_pb2.GENERATION_MODE_IMG2IMG
CASES[20][1].params.init_images.append(PNG_1PX)
CASES[22][1].params.mode = 9
CASES[23][1].app = 77


@pytest.mark.parametrize(("case", "spec", "field", "rule"), CASES, ids=[c[0] for c in CASES])
def test_invalid_job_is_rejected_naming_the_field(
    sqlite_server: CoordinatorThread, case: str, spec: queue_pb2.JobSpec, field: str, rule: str
) -> None:
    with sqlite_server.client() as sq:
        with raises(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: ", rule):
            sq.submit(spec)
        with raises(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: ", rule):
            sq.submit_many(spec, 2)
        assert sq.stats().pending == 0


def test_count_seed_mode_and_key_limits(sqlite_server: CoordinatorThread) -> None:
    with sqlite_server.client() as sq:
        for count in (0, 1001):
            with raises(grpc.StatusCode.INVALID_ARGUMENT, "count", "1 .. 1000"):
                sq.submit_many(txt2img("x"), count)
        with raises(grpc.StatusCode.INVALID_ARGUMENT, "seed_mode", "unknown value 8"):
            sq.call(
                "SubmitJobs", queue_pb2.SubmitJobsRequest(spec=txt2img("x"), count=2, seed_mode=8)
            )
        with raises(grpc.StatusCode.INVALID_ARGUMENT, "idempotency_key", "at most 200"):
            sq.submit(txt2img("x"), idempotency_key="k" * 201)
        assert sq.stats().pending == 0


def test_too_many_init_image_bytes_is_invalid_argument(sqlite_server: CoordinatorThread) -> None:
    big = PNG_1PX + b"\0" * (25 << 20)
    with sqlite_server.client() as sq:
        with raises(grpc.StatusCode.INVALID_ARGUMENT, "spec.params.init_images", "exceeds 48 MiB"):
            sq.submit(txt2img("x", init_images=[big, big]))
        assert sq.stats().pending == 0


def test_message_over_the_transport_limit_is_refused(sqlite_server: CoordinatorThread) -> None:
    huge = PNG_1PX + b"\0" * (65 << 20)
    with Client(sqlite_server.address, options=[("grpc.max_send_message_length", 128 << 20)]) as sq:
        with pytest.raises(StableQueueError) as info:
            sq.submit(txt2img("x", init_images=[huge]))
        assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert sq.stats().pending == 0


@pytest.mark.parametrize(
    ("extra_json", "field", "rule"),
    [
        ('{"batch_size": "9"}', "extra_json.batch_size", "set it as spec.params.batch_size"),
        ('{"n_iter": 50}', "extra_json.n_iter", "set it as spec.params.iterations"),
        ('{"override_settings": "str"}', "extra_json.override_settings", "must be a JSON object"),
        ('{"denoising_strength": 7}', "extra_json.denoising_strength", "a number from 0 to 1"),
        ('{"cfg": NaN}', "extra_json", "NaN is not a JSON number"),
        ('{"cfg": 1e400}', "extra_json", "1e400 is out of range"),
        ('{"a": ' * 100_000 + "1" + "}" * 100_000, "extra_json", "nested deeper than 64"),
    ],
    ids=["typed batch", "typed n_iter", "override str", "strength", "nan", "huge", "deep"],
)
def test_extra_settings_cannot_bypass_the_typed_limits(
    extra_json: str, field: str, rule: str
) -> None:
    """`{"batch_size": "9"}` gave 9 images past the checked limits; the others ended as
    `internal error`."""
    spec = txt2img("x")
    spec.params.extra_json = extra_json
    with pytest.raises(InvalidArgument) as info:
        normalize_spec(spec)
    assert info.value.field == f"spec.params.{field}" and rule in info.value.rule


def test_a_workflow_nested_too_deep_is_refused() -> None:
    deep = '{"1": {"class_type": "A", "inputs": ' + '{"a": ' * 100_000 + "1" + "}" * 100_001 + "}"
    with pytest.raises(InvalidArgument, match="nested deeper than 64"):
        normalize_spec(queue_pb2.JobSpec(workflow_json=deep))


def test_one_request_may_add_at_most_its_byte_budget() -> None:
    """One 40 MB init image x 10 copies took 1.6 GB of memory and a 1 GB database.
    Init images count once per request (a batch stores them once); the rest of the
    spec once per copy."""
    from stablequeue_coordinator.queue.validation import MAX_REQUEST_BYTES, validate_count

    image = PNG_1PX + bytes(40 << 20)
    validate_count(1000, txt2img("x", init_images=[image]))
    big = txt2img("x", extra={"note": "y" * (8 << 20)})
    validate_count(30, big)  # 240 MiB
    with pytest.raises(InvalidArgument, match=f"one request may add {MAX_REQUEST_BYTES >> 20} MiB"):
        validate_count(33, big)
