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
    cells = page.locator(ID_CELLS)
    if not cells.count():  # gradio 3 and 4.40: the last table is the one shown
        cells = page.locator("#sq_queue table").last.locator("tbody tr td:nth-child(1)")
    return cells.filter(has_text=job.id[:8])


# The queue table's column `col` as shown: gradio 5+ marks grid cells; gradio 4.40
# (Forge) and 3 (A1111) render plain tables — 4.40 a one-row measuring copy first, then
# the table itself.
COLUMN_JS = """(col) => {
    const grid = [...document.querySelectorAll(`#sq_queue [role=gridcell][data-col='${col}']`)];
    if (grid.length) return grid.map((c) => c.innerText.trim());
    const tables = [...document.querySelectorAll('#sq_queue table')];
    if (!tables.length) return [];
    const cells = tables[tables.length - 1].querySelectorAll(`tbody tr td:nth-child(${col + 1})`);
    return [...cells].map((c) => c.innerText.trim());
}"""


def column(page: Any, col: int) -> list[str]:
    return list(page.evaluate(COLUMN_JS, col))


def cell_texts(page: Any) -> list[str]:
    return column(page, 0)


def select(page: Any, job: queue_pb2.Job) -> None:
    wait_until(lambda: job.id[:8] in cell_texts(page), timeout=30)  # a loaded 2-core CI
    row(page, job).click()
    box = page.locator("#sq_selected textarea, #sq_selected input").first
    wait_until(lambda: box.input_value() == job.id, timeout=30)


def status_of(page: Any, job: queue_pb2.Job) -> str:
    """The Status cell of the job's row, as shown."""
    ids, texts = cell_texts(page), column(page, 1)
    return texts[ids.index(job.id[:8])] if job.id[:8] in ids and len(texts) == len(ids) else ""


def said(page: Any, text: str) -> None:
    page.wait_for_selector(f"#sq_message:has-text('{text}')", timeout=10_000)


def use_every_control(page: Any, sq: Client, tmp_path: Path, prefix: str = "") -> None:
    """Each control of the StableQueue tab, with a server registered that runs jobs: its
    effect in the coordinator, its message in the page, and rows updated in place."""
    page.wait_for_selector("#sq_status:has-text('pending')", timeout=20_000)
    page.click("#sq_pause")
    said(page, "Queue paused")
    wait_until(lambda: sq.stats().paused)
    page.wait_for_selector("#sq_status:has-text('queue paused')", timeout=10_000)
    waiting = [
        sq.submit(txt2img(f"lighthouse, variation {i}", steps=8, seed=11 + i)) for i in range(4)
    ]
    wait_until(lambda: {j.id[:8] for j in waiting} <= set(cell_texts(page)), timeout=10)
    shoot(page, tmp_path, f"{prefix}dashboard-queue")

    def status(job: queue_pb2.Job) -> int:
        return sq.get_job(job.id).status

    def order() -> list[str]:
        return [j.id for j in sq.list_jobs(statuses=[queue_pb2.JOB_STATUS_PENDING]).jobs]

    select(page, waiting[1])
    page.click("#sq_cancel")
    said(page, f"Cancel: {waiting[1].id[:8]}")
    wait_until(lambda: status(waiting[1]) == queue_pb2.JOB_STATUS_CANCELLED)
    wait_until(lambda: status_of(page, waiting[1]) == "cancelled", timeout=10)
    page.click("#sq_retry")
    said(page, f"Retry: {waiting[1].id[:8]}")
    wait_until(lambda: status(waiting[1]) == queue_pb2.JOB_STATUS_PENDING)
    wait_until(lambda: status_of(page, waiting[1]) == "pending", timeout=10)

    select(page, waiting[3])
    page.click("#sq_front")
    said(page, f"Front: {waiting[3].id[:8]}")
    wait_until(lambda: order()[0] == waiting[3].id)
    wait_until(lambda: cell_texts(page)[0] == waiting[3].id[:8], timeout=10)
    page.click("#sq_back")
    said(page, f"Back: {waiting[3].id[:8]}")
    wait_until(lambda: order()[-1] == waiting[3].id)

    select(page, waiting[2])
    page.fill("#sq_priority input", "7")
    page.click("#sq_set_priority")
    said(page, f"Priority: {waiting[2].id[:8]}")
    wait_until(lambda: order()[0] == waiting[2].id)
    wait_until(lambda: cell_texts(page)[0] == waiting[2].id[:8], timeout=10)

    select(page, waiting[0])
    page.click("#sq_delete")
    said(page, "cancel it before deleting it")  # the coordinator's refusal, shown
    page.click("#sq_cancel")
    said(page, f"Cancel: {waiting[0].id[:8]}")
    page.click("#sq_delete")
    said(page, f"Delete: {waiting[0].id[:8]}")
    wait_until(lambda: waiting[0].id not in {j.id for j in sq.list_jobs().jobs})
    wait_until(lambda: waiting[0].id[:8] not in cell_texts(page), timeout=10)

    page.click("#sq_resume")
    said(page, "Queue resumed")
    ran = waiting[1:]
    wait_until(lambda: all(status(j) == queue_pb2.JOB_STATUS_COMPLETED for j in ran), 30)
    # The rows changed in place (no reload): each finished job reads "completed".
    # (on a loaded 2-core machine the app's gradio stream can lag the coordinator)
    wait_until(lambda: all(status_of(page, j) == "completed" for j in ran), timeout=40)
    page.wait_for_function(
        "document.querySelectorAll('#sq_gallery img').length >= 3", timeout=30_000
    )
    box = page.locator("#sq_selected textarea, #sq_selected input").first
    assert box.input_value() == waiting[0].id  # the last row selected (now deleted)
    page.locator("#sq_gallery img").first.click()
    wait_until(lambda: box.input_value() != waiting[0].id, timeout=10)
    assert sq.get_job(box.input_value()).status == queue_pb2.JOB_STATUS_COMPLETED
    assert "Seed:" in page.locator("#sq_infotext textarea").input_value()
    shoot(page, tmp_path, f"{prefix}dashboard-image")


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
            forge.step_seconds = 0.02
            use_every_control(page, sq, tmp_path)
            page.get_by_text("Servers, nodes and models").click()
            page.wait_for_selector("#sq_fleet [role=gridcell]:has-text('forge-1')", timeout=15_000)
            picture = shoot(page, tmp_path, "dashboard")
            if os.environ.get("SQ_DOCS_SCREENSHOT"):
                (ROOT / "docs").mkdir(exist_ok=True)
                shutil.copy(picture, ROOT / "docs" / "dashboard.png")
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
