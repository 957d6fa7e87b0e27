"""The Forge extension (extensions/forge) loaded into a stand-in of Forge's `modules`.

The stand-in (tests/fakes/forge_app) loads the extension's scripts the way Forge
does and builds txt2img/img2img with a real gradio, so the Queue buttons are
bound to Generate's real inputs; a real coordinator receives the jobs. Jobs run
on the Forge fake, and one test clicks Queue in a real Chromium.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image
from safetensors.numpy import save_file

from stablequeue import Client
from stablequeue.v1 import models_pb2, processes_pb2, queue_pb2
from tests.conftest import CoordinatorThread, make_settings
from tests.fakes.forge import FakeForge
from tests.helpers import final_job, register_server, wait_until

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "tests" / "fakes" / "forge_app"
EXTENSION = ROOT / "extensions" / "forge"
STYLE = ("cinematic", "cinematic photo of {prompt}, film grain", "cartoon")


def tensor_file(path: Path, fill: float) -> str:
    """A real (tiny) safetensors file; returns its SHA-256."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": np.full((4, 4), fill, dtype=np.float32)}, str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def forge_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """The stand-in Forge with the extension loaded, its UI built (not served)."""
    root = tmp_path_factory.mktemp("forge")
    models, loras = root / "Stable-diffusion", root / "Lora"
    sha = tensor_file(models / "dreamshaper_8.safetensors", 1.0)
    tensor_file(models / "unhashed.safetensors", 2.0)
    lora_sha = tensor_file(loras / "detail.safetensors", 3.0)
    vae_sha = tensor_file(root / "VAE" / "sdxl_vae.safetensors", 4.0)
    emb_sha = tensor_file(root / "embeddings" / "easynegative.safetensors", 5.0)
    saved_path, saved_modules = list(sys.path), set(sys.modules)
    sys.path[:0] = [str(APP)]
    try:
        from modules import hashes, sd_hijack, sd_vae, shared, styles

        hashes.cache["checkpoint/dreamshaper_8.safetensors"] = {
            "sha256": sha, "mtime": (models / "dreamshaper_8.safetensors").stat().st_mtime,
        }  # fmt: skip
        hashes.cache["lora/detail"] = {
            "sha256": lora_sha, "mtime": (loras / "detail.safetensors").stat().st_mtime,
        }  # fmt: skip
        sd_vae.vae_dict["sdxl_vae.safetensors"] = str(root / "VAE" / "sdxl_vae.safetensors")
        sd_hijack.model_hijack.embedding_db.word_embeddings["easynegative"] = SimpleNamespace(
            filename=str(root / "embeddings" / "easynegative.safetensors"), hash=emb_sha
        )
        shared.prompt_styles.styles[STYLE[0]] = styles.PromptStyle(*STYLE)
        import webui  # type: ignore[import-not-found]

        webui.load([EXTENSION], models, loras)
        from modules import sd_models
        from sq_forge import inventory

        inventory.HASHES.path = root / "sq-hashes.json"  # not the user's ~/.cache

        shared.opts.sd_model_checkpoint = next(
            t for t in sd_models.checkpoints_list if t.startswith("dreamshaper")
        )
        demo = webui.build()
        yield SimpleNamespace(
            demo=demo, webui=webui, root=root, models=models, sha=sha, lora_sha=lora_sha,
            vae_sha=vae_sha, emb_sha=emb_sha,
        )  # fmt: skip
    finally:
        buttons = sys.modules.get("sq_forge.buttons")
        if buttons is not None:
            if buttons._FEED is not None:
                buttons._FEED.stop()
            buttons.SYNCER.stop()
        sys.path[:] = saved_path
        # Forget the stand-in app's and the extension's modules (another test loads
        # them afresh), never a library first imported meanwhile: a second copy of
        # httpcore would raise exceptions httpx no longer maps (the dispatcher then
        # saw 'internal error: RemoteProtocolError' in the tests after this one).
        ours = (str(APP), str(EXTENSION))
        for name in set(sys.modules) - saved_modules:
            module = sys.modules[name]
            where = [getattr(module, "__file__", None) or "", *getattr(module, "__path__", [])]
            if any(str(w).startswith(ours) for w in where):
                del sys.modules[name]


