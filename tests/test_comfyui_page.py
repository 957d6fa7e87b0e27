"""The ComfyUI extension in ComfyUI's real frontend, driven in Chromium.

The frontend is the `comfyui-frontend-package` from PyPI, in the version ComfyUI
0.3.64 pins (1.27.10: no `actionBarButtons`) and a current one (1.58.1), served with
the routes ComfyUI answers (tests/fakes/comfyui_page.py); the extension is loaded as
ComfyUI loads it, against a real coordinator, and its jobs run on the ComfyUI fake
behind the same page. Skipped, with the reason, without Chromium or when PyPI cannot
be reached for the frontend.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from stablequeue.v1 import queue_pb2
from tests.conftest import CoordinatorThread
from tests.fakes.comfyui_page import CURRENT, PINNED, ComfyUIPage, default_workflow, frontend
from tests.helpers import final_job, wait_until
from tests.test_comfyui_extension import CKPT, EXTENSION, comfy_home, load_like_comfyui
from tests.test_dashboard_browser import CHROMIUM, FLAGS, pytestmark  # noqa: F401

__all__ = ["comfy_home"]  # the fixture, shared


@pytest.fixture(params=[PINNED, CURRENT])
def static(request: pytest.FixtureRequest) -> Path:
    try:
        return frontend(request.param)
    except RuntimeError as e:
        pytest.skip(f"ComfyUI frontend {request.param} is not available: {e}")


@pytest.fixture
def comfy(
    comfy_home: SimpleNamespace, static: Path, sqlite_server: CoordinatorThread
) -> Iterator[SimpleNamespace]:
    """ComfyUI with the extension loaded, registered as server `comfy-page`."""
    load_like_comfyui()
    prompt_server = comfy_home.server.PromptServer.instance
    ui = ComfyUIPage(static, {"comfyui-stablequeue": (prompt_server, EXTENSION / "web")})
    ui.checkpoints, ui.loras = [CKPT], []
    settings = json.loads(comfy_home.settings.read_text())
    settings.update(alias="comfy-page", url=ui.url, sync=True)
    comfy_home.settings.write_text(json.dumps(settings))
    module = sys.modules["comfyui_stablequeue"]
    module.EXTENSION.syncer.now()
    try:
        yield SimpleNamespace(ui=ui, module=module, home=comfy_home)
    finally:
        ui.close()


@pytest.fixture
def browser_page(comfy: SimpleNamespace) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.sq_console = []  # type: ignore[attr-defined]
            page.on("console", lambda m: page.sq_console.append(m.text))  # type: ignore[attr-defined]
            yield page
            # Shown by pytest when the test failed: what the page said.
            print("page console:", *page.sq_console[-60:], sep="\n  ")  # type: ignore[attr-defined]
        finally:
            browser.close()


def open_comfyui(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_function("() => window.app?.graph && window.app.extensionManager", timeout=60_000)
    page.wait_for_function(
        "() => window.app.extensions?.some(e => e.name === 'StableQueue.Queue')", timeout=20_000
    )
    page.keyboard.press("Escape")  # a template browser may open on first run
    page.evaluate("async (wf) => { await window.app.loadGraphData(wf); }", default_workflow(CKPT))


def widget(page: Any, name: str) -> Any:
    return page.evaluate(
        "(name) => window.app.graph.nodes.flatMap(n => (n.widgets || [])"
        ".filter(w => w.name === name).map(w => w.value))[0]",
        name,
    )


def seed_moved(page: Any, before: int) -> None:
    """Waits until the seed widget no longer shows `before` (the queue's afterQueued)."""
    page.wait_for_function(
        "(s) => window.app.graph.nodes.some(n => (n.widgets || [])"
        ".some(w => w.name === 'seed' && w.value !== s))",
        arg=before,
        timeout=15_000,
    )


def seeds_sent(sq: Any, job_ids: list[str]) -> list[int]:
    seeds = []
    for job_id in job_ids:
        graph = json.loads(sq.get_job(job_id).spec.workflow_json)
        seeds += [n["inputs"]["seed"] for n in graph.values() if n["class_type"] == "KSampler"]
    return seeds


def test_queueing_from_the_page_behaves_like_comfyuis_own_queue(
    comfy: SimpleNamespace, browser_page: Any, sqlite_server: CoordinatorThread, static: Path
) -> None:
    page = browser_page
    open_comfyui(page, comfy.ui.url)
    version = PINNED if PINNED in str(static) else CURRENT
    # No clash with the frontend's own keys: no "Keybinding ... already exists".
    clashes = [m for m in page.sq_console if "already exists" in m]
    assert not clashes, clashes
    # One visible button: the action bar's own where it exists, else beside Run.
    page.wait_for_timeout(2500)  # the page's checks settle (a fallback is added after 1 s)
    buttons = page.locator(".sq-queue-button")
    assert buttons.count() == 1 and buttons.first.is_visible()
    fallback = "sq-fallback" in (buttons.first.get_attribute("class") or "")
    assert fallback == (version == PINNED), version

    first_seed = widget(page, "seed")
    assert widget(page, "control_after_generate") == "randomize"
    buttons.first.click()
    seed_moved(page, first_seed)
    second_seed = widget(page, "seed")
    page.mouse.click(700, 600)  # the canvas has the focus, as after editing the graph
    page.keyboard.press("Alt+Enter")
    seed_moved(page, second_seed)
    third_seed = widget(page, "seed")

    with sqlite_server.client() as sq:
        ids = [j.id for j in sq.list_jobs(order=queue_pb2.JOB_ORDER_NEWEST).jobs][::-1]
        assert len(ids) == 2, "the button and Alt+Enter each queue one job"
        # As ComfyUI's Queue: each job has the value shown when it was queued, and
        # the widget moves on ("control after generate").
        assert seeds_sent(sq, ids) == [first_seed, second_seed]
        assert len({first_seed, second_seed, third_seed}) == 3
        done = [final_job(sq, i) for i in ids]
        assert all(d.status == queue_pb2.JOB_STATUS_COMPLETED for d in done), done
        assert [d.server for d in done] == ["comfy-page", "comfy-page"]
    # ComfyUI's own queue was not used by our keys: only our two prompts ran.
    assert len(comfy.ui.prompts) == 2

    # The sidebar: thumbnails for both, also after ComfyUI restarts (a new feed that
    # only lists what finished before) and the page reloads.
    extension = comfy.module.EXTENSION
    if extension.feed is not None:
        extension.feed.stop()
        extension.feed = None
    page.reload()
    page.wait_for_function("() => window.app?.extensionManager", timeout=60_000)
    page.locator(".stablequeue-tab-button, [data-testid='stablequeue-tab-button']").first.click()
    page.wait_for_function(
        "() => document.querySelectorAll('.sq-thumb').length >= 2", timeout=20_000
    )
    finished = page.locator(".sq-job.sq-completed").first
    assert finished.locator("[data-action='cancel']").count() == 0  # only what applies
    assert finished.locator("[data-action='retry']").count() == 1


def test_the_keybinding_is_listed_in_comfyuis_settings(
    comfy: SimpleNamespace, browser_page: Any
) -> None:
    page = browser_page
    open_comfyui(page, comfy.ui.url)
    page.mouse.click(700, 600)
    page.keyboard.press("Control+,")
    page.get_by_text("Keybinding", exact=True).first.click(timeout=60_000)

    def ours() -> list[str]:
        # The label, the command id and the keys, in whatever column order it draws.
        return [r for r in rows(page) if "Queue in StableQueue" in r and "Alt" in r]

    def listed() -> bool:
        # Only once the keybinding table is there is the last search box its own: typed
        # into the settings' search instead (a slow machine), the dialog turns to
        # search results and the table is gone — then clear that and open the panel
        # again. The row's key combination may be drawn after its label: wait for both.
        if not rows(page):
            page.locator("input[placeholder*='earch']").first.fill("")
            page.get_by_text("Keybinding", exact=True).first.click(timeout=10_000)
            return False
        page.locator("input[placeholder*='earch']").last.fill("StableQueue")
        return bool(ours())

    try:
        wait_until(listed, 60)
    except AssertionError:
        seen = rows(page)
        raise AssertionError(f"no row 'Queue in StableQueue ... Alt+Enter' in {seen}") from None
    row = ours()[0]
    assert "Enter" in row and "StableQueue.Queue" in row


def rows(page: Any) -> list[str]:
    return list(
        page.evaluate(
            "() => [...document.querySelectorAll('tr')]"
            ".map(r => r.textContent.trim().replace(/\\s+/g, ' '))"
        )
    )
