"""The standalone dashboard (`sq dashboard`) in a real headless Chromium.

A real coordinator dispatches to the Forge fake; the page is the gradio app
`stablequeue.dashboard.ui.serve` builds, driven with Playwright in Debian's
chromium (`make test` installs it when missing). Screenshots go to
`$SQ_ARTIFACTS` (default: the test's tmp dir); with SQ_DOCS_SCREENSHOT=1 the
README's picture (docs/dashboard.png) is rewritten.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stablequeue import Client, txt2img
from stablequeue.v1 import queue_pb2
from tests.conftest import CoordinatorThread
from tests.fakes.forge import FakeForge
from tests.helpers import register_server, wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason="Debian's chromium is not installed (make test installs it: apt-get install chromium)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dashboard(sqlite_server: CoordinatorThread) -> Iterator[str]:
    from stablequeue.dashboard.ui import serve

    port = free_port()
    address = sqlite_server.address
    demo = serve(lambda: Client(address), "127.0.0.1", port, block=False)
    yield f"http://127.0.0.1:{port}"
    demo.sq_feed.stop()
    demo.close()


@pytest.fixture
def page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # Playwright starts it with a new, empty profile directory of its own.
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


def shoot(page: Any, tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("SQ_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


ID_CELLS = "#sq_queue [role=gridcell][data-col='0']"  # the visible grid, not the sizing copy


def row(page: Any, job: queue_pb2.Job) -> Any:
    return page.locator(ID_CELLS, has_text=job.id[:8])


def cell_texts(page: Any) -> list[str]:
    return [t.strip() for t in page.locator(ID_CELLS).all_inner_texts()]


def select(page: Any, job: queue_pb2.Job) -> None:
    row(page, job).click()
    box = page.locator("#sq_selected textarea, #sq_selected input").first
    wait_until(lambda: box.input_value() == job.id, timeout=10)


def test_dashboard_follows_a_job_to_its_image_and_acts_on_the_queue(
    sqlite_server: CoordinatorThread, dashboard: str, page: Any, tmp_path: Path
) -> None:
    forge = FakeForge(step_seconds=0.25)
    try:
        with sqlite_server.client() as sq:
            register_server(sq, "forge-1", "forge", forge.url)
            page.goto(dashboard)
            page.wait_for_selector("#sq_status:has-text('pending')", timeout=20_000)

            # A job shows up, runs with a progress bar and a preview, and completes.
            first = sq.submit(
                txt2img("a red fox in the snow", steps=12, seed=7, model="sd_xl_base_1.0")
            )
            page.wait_for_selector("#sq_running .sq-bar", timeout=15_000)
            page.wait_for_selector("#sq_running img[alt=preview]", timeout=15_000)
            assert "a red fox in the snow" in page.inner_text("#sq_running")
            assert "processing" in page.inner_text("#sq_queue")
            page.wait_for_function(
                "document.querySelectorAll('#sq_gallery img').length >= 1", timeout=20_000
            )
            assert sq.get_job(first.id).status == queue_pb2.JOB_STATUS_COMPLETED

            # Paused queue: three waiting jobs; cancel one and move another to the front.
            page.click("#sq_pause")
            page.wait_for_selector("#sq_status:has-text('queue paused')", timeout=10_000)
            waiting = [
                sq.submit(txt2img(f"lighthouse, variation {i}", steps=2, seed=11 + i))
                for i in range(3)
            ]
            wait_until(lambda: {j.id[:8] for j in waiting} <= set(cell_texts(page)), timeout=10)
            shoot(page, tmp_path, "dashboard-queue")

            select(page, waiting[1])
            page.click("#sq_cancel")
            wait_until(lambda: sq.get_job(waiting[1].id).status == queue_pb2.JOB_STATUS_CANCELLED)
            page.wait_for_selector("#sq_message:has-text('Cancel')", timeout=10_000)

            select(page, waiting[2])
            page.click("#sq_front")

            def order() -> list[str]:
                pending = sq.list_jobs(statuses=[queue_pb2.JOB_STATUS_PENDING]).jobs
                return [j.id for j in pending]

            wait_until(lambda: order() == [waiting[2].id, waiting[0].id])
            wait_until(
                lambda: cell_texts(page)[:2] == [waiting[2].id[:8], waiting[0].id[:8]],
                timeout=10,
            )

            # A higher priority runs first.
            select(page, waiting[0])
            page.fill("#sq_priority input", "7")
            page.click("#sq_set_priority")
            wait_until(lambda: order() == [waiting[0].id, waiting[2].id])
            wait_until(
                lambda: cell_texts(page)[:2] == [waiting[0].id[:8], waiting[2].id[:8]],
                timeout=10,
            )

            # Resume from the page: both run, the gallery shows three images.
            page.click("#sq_resume")
            page.wait_for_function(
                "document.querySelectorAll('#sq_gallery img').length >= 3", timeout=30_000
            )
            page.get_by_text("Servers, nodes and models").click()
            page.wait_for_selector("#sq_fleet [role=gridcell]:has-text('forge-1')", timeout=15_000)
            picture = shoot(page, tmp_path, "dashboard")
            if os.environ.get("SQ_DOCS_SCREENSHOT"):
                (ROOT / "docs").mkdir(exist_ok=True)
                shutil.copy(picture, ROOT / "docs" / "dashboard.png")
            page.locator("#sq_gallery img").first.click()
            infotext = page.locator("#sq_infotext textarea")
            wait_until(lambda: "Seed:" in infotext.input_value(), timeout=10)
            shoot(page, tmp_path, "dashboard-image")
    finally:
        forge.close()


def test_dashboard_says_when_the_coordinator_is_unreachable(page: Any) -> None:
    from stablequeue.dashboard.ui import serve

    port, dead = free_port(), free_port()
    demo = serve(lambda: Client(f"127.0.0.1:{dead}", timeout=2), "127.0.0.1", port, block=False)
    try:
        page.goto(f"http://127.0.0.1:{port}")
        page.wait_for_selector("#sq_status:has-text('not reachable')", timeout=20_000)
        assert f"127.0.0.1:{dead}" in page.inner_text("#sq_status")
        page.click("#sq_pause")
        page.wait_for_selector("#sq_message:has-text('not reachable')", timeout=10_000)
    finally:
        demo.sq_feed.stop()
        demo.close()