@pytest.fixture
def settings(forge_app: SimpleNamespace, sqlite_server: CoordinatorThread) -> Iterator[Any]:
    """The extension's settings pointed at this test's coordinator."""
    from modules import shared

    opts = shared.opts
    saved = dict(opts.data)
    opts.set("stablequeue_address", sqlite_server.address)
    yield opts
    opts.data.clear()
    opts.data.update(saved)


def generate_inputs(demo: Any, tab: str) -> list[Any]:
    """The inputs of the app's own generation call on `tab` (`modules.txt2img.txt2img`
    behind Forge's wrappers), whichever other handlers are bound to Generate too."""
    import importlib
    import inspect

    own = getattr(importlib.import_module(f"modules.{tab}"), tab)
    button = next(b for b in demo.blocks.values() if getattr(b, "elem_id", "") == f"{tab}_generate")
    from sq_forge.buttons import clicks

    handlers = []
    for block in [demo, *[b for b in demo.blocks.values() if hasattr(b, "fns")]]:
        handlers = handlers or clicks(block, button)
    # The stand-in binds ControlNet's three unit handlers first, as Forge does.
    assert len(handlers) == 4 and [inspect.unwrap(h.fn) is own for h in handlers] == [
        False, False, False, True
    ]  # fmt: skip
    return list(handlers[-1].inputs)


def defaults(components: list[Any], **changes: Any) -> list[Any]:
    """Each component's current value, with some changed (by elem_id or label)."""
    values = []
    for c in components:
        key = getattr(c, "elem_id", None) or getattr(c, "label", None)
        value = changes.get(key, getattr(c, "value", None))
        if getattr(c, "type", None) == "index" and isinstance(value, str):
            value = [choice[0] for choice in c.choices].index(value)  # as gradio preprocesses
        values.append(value)
    return values


def txt2img_values(demo: Any) -> list[Any]:
    inputs = generate_inputs(demo, "txt2img")
    values = defaults(
        inputs,
        txt2img_prompt="a castle <lora:detail:0.8> on a hill <lora:elsewhere:1>",
        txt2img_neg_prompt="blurry",
        txt2img_styles=[STYLE[0]],
        txt2img_batch_count=2,
        txt2img_cfg_scale=5.5,
        txt2img_width=768,
        txt2img_height=640,
        txt2img_hr=True,
        txt2img_hr_scale=1.5,
        txt2img_hr_upscaler="R-ESRGAN 4x+",
        hires_prompt="sharp details",
        txt2img_override_settings=["CLIP skip: 2"],
        txt2img_seed=1234,
        txt2img_steps=28,
        txt2img_sampling="DPM++ 2M",
        txt2img_scheduler="Karras",
    )
    # ControlNet's first unit, as its Enable checkbox and weight slider left it.
    controlnet = sys.modules["forge_script_controlnet_controlnet"]
    first = next(i for i, v in enumerate(values) if isinstance(v, controlnet.ControlNetUnit))
    values[first] = controlnet.UiControlNetUnit(True, 0.6)
    return values


def forge_server(forge_app: SimpleNamespace, step_seconds: float = 0.02) -> FakeForge:
    """A Forge fake that also has this Forge's checkpoint (the job asks for it by hash)."""
    forge = FakeForge(step_seconds=step_seconds)
    forge.checkpoints.append({
        "title": f"dreamshaper_8.safetensors [{forge_app.sha[:10]}]",
        "model_name": "dreamshaper_8", "hash": forge_app.sha[:10], "sha256": forge_app.sha,
        "filename": "/gpu1/models/Stable-diffusion/dreamshaper_8.safetensors", "config": None,
    })  # fmt: skip
    return forge


