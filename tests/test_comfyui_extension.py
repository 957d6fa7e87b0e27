"""The ComfyUI extension (extensions/comfyui) loaded the way ComfyUI loads a custom node.

A stand-in `server.PromptServer` (a real aiohttp app) and `folder_paths` over a temp
model tree (tests/fakes/comfyui_app); the extension's routes are driven with an
aiohttp client against a real coordinator, and workflows run on a ComfyUI fake.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import io
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from stablequeue import StableQueueError
from stablequeue.v1 import models_pb2, processes_pb2, queue_pb2
from tests.conftest import CoordinatorThread
from tests.fakes.comfyui import FakeComfyUI
from tests.helpers import final_job, wait_until
from tests.test_forge_extension import tensor_file

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "tests" / "fakes" / "comfyui_app"
EXTENSION = ROOT / "extensions" / "comfyui"
CKPT = "sdxl/sd_xl_base_1.0.safetensors"


def graph(ckpt: str = CKPT, lora: str = "detail.safetensors") -> dict[str, Any]:
    """An API-format prompt naming a checkpoint and a LoRA (and strings that are not files)."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "10": {"class_type": "LoraLoader",
               "inputs": {"model": ["4", 0], "clip": ["4", 1], "lora_name": lora,
                          "strength_model": 0.8, "strength_clip": 0.8}},
        "6": {"class_type": "CLIPTextEncode",
              "inputs": {"text": "a lighthouse", "clip": ["10", 1]}},
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 255}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "sq"}},
    }  # fmt: skip


@pytest.fixture
def comfy_home(tmp_path: Path, sqlite_server: CoordinatorThread) -> Iterator[SimpleNamespace]:
    """ComfyUI's model tree, settings pointing at the coordinator, the stand-in modules."""
    models = tmp_path / "models"
    files = {
        CKPT: tensor_file(models / "checkpoints" / CKPT, 1.0),
        "detail.safetensors": tensor_file(models / "loras" / "detail.safetensors", 2.0),
        "ae.safetensors": tensor_file(models / "vae" / "ae.safetensors", 3.0),
    }
    settings = tmp_path / "stablequeue.json"
    settings.write_text(json.dumps({"address": sqlite_server.address, "sync": False}))
    saved_path, saved_modules = list(sys.path), set(sys.modules)
    saved_env = os.environ.get("SQ_COMFY_SETTINGS")
    os.environ["SQ_COMFY_SETTINGS"] = str(settings)
    sys.path[:0] = [str(APP)]
    try:
        import folder_paths  # type: ignore[import-not-found]
        import server  # type: ignore[import-not-found]

        folder_paths.configure(str(models))
        server.PromptServer()
        yield SimpleNamespace(models=models, files=files, settings=settings, server=server)
    finally:
        package = sys.modules.get("comfyui_stablequeue")
        if package is not None and hasattr(package, "EXTENSION"):
            package.EXTENSION.stop()
        sys.path[:] = saved_path
        for name in set(sys.modules) - saved_modules:
            del sys.modules[name]
        if saved_env is None:
            os.environ.pop("SQ_COMFY_SETTINGS", None)
        else:
            os.environ["SQ_COMFY_SETTINGS"] = saved_env


