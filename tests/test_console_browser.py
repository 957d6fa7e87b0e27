"""The web console in Debian's Chromium, at a phone's width (375 px) and a desktop's.

A real coordinator (its console and HTTP API on a loopback port) runs jobs on the
Forge fake; a person picks a model and a LoRA in the pickers, queues, watches the live
progress, finds the image in the gallery with its infotext, reorders and cancels in the
queue, creates and revokes a key, starts and cancels a download and adds a server.
Screenshots go to `$SQ_ARTIFACTS` (default: the test's tmp dir); with
SQ_DOCS_SCREENSHOT=1 the README's pictures (docs/console-*.png) are rewritten.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from safetensors.numpy import save_file

from stablequeue_coordinator.auth.principal import Scope
from tests.conftest import CoordinatorThread, make_settings
from tests.fakes.files import FileHost, random_bytes
from tests.fakes.forge import FakeForge, png
from tests.helpers import kill_all, wait_until
from tests.test_agent_session import start_agent
from tests.test_auth import new_key
from tests.test_dashboard_browser import CHROMIUM, FLAGS, ROOT

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason="Debian's chromium is not installed (make test installs it: apt-get install chromium)",
)
SIZES = {"phone": {"width": 375, "height": 812}, "desktop": {"width": 1280, "height": 900}}
WAIT_MS = 30_000
PHONE_DOCS = (
    "generate",
    "queue",
    "gallery",
)  # the README shows these at a phone's size too  # a loaded 2-core CI machine


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A coordinator with a LoRA in its own model folder (preview, trained words), the
    Forge fake registered as `forge`, and a file host for downloads."""
    lora_dir = tmp_path / "models" / "Lora"
    lora_dir.mkdir(parents=True)
    rng = np.random.default_rng(5)
    save_file(
        {"lora_unet_down.lora_down.weight": rng.random((4, 8), dtype=np.float32)},
        str(lora_dir / "crisp.safetensors"),
        metadata={"ss_base_model_version": "sdxl_base_v1-0"},
    )
    (lora_dir / "crisp.json").write_text(
        json.dumps({"activation text": "sharp focus, intricate", "sd version": "SDXL"})
    )
    (lora_dir / "crisp.preview.png").write_bytes(png((220, 140, 40), size=96))
    forge = FakeForge(step_seconds=0.12)
    files = FileHost()
    running = CoordinatorThread(
        make_settings(tmp_path, f"sqlite:///{tmp_path / 'sq.db'}", model_roots=[lora_dir.parent])
    )
    agent = start_agent(tmp_path / "node", running.address)
    api = httpx.Client(base_url=running.coordinator.http_url + "/api/v1", timeout=30)
    body = {"alias": "forge", "kind": "APP_KIND_FORGE", "base_url": forge.url}
    api.post("/servers", json=body).raise_for_status()
    with api.stream("POST", "/models/scan") as scan:
        for _ in scan.iter_lines():
            pass
    wait_until(lambda: len(api.get("/models").json()["models"]) >= 4, timeout=30)
    try:
        yield {"coordinator": running, "api": api, "forge": forge, "files": files}
    finally:
        api.close()
        kill_all(agent)
        running.close()
        files.close()
        forge.close()


@pytest.fixture(params=list(SIZES))
def size(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield launched
        finally:
            launched.close()


def open_page(
    browser: Any, size: str, url: str, asked: list[str] | None = None
) -> tuple[Any, list[str]]:
    """A fresh page at url; `asked`, if given, collects the URL of every request from the start."""
    phone = size == "phone"
    context = browser.new_context(
        viewport=SIZES[size], device_scale_factor=2 if phone else 1, is_mobile=phone,
        has_touch=phone,
    )  # fmt: skip
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: d.accept())  # confirm() of delete/revoke
    if asked is not None:
        page.on("request", lambda r: asked.append(r.url))
    page.goto(url)
    return page, errors