def queue(tab: str, values: list[Any], *, target: str = "", priority: int = 0,
          count: int = 1, seed_mode: str = "increment") -> str:  # fmt: skip
    """Calls the Queue click's function as gradio would (request first)."""
    from sq_forge import buttons

    request = SimpleNamespace(username=None)
    return buttons.handler(tab, count > 1)(
        request, *values, target or buttons.ANY, priority, count, seed_mode
    )


def submitted(sq: Client) -> list[queue_pb2.Job]:
    return list(sq.list_jobs(order=queue_pb2.JOB_ORDER_QUEUE).jobs)


def test_settings_section_holds_every_option(forge_app: SimpleNamespace) -> None:
    from modules import shared

    labels = shared.opts.data_labels
    keys = [k for k in labels if k.startswith("stablequeue_")]
    assert keys == [
        "stablequeue_address", "stablequeue_api_key", "stablequeue_alias",
        "stablequeue_public_url", "stablequeue_priority", "stablequeue_sync",
        "stablequeue_sync_minutes",
    ]  # fmt: skip
    assert {labels[k].section for k in keys} == {("stablequeue", "StableQueue")}
    assert labels["stablequeue_api_key"].component_args == {"type": "password"}
    rendered = {getattr(b, "elem_id", None) for b in forge_app.demo.blocks.values()}
    assert {f"setting_{k}" for k in keys} <= rendered


def test_queue_buttons_take_generates_inputs_and_ours(forge_app: SimpleNamespace) -> None:
    demo = forge_app.demo
    from sq_forge.buttons import TABS, find_click

    for tab in ("txt2img", "img2img"):
        generate = generate_inputs(demo, tab)
        state = TABS[tab]
        for button in state.buttons:
            found = next(
                f for f in [find_click(b, button) for b in [demo, state.root]] if f is not None
            )
            assert [c._id for c in found.inputs] == [c._id for c in generate + state.controls]
            assert found.outputs == [state.status]


def test_the_tab_sends_parameters_to_txt2img_and_img2img(forge_app: SimpleNamespace) -> None:
    from modules import infotext_utils

    bindings = infotext_utils.registered_param_bindings
    assert [b.tabname for b in bindings] == ["txt2img", "img2img"]
    assert {b.paste_button.elem_id for b in bindings} == {"sq_to_txt2img", "sq_to_img2img"}
    assert {b.source_text_component.elem_id for b in bindings} == {"sq_infotext"}