def load_like_comfyui() -> Any:
    """nodes.load_custom_node: the package's __init__.py under its folder's name."""
    spec = importlib.util.spec_from_file_location(
        "comfyui_stablequeue", EXTENSION / "__init__.py",
        submodule_search_locations=[str(EXTENSION)],
    )  # fmt: skip
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["comfyui_stablequeue"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def page(comfy_home: SimpleNamespace) -> AsyncIterator[TestClient]:
    """The extension loaded into the stand-in ComfyUI, its server started."""
    module = load_like_comfyui()
    assert module.WEB_DIRECTORY == "./web" and module.NODE_CLASS_MAPPINGS == {}
    prompt_server = comfy_home.server.PromptServer.instance
    prompt_server.add_routes()
    client = TestClient(TestServer(prompt_server.app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def sidebar_job(page: TestClient, job_id: str, status: str) -> dict[str, Any]:
    """The job as GET /stablequeue/jobs shows it, once it has `status` (the feed catches up)."""
    for _ in range(200):
        listed = await (await page.get("/stablequeue/jobs")).json()
        shown = [j for j in listed["jobs"] if j["id"] == job_id and j["status"] == status]
        if shown:
            return shown[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"the sidebar never showed {job_id} {status}: {listed}")


def set_settings(home: SimpleNamespace, **values: Any) -> None:
    data = json.loads(home.settings.read_text())
    data.update(values)
    home.settings.write_text(json.dumps(data))


async def test_model_files_of_a_prompt_come_with_their_hashes(
    page: TestClient, comfy_home: SimpleNamespace
) -> None:
    reply = await page.post("/stablequeue/models", json={"prompt": graph()})
    assert reply.status == 200
    models = (await reply.json())["models"]
    assert models == [
        {"folder": "checkpoints", "name": CKPT, "sha256": comfy_home.files[CKPT]},
        {"folder": "loras", "name": "detail.safetensors",
         "sha256": comfy_home.files["detail.safetensors"]},
    ]  # fmt: skip
    path = comfy_home.models / "checkpoints" / CKPT
    assert models[0]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    # Cached by size and mtime: a changed file is hashed again.
    cache = json.loads((comfy_home.settings.parent / "stablequeue-hashes.json").read_text())
    assert cache[str(path)]["sha256"] == comfy_home.files[CKPT]
    new_sha = tensor_file(path, 9.0)
    again = await (await page.post("/stablequeue/models", json={"prompt": graph()})).json()
    assert again["models"][0]["sha256"] == new_sha != comfy_home.files[CKPT]


async def test_a_workflow_queued_through_the_route_runs_and_its_images_come_back(
    page: TestClient, comfy_home: SimpleNamespace, sqlite_server: CoordinatorThread
) -> None:
    backend = FakeComfyUI()  # the ComfyUI the coordinator runs it on, same folder layout
    backend.checkpoints, backend.loras = [CKPT], ["detail.safetensors"]
    try:
        set_settings(comfy_home, alias="comfy-here", url=backend.url, sync=True)
        ui = {"last_node_id": 10, "nodes": [{"id": 4, "type": "CheckpointLoaderSimple"}]}
        reply = await page.post(
            "/stablequeue/queue", json={"prompt": graph(), "workflow": ui, "priority": 3}
        )
        assert reply.status == 200, await reply.text()
        body = await reply.json()
        (job_id,) = body["jobs"]
        assert {m["name"] for m in body["models"]} == {CKPT, "detail.safetensors"}
        # This ComfyUI registers itself and sends its files with their (now known) hashes.
        module = sys.modules["comfyui_stablequeue"]
        note = module.EXTENSION.syncer.once()  # (the start-up sync may have registered it)
        assert "sent 3 model files, 2 known" in note and "comfy-here" in note
        with sqlite_server.client() as sq:
            done = final_job(sq, job_id)
            assert (done.status, done.server) == (queue_pb2.JOB_STATUS_COMPLETED, "comfy-here")
            assert done.spec.priority == 3 and len(done.spec.models) == 2
            sent = backend.prompts[-1]["prompt"]
            assert sent["4"]["inputs"]["ckpt_name"] == CKPT
            shown = await sidebar_job(page, job_id, "completed")
            assert shown["server"] == "comfy-here" and shown["results"]
            result_id = done.results[0].id
        image = await page.get(f"/stablequeue/results/{result_id}")
        assert image.status == 200
        # ComfyUI's own chunks: dropped onto the canvas, the image restores the workflow.
        chunks = Image.open(io.BytesIO(await image.read())).text
        assert json.loads(chunks["workflow"]) == ui
        assert json.loads(chunks["prompt"])["4"]["inputs"]["ckpt_name"] == CKPT
        events = comfy_home.server.PromptServer.instance.sent
        assert any(event == "stablequeue.queue" for event, _, _ in events)
    finally:
        backend.close()


async def test_a_model_no_server_has_is_named_in_the_jobs_reason(
    page: TestClient, comfy_home: SimpleNamespace, sqlite_server: CoordinatorThread
) -> None:
    backend = FakeComfyUI()
    backend.checkpoints, backend.loras = [CKPT], []  # the LoRA is only here
    try:
        with sqlite_server.client() as sq:
            from tests.helpers import register_server

            register_server(sq, "gpu-comfy", "comfyui", backend.url)
            wait_until(lambda: "gpu-comfy" in sqlite_server.coordinator.library.inventoried)
            reply = await page.post("/stablequeue/queue", json={"prompt": graph()})
            (job_id,) = (await reply.json())["jobs"]
            wait_until(lambda: "does not have" in sq.get_job(job_id).reason)
            reason = sq.get_job(job_id).reason
        assert "detail.safetensors" in reason and "gpu-comfy" in reason
        shown = await sidebar_job(page, job_id, "pending")
        assert "detail.safetensors" in shown["reason"]
        cancel = await page.post(f"/stablequeue/jobs/{job_id}/cancel")
        assert cancel.status == 200 and "Cancel" in (await cancel.json())["message"]
        await sidebar_job(page, job_id, "cancelled")
    finally:
        backend.close()


async def test_queue_many_varies_the_seeds(
    page: TestClient, sqlite_server: CoordinatorThread
) -> None:
    prompt = graph()
    prompt["5"] = {"class_type": "KSampler", "inputs": {"seed": 40, "steps": 2}}
    reply = await page.post(
        "/stablequeue/queue", json={"prompt": prompt, "count": 3, "seed_mode": "increment"}
    )
    ids = (await reply.json())["jobs"]
    with sqlite_server.client() as sq:
        seeds = [json.loads(sq.get_job(i).spec.workflow_json)["5"]["inputs"]["seed"] for i in ids]
    assert seeds == [40, 41, 42]


async def test_inventory_sync_sends_every_model_folder(
    page: TestClient, comfy_home: SimpleNamespace, sqlite_server: CoordinatorThread
) -> None:
    await page.post("/stablequeue/models", json={"prompt": graph()})  # hashes two files
    set_settings(comfy_home, alias="comfy-laptop", sync=True)
    module = sys.modules["comfyui_stablequeue"]
    from sq_comfy import inventory

    files = {f.backend_name: f for f in inventory.collect(module.EXTENSION.cache)}
    assert set(files) == {CKPT, "detail.safetensors", "ae.safetensors"}
    assert files[CKPT].type == models_pb2.MODEL_TYPE_CHECKPOINT
    assert files[CKPT].hashes.sha256 == comfy_home.files[CKPT]
    assert files["ae.safetensors"].hashes.sha256 == ""  # never hashed just for a sync
    assert files["ae.safetensors"].type == models_pb2.MODEL_TYPE_VAE
    note = module.EXTENSION.syncer.once()
    assert "sent 3 model files" in note and "set this server's alias and URL" in note
    with sqlite_server.client() as sq:
        located = sq.call(
            "LocateModel", models_pb2.LocateModelRequest(reference=comfy_home.files[CKPT]),
            "models",
        )  # fmt: skip
    assert [(loc.host, loc.backend_name) for loc in located.locations] == [("comfy-laptop", CKPT)]


async def test_bad_requests_and_unknown_routes_get_clear_json_errors(page: TestClient) -> None:
    cases = [
        ("post", "/stablequeue/queue", b"{not json", 400, "JSON object"),
        ("post", "/stablequeue/queue", json.dumps([1]).encode(), 400, "JSON object"),
        ("post", "/stablequeue/queue", json.dumps({"prompt": {}}).encode(), 400, "prompt:"),
        ("post", "/stablequeue/queue",
         json.dumps({"prompt": graph(), "count": 0}).encode(), 400, "count:"),
        ("post", "/stablequeue/queue",
         json.dumps({"prompt": graph(), "seed_mode": "wild"}).encode(), 400, "seed_mode:"),
        ("post", "/stablequeue/queue",
         json.dumps({"prompt": graph(), "target": "this"}).encode(), 400, "alias"),
        ("get", "/stablequeue/nope", None, 404, "no StableQueue route GET /stablequeue/nope"),
        ("get", "/api/stablequeue/nope", None, 404, "no StableQueue route"),
        ("post", "/stablequeue/jobs/abc/explode", b"{}", 404, "unknown action 'explode'"),
        ("post", "/stablequeue/settings",
         json.dumps({"address": "no port"}).encode(), 400, "address:"),
        ("post", "/stablequeue/settings",
         json.dumps({"address": "a:50051,no port"}).encode(), 400, "comma-separated"),
        ("post", "/stablequeue/settings", json.dumps({"colour": 1}).encode(), 400, "colour"),
    ]  # fmt: skip
    for method, path, data, status, text in cases:
        reply = await getattr(page, method)(path, data=data)
        assert reply.status == status, (path, data, await reply.text())
        assert text in (await reply.json())["error"], (path, data)


async def test_settings_take_an_active_and_standby_coordinators(
    page: TestClient, comfy_home: SimpleNamespace
) -> None:
    reply = await page.post("/stablequeue/settings", json={"address": "gpu-a:50051, gpu-b:50051"})
    assert reply.status == 200, await reply.text()
    assert (await reply.json())["address"] == "gpu-a:50051, gpu-b:50051"


async def test_settings_keep_the_key_out_of_responses(
    page: TestClient, comfy_home: SimpleNamespace, sqlite_server: CoordinatorThread
) -> None:
    reply = await page.post(
        "/stablequeue/settings", json={"api_key": "sq_secret_123", "alias": "comfy-2"}
    )
    assert reply.status == 200
    shown = await reply.json()
    assert "sq_secret_123" not in json.dumps(shown) and shown["has_api_key"] is True
    assert shown["alias"] == "comfy-2" and shown["address"] == sqlite_server.address
    assert "sq_secret_123" not in await (await page.get("/stablequeue/settings")).text()
    assert comfy_home.settings.stat().st_mode & 0o777 == 0o600


async def test_coordinator_down_is_a_502_with_the_address(
    page: TestClient, comfy_home: SimpleNamespace
) -> None:
    set_settings(comfy_home, address="127.0.0.1:9")
    reply = await page.post("/stablequeue/queue", json={"prompt": graph()})
    assert reply.status == 502
    assert "coordinator at 127.0.0.1:9 is not reachable" in (await reply.json())["error"]


@pytest.mark.parametrize("probe_every", [1.0, 3600.0])
async def test_the_readme_setup_runs_jobs_whatever_the_probe_interval(
    page: TestClient, comfy_home: SimpleNamespace, tmp_path: Path, probe_every: float
) -> None:
    """Alias + URL set, the extension registers its ComfyUI and sends the hashed
    inventory; the coordinator's probe (every second, or once an hour) reports names
    only. The probe must not erase what the extension sent, and the hashes sent after
    the job was queued must start it without waiting for a probe (seen in a real
    ComfyUI: the job waited 'comfy-cpu does not have ...' until something else woke
    the dispatcher): the job runs here, and on another server with the same files.
    When the coordinator forgets this ComfyUI, the extension sends it all again."""
    from tests.conftest import make_settings
    from tests.helpers import register_server

    database = f"sqlite:///{tmp_path / 'quick.db'}"
    settings = make_settings(tmp_path / "quick", database, health_interval=probe_every)
    coordinator = CoordinatorThread(settings)
    here, other = FakeComfyUI(), FakeComfyUI()
    for backend in (here, other):  # the same files under the same names
        backend.checkpoints, backend.loras = [CKPT], ["detail.safetensors"]
    module = sys.modules["comfyui_stablequeue"]
    try:
        reply = await page.post("/stablequeue/settings", json={
            "address": coordinator.address, "alias": "comfy-here", "url": here.url,
            "sync": True})  # fmt: skip
        assert reply.status == 200, await reply.text()
        sha = comfy_home.files[CKPT]
        with coordinator.client() as sq:

            def hosts() -> set[str]:
                try:
                    located = sq.call("LocateModel", models_pb2.LocateModelRequest(
                        reference=sha), "models")  # fmt: skip
                except StableQueueError:
                    return set()  # not sent yet
                return {loc.host for loc in located.locations if loc.verified}

            syncer = module.EXTENSION.syncer
            await asyncio.to_thread(wait_until, lambda: syncer.last.startswith("sent 3"))
            # Queued now: the files are hashed for it, and those hashes must reach
            # this server's inventory without anything else happening.
            first = (await (await page.post("/stablequeue/queue", json={
                "prompt": graph(), "target": "this"})).json())["jobs"][0]  # fmt: skip
            await asyncio.to_thread(wait_until, lambda: "comfy-here" in hosts())
            if probe_every < 60:  # three more probes of comfy-here (names only) stored
                checks: set[int] = set()

                def probed() -> bool:
                    server = sq.processes.GetServer(
                        processes_pb2.GetServerRequest(alias="comfy-here")
                    ).server
                    checks.add(server.last_checked_at.ToNanoseconds())
                    return len(checks) > 4  # (a 4th check: the 3rd's inventory is in)

                await asyncio.to_thread(wait_until, probed, 20)
            assert "comfy-here" in hosts()
            # The probe's relative name and the extension's full path are one file.
            located = sq.call("LocateModel", models_pb2.LocateModelRequest(reference=sha),
                              "models")  # fmt: skip
            [file] = [loc for loc in located.locations if loc.host == "comfy-here"]
            assert file.verified and file.path == str(comfy_home.models / "checkpoints" / CKPT)
            assert file.backend_name == CKPT
            done = await asyncio.to_thread(final_job, sq, first)
            assert (done.status, done.server) == (queue_pb2.JOB_STATUS_COMPLETED, "comfy-here")
            # Another ComfyUI known by URL only, with files of the same names: presumed
            # the same files (by name), so the job may run there too.
            register_server(sq, "comfy-other", "comfyui", other.url)
            second = (await (await page.post("/stablequeue/queue", json={
                "prompt": graph(), "target": "comfy-other"})).json())["jobs"][0]  # fmt: skip
            done = await asyncio.to_thread(final_job, sq, second)
            assert (done.status, done.server) == (queue_pb2.JOB_STATUS_COMPLETED, "comfy-other")
            # The coordinator forgets comfy-here: the extension registers and sends again
            # (every resync_seconds; 300 by default).
            await page.post("/stablequeue/settings", json={"resync_seconds": 1})
            sq.call("RemoveServer", processes_pb2.RemoveServerRequest(alias="comfy-here"),
                    "processes")  # fmt: skip
            await asyncio.to_thread(wait_until, lambda: "comfy-here" in hosts(), 15)
    finally:
        here.close()
        other.close()
        coordinator.close()