def shoot(page: Any, tmp_path: Path, size: str, name: str) -> None:
    folder = Path(os.environ.get("SQ_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"console-{size}-{name}.png"), full_page=size == "phone")
    if os.environ.get("SQ_DOCS_SCREENSHOT") == "1" and (size == "desktop" or name in PHONE_DOCS):
        page.evaluate("scrollTo(0, 0)")
        page.screenshot(path=str(ROOT / "docs" / f"console-{size}-{name}.png"))


def no_sideways_scroll(page: Any) -> None:
    """The page fits the screen's width (tables scroll inside their own box)."""
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"page is {width}px wide"


def job_order(page: Any) -> list[str]:
    ids = page.eval_on_selector_all("#queue-list [data-job]", "n => n.map(e => e.dataset.job)")
    return list(ids)


def test_a_person_uses_every_page(
    world: dict[str, Any], browser: Any, size: str, tmp_path: Path
) -> None:
    api: httpx.Client = world["api"]
    base = world["coordinator"].coordinator.http_url
    page, errors = open_page(browser, size, base + "/#/generate")

    # Generate: a model and a LoRA from the pickers, with the LoRA's trained words.
    page.fill("textarea[name=prompt]", "a lighthouse at dusk")
    page.click("#pick-model")
    page.locator("#picker .card", has_text="sd_xl_base_1.0").click()
    page.wait_for_selector("#model-picked >> text=sd_xl_base_1.0")
    page.click("#pick-lora")
    local = page.locator("#picker .card", has_text="crisp")
    local.locator("img").wait_for()  # its preview, fetched with the caller's key
    shoot(page, tmp_path, size, "picker")
    local.click()
    page.click("#lora-chips >> text=+ sharp focus")
    assert page.input_value("textarea[name=prompt]") == "a lighthouse at dusk, sharp focus"
    page.click("#lora-chips [aria-label='Remove crisp']")
    page.click("#pick-lora")
    page.locator("#picker .card", has_text="on forge").filter(has_text="detail").click()
    page.fill("#lora-chips input", "0.7")
    page.fill("input[name=steps]", "12")
    page.select_option("select[name=target_server]", "forge")
    offered = page.eval_on_selector_all("#samplers option", "o => o.map(e => e.value)")
    assert offered == ["Euler a", "Euler", "DPM++ 2M"]  # the Forge's own list
    page.fill("input[name=sampler]", "DPM++ 2M")
    page.fill("input[name=scheduler]", "Karras")
    no_sideways_scroll(page)
    page.click("#queue-button")
    card = page.locator("#generate-result .job").first
    card.locator(".stage >> text=/step \\d+\\/12/").wait_for()  # live progress
    assert 0 < float(card.locator("progress").evaluate("p => p.value")) < 1
    shoot(page, tmp_path, size, "generate")
    card.locator(".status >> text=completed").wait_for()
    card.locator(".out img").wait_for()
    (job,) = api.get("/jobs").json()["jobs"]
    params = job["spec"]["params"]
    assert params["model"] == "31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b"
    assert params["loras"] == [{"name": "detail", "weight": 0.7}]
    assert (params["steps"], params["prompt"]) == (12, "a lighthouse at dusk, sharp focus")
    assert (params["sampler"], params["scheduler"]) == ("DPM++ 2M", "Karras")
    assert world["forge"].requests[-1][1]["prompt"].endswith("<lora:detail:0.7>")

    # Gallery: the image, full size with its infotext; "use these settings".
    page.click("nav >> text=Gallery")
    page.locator("#gallery .tile img[src^='blob:']").first.wait_for()
    page.locator("#gallery .tile").first.click()
    info = page.locator("#result pre.infotext")
    assert "a lighthouse at dusk, sharp focus <lora:detail:0.7>" in info.inner_text()
    assert "Steps: 12" in info.inner_text()
    shoot(page, tmp_path, size, "gallery")
    page.click("#result >> text=Use these settings")
    page.wait_for_selector("body[data-page=generate]")
    page.wait_for_selector("#lora-chips >> text=detail")
    assert page.input_value("textarea[name=prompt]") == "a lighthouse at dusk, sharp focus"
    assert page.input_value("input[name=steps]") == "12"

    # Queue: three jobs held by a pause; move one down, cancel another.
    api.post("/queue/pause").raise_for_status()
    ids = [
        api.post("/jobs", json={"spec": {"params": {"prompt": f"job {i}"}}}).json()["job"]["id"]
        for i in range(3)
    ]
    page.click("nav >> text=Queue")
    wait_until(lambda: job_order(page) == ids, timeout=30)
    page.locator(f"[data-job='{ids[0]}'] [aria-label='Move down']").click()
    wait_until(lambda: job_order(page) == [ids[1], ids[0], ids[2]], timeout=30)
    page.locator(f"#queue-list [data-job='{ids[2]}'] >> text=Cancel").click()
    wait_until(lambda: job_order(page) == [ids[1], ids[0]], timeout=30)
    page.locator(f"#queue-finished [data-job='{ids[2]}']").wait_for()
    assert page.locator("#pause-all").inner_text() == "Resume queue"
    no_sideways_scroll(page)
    shoot(page, tmp_path, size, "queue")
    pending = api.get("/jobs", params={"statuses": "JOB_STATUS_PENDING"}).json()["jobs"]
    assert [j["id"] for j in pending] == [ids[1], ids[0]]
    assert api.get(f"/jobs/{ids[2]}").json()["job"]["status"] == "JOB_STATUS_CANCELLED"
    page.click("#pause-all")
    wait_until(lambda: not api.get("/queue/stats").json()["stats"]["paused"], timeout=30)

    # Models: cards with preview, hashes and where each is.
    page.click("nav >> text=Models")
    crisp = page.locator("#models .card", has_text="crisp")
    crisp.locator("img[src^='blob:']").wait_for()
    assert "SHA-256" in crisp.inner_text() and "coordinator: " in crisp.inner_text()
    shoot(page, tmp_path, size, "models")

    # API keys: created (the secret shown once), listed, revoked.
    page.click("nav >> text=API keys")
    page.fill("#key-form input[name=name]", "krita")
    page.click("#key-form >> text=Create key")
    secret = page.locator("#secret").inner_text()
    assert secret.startswith("sq_")
    shoot(page, tmp_path, size, "keys")
    page.click("nav >> text=Generate")
    page.click("nav >> text=API keys")
    page.locator("#keys [data-key] >> text=krita").wait_for()
    assert secret not in page.content()
    keyed = {"authorization": f"Bearer {secret}"}
    assert httpx.get(base + "/api/v1/jobs", headers=keyed).is_success
    page.click("#keys [data-key] >> text=Revoke")
    page.locator("#keys >> text=No keys yet.").wait_for()
    assert httpx.get(base + "/api/v1/jobs", headers=keyed).status_code == 401

    # Downloads: started from a URL with progress, then cancelled.
    files: FileHost = world["files"]
    files.delay = 0.03
    sha = files.add("big.safetensors", random_bytes(4_000_000, seed=9))
    page.click("nav >> text=Downloads")
    page.fill("#download-form input[name=where]", f"{files.url}/files/big.safetensors")
    page.select_option("#download-form select[name=dest]", "Lora")
    page.fill("#download-form input[name=sha256]", sha)
    page.click("#download-form >> text=Download")
    row = page.locator("#downloads [data-download]").first
    row.locator("text=/MB of \\d/").wait_for()  # bytes done of total, speed
    shoot(page, tmp_path, size, "downloads")
    row.locator("text=Cancel").click()
    row.locator(".badge >> text=cancelled").wait_for()
    (download,) = api.get("/downloads").json()["downloads"]
    assert download["state"] == "DOWNLOAD_STATE_CANCELLED"

    # Servers: add one; it is probed and shown with its health.
    stop = {"node": "gpu-a", "model": "sd"}  # the jobs above may have started it
    api.post("/processes/stop", json=stop).raise_for_status()
    page.click("nav >> text=Servers")
    page.fill("#server-form input[name=alias]", "forge-2")
    page.fill("#server-form input[name=base_url]", world["forge"].url)
    page.click("#server-form >> text=Add server")
    page.locator("#servers [data-server='forge-2']").wait_for()
    page.locator("#servers [data-server='forge-2'] >> text=up").wait_for()
    page.fill("#server-form input[name=alias]", "forge-2")
    page.fill("#server-form input[name=base_url]", world["forge"].url)
    page.click("#server-form >> text=Add server")
    page.locator("#server-form .error >> text=forge-2").wait_for()  # already there
    page.fill("#server-form input[name=alias]", "forge-3")
    page.fill("#server-form input[name=base_url]", "ftp://gpu-3")
    page.click("#server-form >> text=Add server")
    page.locator("#server-form input[name=base_url].field-error").wait_for()
    assert "base_url" in page.locator("#server-form .error").inner_text()
    # Nodes: a model server started, its log read, stopped.
    node = page.locator("#nodes [data-node='gpu-a']")
    node.locator(".badge >> text=online").wait_for()
    node.locator("[data-model='sd'] >> text=Start").click()
    node.locator("[data-model='sd'] .badge >> text=ready").wait_for()
    node.locator("[data-model='sd'] >> text=Logs").click()
    node.locator("pre.logs >> text=loading model").wait_for()
    shoot(page, tmp_path, size, "servers")
    node.locator("[data-model='sd'] >> text=Stop").click()
    node.locator("[data-model='sd'] .badge >> text=stopped").wait_for()
    assert {s["alias"] for s in api.get("/servers").json()["servers"]} == {"forge", "forge-2"}
    assert errors == []


def test_a_caller_that_is_not_trusted_signs_in_with_a_key(tmp_path: Path, browser: Any) -> None:
    running = CoordinatorThread(
        make_settings(tmp_path, f"sqlite:///{tmp_path / 'sq.db'}", require_auth=True)
    )
    try:
        _, key = new_key(running, Scope.ADMIN, "phone")
        page, errors = open_page(browser, "phone", running.coordinator.http_url + "/#/queue")
        page.locator("#login[open]").wait_for()
        page.fill("#login-key", "sq_wrong")
        page.click("#login button[type=submit]")
        page.locator("#login-error >> text=invalid or revoked").wait_for()
        page.fill("#login-key", key)
        page.click("#login button[type=submit]")
        page.locator("#login").wait_for(state="hidden")
        page.locator("#queue-list >> text=Nothing queued.").wait_for()
        assert page.evaluate("localStorage.getItem('sq_key')") is None  # not remembered
        assert key not in page.content()
        page.click("#logout")
        page.locator("#login[open]").wait_for()
        assert errors == []
    finally:
        running.close()


def test_the_console_files_are_served_with_a_strict_policy(
    sqlite_server: CoordinatorThread,
) -> None:
    base = sqlite_server.coordinator.http_url
    index = httpx.get(base + "/")
    assert index.status_code == 200 and "console.js" in index.text
    policy = index.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    script = httpx.get(base + "/console.js")
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert not re.search(r"\.innerHTML\s*=", script.text)  # the DOM is built, never parsed


def test_the_gallery_scrolls_on_and_filters(
    sqlite_server: CoordinatorThread, browser: Any, tmp_path: Path
) -> None:
    forge = FakeForge(step_seconds=0)
    base = sqlite_server.coordinator.http_url
    try:
        with httpx.Client(base_url=base + "/api/v1", timeout=30) as api:
            api.post("/servers", json={"alias": "forge", "kind": "APP_KIND_FORGE",
                                       "base_url": forge.url}).raise_for_status()  # fmt: skip
            for prompt, count in (("a red fox", 41), ("a lighthouse", 4)):
                spec = {"params": {"prompt": prompt, "steps": 1}}
                api.post("/jobs/bulk", json={"spec": spec, "count": count}).raise_for_status()
            wait_until(lambda: api.get("/queue/stats").json()["stats"]["completed"] == "45", 60)
        asked: list[str] = []
        page, errors = open_page(browser, "phone", base + "/#/gallery", asked)
        tiles = page.locator("#gallery .tile")
        wait_until(lambda: tiles.count() >= 40, timeout=30)
        assert tiles.count() == 40  # one page; the rest comes on scrolling
        # each tile fetches its picture once it exists: wait for those requests to go out
        wait_until(lambda: sum("/image" in url for url in asked) >= 40, timeout=30)
        images = [url for url in asked if "/image" in url]
        assert images and all(url.endswith("/image?max_edge=384") for url in images)  # thumbnails
        page.mouse.wheel(0, 100_000)
        wait_until(lambda: tiles.count() == 45, timeout=30)
        page.fill("input[aria-label='Filter by prompt']", "lighthouse")
        wait_until(lambda: tiles.count() == 4, timeout=30)
        assert errors == []
    finally:
        forge.close()


def test_img2img_from_an_uploaded_image_and_a_deleted_image(
    sqlite_server: CoordinatorThread, browser: Any, tmp_path: Path
) -> None:
    forge = FakeForge(step_seconds=0)
    base = sqlite_server.coordinator.http_url
    source = tmp_path / "source.png"
    source.write_bytes(png((10, 200, 90), size=64))
    try:
        with httpx.Client(base_url=base + "/api/v1", timeout=30) as api:
            api.post("/servers", json={"alias": "forge", "kind": "APP_KIND_FORGE",
                                       "base_url": forge.url}).raise_for_status()  # fmt: skip
            page, errors = open_page(browser, "desktop", base + "/#/generate")
            page.fill("textarea[name=prompt]", "the same, at night")
            page.set_input_files("input[name=init]", str(source))
            page.locator("text=1 image(s): img2img").wait_for()
            page.fill("input[name=denoising_strength]", "0.45")
            page.click("#queue-button")
            page.locator("#generate-result .status >> text=completed").wait_for()
            (job,) = api.get("/jobs").json()["jobs"]
            params = job["spec"]["params"]
            assert params["mode"] == "GENERATION_MODE_IMG2IMG" and job["init_image_count"] == 1
            assert params["denoising_strength"] == 0.45
            assert forge.requests[-1][0].endswith("img2img")

            page.click("nav >> text=Gallery")
            page.locator("#gallery .tile img[src^='blob:']").first.wait_for()
            page.locator("#gallery .tile").first.click()
            page.click("#result >> text=Delete")  # confirm() is accepted
            page.locator("#gallery .tile").first.wait_for(state="detached")
            assert api.get("/results").json()["results"] == []
            assert errors == []
    finally:
        forge.close()