def test_queue_sends_everything_generate_would_run_and_generates_nothing(
    forge_app: SimpleNamespace, settings: Any, sqlite_server: CoordinatorThread
) -> None:
    controlnet = sys.modules["forge_script_controlnet_controlnet"]  # an always-on script
    from modules import processing, scripts, txt2img
    from sq_forge.capture import NOT_SENT, TYPED, jsonable

    controlnet.CALLS.clear()
    values = txt2img_values(forge_app.demo)
    shown = queue("txt2img", values, priority=5)
    assert "Queued 1 job" in shown and "stablequeueShowTab()" in shown, shown
    with sqlite_server.client() as sq:
        (job,) = submitted(sq)
    spec, params = job.spec, job.spec.params
    extra = json.loads(params.extra_json)

    assert (
        spec.priority == 5
        and spec.target_server == ""
        and spec.label == "dreamshaper_8.safetensors"
    )
    assert params.mode == queue_pb2.GENERATION_MODE_TXT2IMG
    # A LoRA this Forge has becomes the job's LoRA (routed on, named per server); one
    # it does not know stays in the text, as Generate would have it.
    assert params.prompt == "cinematic photo of a castle on a hill <lora:elsewhere:1>, film grain"
    assert [(lora.name, lora.weight) for lora in params.loras] == [("detail", 0.8)]
    assert params.negative_prompt == "blurry, cartoon"
    assert (params.seed, params.steps, params.sampler, params.scheduler) == (
        1234, 28, "DPM++ 2M", "Karras",
    )  # fmt: skip
    assert (params.cfg_scale, params.width, params.height) == (5.5, 768, 640)
    assert (params.iterations, params.batch_size) == (2, 1)
    assert params.model == forge_app.sha  # the checkpoint by its hash, its title as well
    assert extra["override_settings"] == {
        "CLIP_stop_at_last_layers": 2,
        "sd_model_checkpoint": f"dreamshaper_8.safetensors [{forge_app.sha[:10]}]",
    }
    assert extra["enable_hr"] is True and extra["hr_scale"] == 1.5
    assert extra["hr_upscaler"] == "R-ESRGAN 4x+" and extra["hr_prompt"] == "sharp details"

    # Every field of the processing object Generate would have run is in the job.
    p = txt2img.txt2img_create_processing("check", None, *values[1:])
    for f in dataclasses.fields(p):
        value = getattr(p, f.name)
        if not f.init or f.name in NOT_SENT or value is None:
            continue
        if f.name in TYPED:
            assert getattr(params, TYPED[f.name]) == value, f.name
        else:
            assert extra[f.name] == jsonable(value), f.name

    # The always-on script's arguments, its unit's image as base64 PNG; built-ins
    # (seed, sampler) are plain fields, and our own script sends nothing.
    (first, second, _third) = extra["alwayson_scripts"]["controlnet"]["args"]
    assert (first["enabled"], first["weight"]) == (True, 0.6)
    assert first["model"] == "control_canny [e3fe7712]" and second["enabled"] is False
    image = Image.open(io.BytesIO(base64.b64decode(first["image"])))
    assert image.size == (8, 8) and image.getpixel((0, 0)) == (200, 200, 200)
    assert set(extra["alwayson_scripts"]) == {"controlnet"}

    assert processing.GENERATED == [] and "process" not in controlnet.CALLS
    assert scripts.scripts_txt2img.selectable_scripts == []


def test_img2img_queue_sends_the_source_image(
    forge_app: SimpleNamespace, settings: Any, sqlite_server: CoordinatorThread
) -> None:
    from modules import processing

    source = Image.new("RGB", (64, 48), (10, 120, 200))
    values = defaults(
        generate_inputs(forge_app.demo, "img2img"),
        img2img_prompt="a watercolor <lora:detail:0.5>",
        img2img_image=source,
        img2img_denoising_strength=0.45,
    )
    forge = forge_server(forge_app)
    try:
        with sqlite_server.client() as sq:
            register_server(sq, "forge-1", "forge", forge.url)
            shown = queue("img2img", values)
            assert "Queued 1 job" in shown, shown
            (job,) = submitted(sq)
            assert final_job(sq, job.id).status == queue_pb2.JOB_STATUS_COMPLETED
    finally:
        forge.close()
    params = job.spec.params
    assert params.mode == queue_pb2.GENERATION_MODE_IMG2IMG and job.init_image_count == 1
    assert params.prompt == "a watercolor" and params.denoising_strength == 0.45
    path, body = forge.requests[-1]
    assert path == "/sdapi/v1/img2img" and body["denoising_strength"] == 0.45
    assert body["prompt"] == "a watercolor <lora:detail:0.5>"  # the server's own LoRA name
    got = Image.open(io.BytesIO(base64.b64decode(body["init_images"][0])))
    assert got.size == (64, 48) and got.convert("RGB").getpixel((3, 3)) == (10, 120, 200)
    units = body["alwayson_scripts"]["controlnet"]["args"]
    assert [(u["enabled"], u["weight"]) for u in units] == [(False, 1.0)] * 3
    assert body["image_cfg_scale"] == 1.5 and body["resize_mode"] == 0
    assert processing.GENERATED == []

    values = defaults(generate_inputs(forge_app.demo, "img2img"), img2img_prompt="no image")
    assert "choose a source image" in queue("img2img", values)


