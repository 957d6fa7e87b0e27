"""Jobs run end to end on a ComfyUI fake through the real coordinator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from PIL import Image

from stablequeue import Client, txt2img, workflow
from stablequeue.v1 import common_pb2, models_pb2, queue_pb2
from tests.conftest import CoordinatorThread
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.forge import png
from tests.helpers import final_job, kill_all, raises, register_server, wait_until
from tests.test_durability import CoordinatorProcess

# EmptyImage → ImageBlur (takes `blur_seconds`) → SaveImage: no model weights needed.
BLUR = {
    "1": {"class_type": "EmptyImage",
          "inputs": {"width": 64, "height": 48, "batch_size": 2, "color": 16711680}},
    "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 31, "sigma": 10}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "t"}},
}  # fmt: skip


@pytest.fixture
def comfy() -> Iterator[FakeComfyUI]:
    fake = FakeComfyUI()
    yield fake
    fake.close()


def test_workflow_job_completes_with_comfyui_images_kept_as_they_came(
    server: CoordinatorThread, sq: Client, comfy: FakeComfyUI
) -> None:
    register_server(sq, "comfy-1", "comfyui", comfy.url)
    job = sq.submit(workflow(BLUR))
    done = final_job(sq, job.id)
    assert done.status == queue_pb2.JOB_STATUS_COMPLETED, done.reason
    sent = comfy.prompts[-1]
    # Our own ids: the prompt can be found again after a restart.
    assert sent["prompt_id"] == sent["client_id"] == comfy.executions[0]
    assert sent["prompt"] == BLUR
    assert len(done.results) == 2
    root = server.coordinator.results.root
    served = {name: data for (_, _, name), data in comfy.files.items()}
    for result in done.results:
        data = (root / result.filename).read_bytes()
        assert data in served.values()  # byte for byte, nothing re-encoded
        with Image.open(root / result.filename) as image:
            assert json.loads(image.text["prompt"]) == BLUR
            assert image.size == (64, 48)


def test_parameter_job_runs_through_the_default_workflow(
    server: CoordinatorThread, sq: Client, comfy: FakeComfyUI
) -> None:
    register_server(sq, "comfy-1", "comfyui", comfy.url)
    spec = txt2img("a lighthouse", negative_prompt="blurry", model="v1-5-pruned-emaonly",
                   loras=[("ink", 0.6)], sampler="DPM++ 2M Karras", steps=4, seed=42,
                   width=512, height=768, batch_size=2, app="comfyui")  # fmt: skip
    done = final_job(sq, sq.submit(spec).id)
    assert done.status == queue_pb2.JOB_STATUS_COMPLETED, done.reason
    graph = comfy.prompts[-1]["prompt"]
    nodes = {node["class_type"]: node["inputs"] for node in graph.values()}
    # The server's own listing names, Windows separators and all, as they are.
    assert nodes["CheckpointLoaderSimple"]["ckpt_name"] == "SD15\\v1-5-pruned-emaonly.safetensors"
    assert nodes["LoraLoader"]["lora_name"] == "styles/ink.safetensors"
    assert nodes["LoraLoader"]["strength_model"] == pytest.approx(0.6)
    assert (nodes["KSampler"]["sampler_name"], nodes["KSampler"]["scheduler"]) == (
        "dpmpp_2m",
        "karras",
    )
    assert nodes["KSampler"]["seed"] == 42 and nodes["KSampler"]["steps"] == 4
    assert nodes["EmptyLatentImage"] == {"width": 512, "height": 768, "batch_size": 2}
    texts = sorted(
        n["inputs"]["text"] for n in graph.values() if n["class_type"] == "CLIPTextEncode"
    )
    assert texts == ["a lighthouse", "blurry"]
    root = server.coordinator.results.root
    with Image.open(root / done.results[0].filename) as image:
        assert "prompt" in image.text  # ComfyUI's chunk kept
        assert image.text["parameters"].startswith("a lighthouse")  # PNG Info / Civitai
        assert "Seed: 42" in image.text["parameters"]


def test_a_job_waiting_for_a_file_starts_as_soon_as_an_inventory_brings_it(
    tmp_path: Path, database_url: str, comfy: FakeComfyUI
) -> None:
    """Seen on a real ComfyUI 0.3.64: the extension hashed the checkpoint for a queued
    workflow and sent the hash right after the job, which then waited 'comfy-cpu does
    not have sd15-random.safetensors' for good: only a server's change of health woke
    the dispatcher, never a change of the model library."""
    from tests.conftest import make_settings

    running = CoordinatorThread(make_settings(tmp_path, database_url, health_interval=3600))
    sha = "a" * 64
    spec = workflow(BLUR)
    spec.models.add(folder="checkpoints", name="sd15.safetensors", sha256=sha)
    try:
        with running.client() as sq:
            register_server(sq, "comfy-1", "comfyui", comfy.url)
            job = sq.submit(spec)
            wait_until(
                lambda: "comfy-1 does not have sd15.safetensors" in sq.get_job(job.id).reason
            )
            found = models_pb2.InventoryFile(
                path="/comfy/models/checkpoints/sd15.safetensors",
                backend_name="sd15.safetensors",
                type=models_pb2.MODEL_TYPE_CHECKPOINT,
                size_bytes=4096,
                hashes=models_pb2.ModelHashes(sha256=sha),
            )
            sq.sync_inventory("comfy-1", common_pb2.APP_KIND_COMFYUI, [found], incremental=True)
            wait_until(lambda: sq.get_job(job.id).status == queue_pb2.JOB_STATUS_COMPLETED, 5)
    finally:
        running.close()


def test_img2img_uploads_the_init_image(sq: Client, comfy: FakeComfyUI) -> None:
    register_server(sq, "comfy-1", "comfyui", comfy.url)
    init = png((1, 2, 3), size=96)
    spec = txt2img("repaint", model="sd_xl_base_1.0", init_images=[init],
                   denoising_strength=0.4, steps=2, app="comfyui")  # fmt: skip
    done = final_job(sq, sq.submit(spec).id)
    assert done.status == queue_pb2.JOB_STATUS_COMPLETED, done.reason
    graph = comfy.prompts[-1]["prompt"]
    load = next(n for n in graph.values() if n["class_type"] == "LoadImage")
    assert comfy.files[("input", "", load["inputs"]["image"])] == init
    sampler = next(n for n in graph.values() if n["class_type"] == "KSampler")
    assert sampler["inputs"]["denoise"] == pytest.approx(0.4)
    assert (done.results[0].width, done.results[0].height) == (96, 96)


def test_progress_and_previews_stream_in_order(sq: Client, comfy: FakeComfyUI) -> None:
    comfy.step_seconds = 0.05
    register_server(sq, "comfy-1", "comfyui", comfy.url)
    job = sq.submit(txt2img("steps", model="sd_xl_base_1.0", steps=12, app="comfyui"))
    steps, previews, statuses = [], 0, []
    for event in sq.watch_job(job.id):
        statuses.append(event.job.status)
        if event.type == queue_pb2.JOB_EVENT_TYPE_PROGRESS:
            steps.append(event.job.progress.step)
            assert event.job.progress.total_steps == 12
            # Once previews come, every step carries one: the page's preview never blinks.
            assert bool(event.job.progress.preview_image) or not previews, steps
            previews += bool(event.job.progress.preview_image)
    assert statuses[-1] == queue_pb2.JOB_STATUS_COMPLETED
    assert len(steps) >= 6 and steps[-1] >= 11
    assert steps == sorted(set(steps)), steps  # one update per step
    assert previews >= 1


def test_validation_error_fails_at_once_with_comfyuis_message(
    sq: Client, comfy: FakeComfyUI
) -> None:
    register_server(sq, "comfy-1", "comfyui", comfy.url)
    broken = {**BLUR, "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "color": 0}}}
    done = final_job(sq, sq.submit(workflow(broken)).id)
    assert done.status == queue_pb2.JOB_STATUS_FAILED and done.attempts == 1
    assert "Prompt outputs failed validation" in done.reason
    assert "node 1 (EmptyImage)" in done.reason and "height" in done.reason


def test_node_failure_fails_the_job_with_the_exception(sq: Client, comfy: FakeComfyUI) -> None:
    register_server(sq, "comfy-1", "comfyui", comfy.url)
    done = final_job(sq, sq.submit(txt2img("x", model="corrupt", app="comfyui")).id)
    assert done.status == queue_pb2.JOB_STATUS_FAILED and done.attempts == 1
    assert "CheckpointLoaderSimple" in done.reason and "HeaderTooLarge" in done.reason


def test_a_checkpoint_no_server_has_is_refused_at_submit(
    server: CoordinatorThread, sq: Client, comfy: FakeComfyUI
) -> None:
    register_server(sq, "comfy-1", "comfyui", comfy.url)
    wait_until(lambda: "comfy-1" in server.coordinator.library.inventoried)
    with raises(grpc.StatusCode.FAILED_PRECONDITION, "model 'nope' is not on any server"):
        sq.submit(txt2img("x", model="nope", app="comfyui"))
    assert comfy.prompts == []


def test_cancel_running_prompt_interrupts_it_by_id(sq: Client, comfy: FakeComfyUI) -> None:
    comfy.blur_seconds = 30
    register_server(sq, "comfy-1", "comfyui", comfy.url)
    job = sq.submit(workflow(BLUR))
    prompt_id = comfy.wait_for_running()
    sq.cancel(job.id)
    wait_until(lambda: {"prompt_id": prompt_id} in comfy.interrupts, timeout=30)  # loaded CI
    assert prompt_id in comfy.deleted  # dropped from its queue too, in case it had not started
    assert sq.get_job(job.id).status == queue_pb2.JOB_STATUS_CANCELLED


def test_a_cancel_that_lands_with_a_websocket_message_is_not_lost() -> None:
    """CI saw a cancelled job whose prompt was never interrupted: the cancel came just
    as ComfyUI's first message of the prompt arrived, and on Python 3.11
    `asyncio.wait_for` then returns the message and drops the cancel — the attempt
    went on polling /history for good. Here the message and the cancel land in the
    same turn of the event loop, every time."""
    import asyncio

    from stablequeue_coordinator.backends.base import Attempt, ServerConfig
    from stablequeue_coordinator.backends.comfyui import ComfyUIBackend

    class Socket:  # the websocket's side: recv() waits for the next message
        def __init__(self) -> None:
            self.waiting: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self.asked = asyncio.Event()

        async def recv(self) -> str:
            self.asked.set()
            return await self.waiting

    async def race() -> None:
        backend = ComfyUIBackend(ServerConfig("comfy-1", "comfyui", "http://127.0.0.1:9"))
        socket = Socket()
        attempt = Attempt(queue_pb2.Job(id="j"), "prompt-1", lambda p: None)
        follow = asyncio.create_task(backend._follow(socket, attempt))  # type: ignore[arg-type]
        try:
            await socket.asked.wait()
            message = {"type": "executing", "data": {"node": "1", "prompt_id": "prompt-1"}}
            socket.waiting.set_result(json.dumps(message))
            follow.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(follow), 5)
        finally:
            follow.cancel()
            await backend.close()

    asyncio.run(race())


def test_coordinator_sigkill_recovers_the_comfyui_job_without_running_it_again(
    tmp_path: Path, database_url: str
) -> None:
    comfy = FakeComfyUI(blur_seconds=1.5)
    first = CoordinatorProcess(tmp_path / "data", database_url)
    second = None
    try:
        with Client(first.address) as sq:
            register_server(sq, "comfy-1", "comfyui", comfy.url)
            job = sq.submit(workflow(BLUR))
            comfy.wait_for_running()
        first.kill()  # mid-prompt: ComfyUI keeps running it

        second = CoordinatorProcess(tmp_path / "data", database_url)
        with Client(second.address) as sq:
            done = final_job(sq, job.id)
            assert done.status == queue_pb2.JOB_STATUS_COMPLETED, done.reason
            assert done.attempts == 1
            assert len(comfy.executions) == 1 and len(comfy.prompts) == 1
            assert len(done.results) == 2
            assert len(list((tmp_path / "data" / "outputs").rglob("*.png"))) == 2
    finally:
        kill_all(first.proc, second.proc if second else None)
        comfy.close()


def test_prompt_finished_while_the_coordinator_was_down_is_collected(
    tmp_path: Path, database_url: str
) -> None:
    comfy = FakeComfyUI(blur_seconds=0.5)
    first = CoordinatorProcess(tmp_path / "data", database_url)
    second = None
    try:
        with Client(first.address) as sq:
            register_server(sq, "comfy-1", "comfyui", comfy.url)
            job = sq.submit(workflow(BLUR))
            prompt_id = comfy.wait_for_running()
        first.kill()
        wait_until(lambda: prompt_id in comfy.history)
        second = CoordinatorProcess(tmp_path / "data", database_url)
        with Client(second.address) as sq:
            done = final_job(sq, job.id)
            assert done.status == queue_pb2.JOB_STATUS_COMPLETED, done.reason
            assert (done.attempts, len(done.results), len(comfy.executions)) == (1, 2, 1)
    finally:
        kill_all(first.proc, second.proc if second else None)
        comfy.close()


def test_foreign_origin_is_refused_like_comfyui(comfy: FakeComfyUI) -> None:
    assert httpx.get(comfy.url + "/system_stats").status_code == 200
    refused = httpx.get(comfy.url + "/system_stats", headers={"Origin": "http://evil.example"})
    assert refused.status_code == 403


# A ComfyUI as its default workflow has it: one KSampler, prompts from text encoders.
KSAMPLER = {
    "4": {"class_type": "CheckpointLoaderSimple",
          "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
    "10": {"class_type": "LoraLoader",
           "inputs": {"model": ["4", 0], "clip": ["4", 1], "lora_name": "styles/ink.safetensors",
                      "strength_model": 0.7, "strength_clip": 0.7}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox, snow", "clip": ["10", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["10", 1]}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 96, "batch_size": 1}},
    "3": {"class_type": "KSampler",
          "inputs": {"seed": 1234, "steps": 3, "cfg": 5.5, "sampler_name": "dpmpp_2m",
                     "scheduler": "karras", "denoise": 1.0, "model": ["10", 0],
                     "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "fox"}},
}  # fmt: skip


def _parameters(server: CoordinatorThread, result: queue_pb2.JobResult) -> str:
    with Image.open(server.coordinator.results.root / result.filename) as image:
        assert "prompt" in image.text  # ComfyUI's own chunk is kept beside it
        return str(image.text.get("parameters", ""))


def test_typed_job_images_say_the_sampler_scheduler_and_cfg_that_ran(
    server: CoordinatorThread, sq: Client, comfy: FakeComfyUI
) -> None:
    register_server(sq, "comfy-1", "comfyui", comfy.url)
    # Nothing but a prompt: the defaults ComfyUI ran with are what the image must say.
    done = final_job(sq, sq.submit(txt2img("plain", model="sd_xl_base_1.0", steps=2,
                                           app="comfyui")).id)  # fmt: skip
    assert done.status == queue_pb2.JOB_STATUS_COMPLETED, done.reason
    text = _parameters(server, done.results[0])
    seed = done.results[0].seed
    for field in ("Steps: 2", "Sampler: Euler", "Schedule type: Normal", "CFG scale: 7",
                  f"Seed: {seed}", "Size: 512x512", "Model: sd_xl_base_1.0"):  # fmt: skip
        assert field in text, text


def test_workflow_job_images_get_parameters_derived_from_an_unambiguous_graph(
    server: CoordinatorThread, sq: Client, comfy: FakeComfyUI
) -> None:
    register_server(sq, "comfy-1", "comfyui", comfy.url)
    done = final_job(sq, sq.submit(workflow(KSAMPLER)).id)
    assert done.status == queue_pb2.JOB_STATUS_COMPLETED, done.reason
    text = _parameters(server, done.results[0])
    assert text.splitlines() == [
        "a red fox, snow <lora:ink:0.7>",
        "Negative prompt: blurry",
        "Steps: 3, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 5.5, Seed: 1234, "
        "Size: 64x96, Model: sd_xl_base_1.0, Version: StableQueue",
    ]
    assert done.results[0].seed == 1234
    # Two samplers (a hires pass, say): which one "the" parameters are is not clear.
    twice = json.loads(json.dumps(KSAMPLER))
    twice["13"] = {**twice["3"], "inputs": {**twice["3"]["inputs"], "latent_image": ["3", 0]}}
    twice["8"]["inputs"]["samples"] = ["13", 0]
    done = final_job(sq, sq.submit(workflow(twice)).id)
    assert done.status == queue_pb2.JOB_STATUS_COMPLETED, done.reason
    assert _parameters(server, done.results[0]) == ""
    # A prompt fed from another kind of node is not known before it ran.
    linked = json.loads(json.dumps(KSAMPLER))
    linked["6"]["inputs"]["text"] = ["11", 0]
    linked["11"] = {"class_type": "StringConcatenate",
                    "inputs": {"string_a": "a", "string_b": "b", "delimiter": ""}}  # fmt: skip
    done = final_job(sq, sq.submit(workflow(linked)).id)
    assert _parameters(server, done.results[0]) == ""


def test_comfyui_known_by_url_only_has_its_files_in_the_library(
    server: CoordinatorThread, sq: Client, comfy: FakeComfyUI
) -> None:
    from stablequeue.v1 import models_pb2, processes_pb2

    register_server(sq, "comfy-1", "comfyui", comfy.url)

    def listed() -> dict[str, models_pb2.Model]:
        reply = sq.call("ListModels", models_pb2.ListModelsRequest(), "models")
        return {m.name: m for m in reply.models}

    wait_until(lambda: "v1-5-pruned-emaonly" in listed())
    found = listed()
    assert {"sd_xl_base_1.0", "v1-5-pruned-emaonly", "detail_tweaker", "ink"} <= set(found)
    sd15 = found["v1-5-pruned-emaonly"]
    assert sd15.id == "" and sd15.type == models_pb2.MODEL_TYPE_CHECKPOINT  # no hash yet
    [where] = sd15.locations
    assert (where.host, where.backend_name, where.verified) == (
        "comfy-1", "SD15\\v1-5-pruned-emaonly.safetensors", False,
    )  # fmt: skip
    # Located by file name, with or without folder and extension.
    located = sq.call("LocateModel", models_pb2.LocateModelRequest(
        reference="v1-5-pruned-emaonly.safetensors"), "models")  # fmt: skip
    assert [loc.host for loc in located.locations] == ["comfy-1"]
    only_loras = sq.call("ListModels", models_pb2.ListModelsRequest(
        type=models_pb2.MODEL_TYPE_LORA), "models")  # fmt: skip
    assert sorted(m.name for m in only_loras.models) == ["detail_tweaker", "ink"]
    # Paging walks through them all, one at a time.
    names, token = [], ""
    for _ in range(len(found) + 1):  # a page per model, and no endless paging
        page = sq.call("ListModels", models_pb2.ListModelsRequest(
            page=common_page(1, token)), "models")  # fmt: skip
        names += [m.name for m in page.models]
        token = page.next_page_token
        if not token:
            break
    else:
        pytest.fail(f"paging did not end after {len(found) + 1} pages")
    assert sorted(names) == sorted(found)
    # Nothing ran yet: ComfyUI has not told which model it holds.
    servers = sq.call("ListServers", processes_pb2.ListServersRequest(), "processes").servers
    assert servers[0].loaded_model == ""
    # A job naming the file by name runs there; then the loaded model is that one.
    done = final_job(sq, sq.submit(txt2img("x", model="v1-5-pruned-emaonly", steps=1,
                                           app="comfyui")).id)  # fmt: skip
    assert done.status == queue_pb2.JOB_STATUS_COMPLETED, done.reason

    def loaded() -> str:
        reply = sq.call("ListServers", processes_pb2.ListServersRequest(), "processes")
        return str(reply.servers[0].loaded_model)

    wait_until(lambda: loaded() == "SD15\\v1-5-pruned-emaonly.safetensors", timeout=30)


def common_page(size: int, token: str) -> Any:
    from stablequeue.v1 import common_pb2

    return common_pb2.PageRequest(page_size=size, page_token=token)


def test_the_job_listing_carries_each_completed_jobs_results(
    sq: Client, comfy: FakeComfyUI
) -> None:
    """Pages (the ComfyUI sidebar, dashboards) show thumbnails of jobs that finished
    before they started watching: the listing must say which images a job made."""
    register_server(sq, "comfy-1", "comfyui", comfy.url)
    done = final_job(sq, sq.submit(workflow(BLUR)).id)
    assert len(done.results) == 2
    listed = {j.id: j for j in sq.list_jobs(order=queue_pb2.JOB_ORDER_NEWEST).jobs}
    assert [r.id for r in listed[done.id].results] == [r.id for r in done.results]
    assert listed[done.id].results[0].filename == done.results[0].filename