def test_queue_many_with_seeds_and_this_server(
    forge_app: SimpleNamespace, settings: Any, sqlite_server: CoordinatorThread
) -> None:
    from sq_forge import buttons

    values = txt2img_values(forge_app.demo)
    shown = queue("txt2img", values, target=buttons.THIS, count=3)
    assert "set this server&#x27;s alias" in shown and "Queued" not in shown

    settings.set("stablequeue_alias", "forge-here")
    shown = queue("txt2img", values, target=buttons.THIS, count=3, seed_mode="increment")
    assert "Queued 3 jobs on forge-here" in shown, shown
    with sqlite_server.client() as sq:
        jobs = submitted(sq)
    assert [j.spec.params.seed for j in jobs] == [1234, 1235, 1236]
    assert {j.spec.target_server for j in jobs} == {"forge-here"}


def test_errors_are_messages_not_tracebacks(
    forge_app: SimpleNamespace, settings: Any, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    settings.set("stablequeue_address", dead)
    shown = queue("txt2img", txt2img_values(forge_app.demo))
    assert f"StableQueue coordinator at {dead} is not reachable" in shown
    assert "Traceback" not in shown and "color:#dc2626" in shown

    locked = CoordinatorThread(
        make_settings(tmp_path / "locked", f"sqlite:///{tmp_path / 'a.db'}", require_auth=True)
    )
    try:
        settings.set("stablequeue_address", locked.address)
        settings.set("stablequeue_api_key", "sq_wrong")
        shown = queue("txt2img", txt2img_values(forge_app.demo))
        assert "refused the API key" in shown and "sq_wrong" not in shown
    finally:
        locked.close()


def test_inventory_sync_sends_every_model_and_registers_the_server(
    forge_app: SimpleNamespace, settings: Any, sqlite_server: CoordinatorThread, tmp_path: Path
) -> None:
    from modules import shared
    from sq_forge import inventory

    inventory.HASHES.path, inventory.HASHES._cache = tmp_path / "hashes.json", None
    unhashed = forge_app.models / "unhashed.safetensors"
    first = {f.backend_name: f for f in inventory.collect()}
    assert first["unhashed.safetensors"].hashes.sha256 == ""  # not read on the caller's path
    wait_until(inventory.HASHES.idle)  # ... but hashed once, in the background
    files = {f.backend_name: f for f in inventory.collect()}
    assert (
        files["unhashed.safetensors"].hashes.sha256
        == hashlib.sha256(unhashed.read_bytes()).hexdigest()
    )
    cached = json.loads((tmp_path / "hashes.json").read_text())
    assert cached[str(unhashed)][:2] == [unhashed.stat().st_size, unhashed.stat().st_mtime_ns]
    assert set(files) == {
        f"dreamshaper_8.safetensors [{forge_app.sha[:10]}]", "unhashed.safetensors",
        "detail", "sdxl_vae.safetensors", "easynegative",
    }  # fmt: skip
    ckpt = files[f"dreamshaper_8.safetensors [{forge_app.sha[:10]}]"]
    assert ckpt.type == models_pb2.MODEL_TYPE_CHECKPOINT and ckpt.hashes.sha256 == forge_app.sha
    assert ckpt.size_bytes == (forge_app.models / "dreamshaper_8.safetensors").stat().st_size
    assert ckpt.modified_at.seconds > 0
    assert files["detail"].type == models_pb2.MODEL_TYPE_LORA
    assert files["detail"].hashes.autov3 == forge_app.lora_sha  # Forge's addnet hash
    lora_file = forge_app.root / "Lora" / "detail.safetensors"
    assert files["detail"].hashes.sha256 == hashlib.sha256(lora_file.read_bytes()).hexdigest()
    assert files["sdxl_vae.safetensors"].type == models_pb2.MODEL_TYPE_VAE
    assert files["easynegative"].hashes.sha256 == forge_app.emb_sha

    settings.set("stablequeue_alias", "forge-laptop")
    settings.set("stablequeue_public_url", "http://127.0.0.1:7860/")
    note = inventory.Syncer().once()
    assert "sent 5 model files" in note and "start Forge with --api" in note
    shared.cmd_opts.api = True
    try:
        note = inventory.Syncer().once()
        assert "registered as server forge-laptop" in note
        assert "server forge-laptop updated" in inventory.Syncer().once()
    finally:
        shared.cmd_opts.api = False
    with sqlite_server.client() as sq:
        servers = sq.call("ListServers", processes_pb2.ListServersRequest(), "processes").servers
        assert [(s.alias, s.base_url) for s in servers] == [
            ("forge-laptop", "http://127.0.0.1:7860")
        ]
        models = sq.call("ListModels", models_pb2.ListModelsRequest(), "models").models
    known = {m.hashes.sha256: m for m in models}
    assert {loc.host for loc in known[forge_app.sha].locations} == {"forge-laptop"}


def test_syncer_follows_a_model_refresh(
    forge_app: SimpleNamespace, settings: Any, sqlite_server: CoordinatorThread
) -> None:
    from modules import sd_models
    from sq_forge import inventory

    settings.set("stablequeue_alias", "forge-refresh")
    syncer = inventory.Syncer(check_seconds=0.1)
    syncer.start()
    try:
        wait_until(lambda: "sent 5 model files" in syncer.last, timeout=10)
        tensor_file(forge_app.models / "new_model.safetensors", 6.0)
        sd_models.list_models(str(forge_app.models))  # the Refresh button
        wait_until(lambda: "sent 6 model files" in syncer.last, timeout=10)
    finally:
        syncer.stop()
        (forge_app.models / "new_model.safetensors").unlink()
        sd_models.list_models(str(forge_app.models))


def test_queue_click_in_the_browser_runs_on_a_forge_server(
    forge_app: SimpleNamespace, settings: Any, sqlite_server: CoordinatorThread, tmp_path: Path
) -> None:
    """The real page: type a prompt, press Queue; the job runs; the tab shows it, and
    every control of the tab acts (through Forge's event wrappers)."""
    from tests.test_dashboard_browser import CHROMIUM, FLAGS, free_port, use_every_control

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    forge = forge_server(forge_app, step_seconds=0.05)
    port = free_port()
    forge_app.webui.serve(forge_app.demo, port)
    try:
        with sqlite_server.client() as sq, sync_playwright() as pw:
            register_server(sq, "forge-1", "forge", forge.url)
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}")
            page.fill("#txt2img_prompt textarea", "a lighthouse at dusk")
            page.click("#txt2img_sq_queue")
            artifacts = Path(os.environ.get("SQ_ARTIFACTS") or tmp_path)
            artifacts.mkdir(parents=True, exist_ok=True)
            page.wait_for_selector("#txt2img_sq_status:has-text('Queued 1 job')", timeout=20_000)
            (job,) = submitted(sq)
            assert job.spec.params.prompt == "a lighthouse at dusk"
            assert final_job(sq, job.id).status == queue_pb2.JOB_STATUS_COMPLETED
            assert forge.requests[-1][1]["prompt"] == "a lighthouse at dusk"

            page.click("#sq_tab_link")  # the link in the message opens the tab
            cells = page.locator("#sq_queue [role=gridcell][data-col='0']")
            wait_until(lambda: job.id[:8] in cells.all_inner_texts(), timeout=20)
            page.screenshot(path=str(artifacts / "forge-tab.png"), full_page=True)
            forge.step_seconds = 0.02
            use_every_control(page, sq, artifacts, prefix="forge-")
            browser.close()
    finally:
        forge_app.demo.close()
        forge.close()
