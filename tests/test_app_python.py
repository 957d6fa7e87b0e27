"""The SDK and the Forge extension inside an app's own Python.

Forge (Python 3.10) pins gradio 4.40 and protobuf 3.20.0 and has no grpcio;
AUTOMATIC1111 1.10 pins gradio 3.41.2 and protobuf 3.20.0 (here with grpcio 1.62.3,
the oldest the SDK declares). For each, a fresh venv with those pins gets the SDK
from the Forge extension's install.py (run as the app runs it, with the stand-in's
`launch`): pip freeze afterwards is the one before plus additions, and nothing is
written into the checkout. Then it submits, reads and cancels a job through the
committed stubs, and runs the stand-in app with the extension on that gradio, where
a Queue click in Chromium reaches the coordinator, the link in the message opens
the tab that lists it, and (on Forge's gradio) every control of the tab acts.
"""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stablequeue.v1 import queue_pb2
from tests.conftest import CoordinatorThread
from tests.fakes.forge import FakeForge
from tests.helpers import register_server

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import json, sys
import google.protobuf, grpc
from stablequeue import Client, txt2img
from stablequeue.v1 import queue_pb2
with Client(sys.argv[1]) as sq:
    job = sq.submit(txt2img("from an old protobuf", steps=12, seed=7))
    seen = sq.get_job(job.id)
    cancelled = sq.cancel(job.id)
print(json.dumps({
    "protobuf": google.protobuf.__version__, "grpc": grpc.__version__,
    "steps": seen.spec.params.steps, "prompt": seen.spec.params.prompt,
    "status": queue_pb2.JobStatus.Name(cancelled.status),
}))
"""


INSTALL = """
import json, runpy, sys
import launch
runpy.run_path(sys.argv[1], run_name="__main__")
print(json.dumps(launch.pip_commands))
"""


# The apps' own pins (requirements_versions.txt) — Forge f2.0.1: gradio 4.40.0,
# protobuf 3.20.0, pydantic 2.8.2, numpy 1.26.2, and no grpcio; AUTOMATIC1111 1.10:
# gradio 3.41.2, protobuf 3.20.0 — A1111 here with the oldest grpcio the SDK admits.
APP_PINS = {
    "forge": ["gradio==4.40.0", "protobuf==3.20.0", "huggingface_hub==0.24.6",
              "fastapi==0.112.4", "pydantic==2.8.2", "numpy==1.26.2", "pillow", "safetensors"],
    "a1111": ["gradio==3.41.2", "protobuf==3.20.0", "grpcio==1.62.3", "fastapi==0.94.0",
              "httpx==0.24.1", "pydantic<2", "huggingface_hub<0.25", "numpy==1.26.2",
              "pillow==9.5.0", "safetensors"],
}  # fmt: skip
ADDED = {"forge": {"grpcio", "stablequeue-sdk"}, "a1111": {"stablequeue-sdk"}}


def python310() -> str:
    """A working Python 3.10 (Forge's launcher asks for 3.10.6) if this machine has one,
    else the running Python."""
    candidates = [
        shutil.which("python3.10"),
        *sorted(glob.glob("/root/.pyenv/versions/3.10*/bin/python3.10")),
    ]
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-c", "import venv"], capture_output=True).returncode == 0:
            return candidate
    return sys.executable


APP_PYTHON = {"forge": python310(), "a1111": sys.executable}
FORGE = """
import json, sys
from pathlib import Path
root, models, port = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
sys.path[:0] = [str(root / "tests" / "fakes" / "forge_app")]
import gradio, webui
from modules import shared
webui.load([root / "extensions" / "forge"], models, models)
shared.opts.sd_model_checkpoint = "dreamshaper_8.safetensors"
demo = webui.build()
shared.opts.set("stablequeue_address", sys.argv[4])
from sq_forge import buttons
bound = {}
for tab, state in buttons.TABS.items():
    own = getattr(__import__(f"modules.{tab}", fromlist=[tab]), tab)
    handlers = buttons.clicks(state.root, state.generate)
    generate = next(h for h in handlers if getattr(h.fn, "__wrapped__", None) is own)
    queue = [buttons.find_click(b, state.buttons[0]) for b in (demo, state.root)]
    queue = next(f for f in queue if f is not None)
    bound[tab] = [len(handlers), [c._id for c in queue.inputs] == [
        c._id for c in list(generate.inputs) + state.controls
    ]]
webui.serve(demo, port)
print("SQ-REPORT", json.dumps({"gradio": gradio.__version__, "bound": bound}), flush=True)
sys.stdin.read()
"""


# pip is given up to 900 s to build and install (a loaded machine, a cold cache): the
# test's own limit must leave it that time, not the suite's 120 s default.
PIP_S = 900


@pytest.mark.timeout(2 * PIP_S)
@pytest.mark.parametrize("app_name", sorted(APP_PINS))
def test_the_sdk_and_the_forge_extension_in_the_apps_python(
    app_name: str, tmp_path: Path, sqlite_server: CoordinatorThread
) -> None:
    venv = tmp_path / "app-python"
    subprocess.run([APP_PYTHON[app_name], "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    installed = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--prefer-binary", *APP_PINS[app_name]],
        capture_output=True, text=True, timeout=PIP_S,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    before, checkout = freeze(python), checkout_files()
    extension = ROOT / "extensions" / "forge"
    app = {"PYTHONPATH": str(ROOT / "tests" / "fakes" / "forge_app"), "PATH": "/usr/bin:/bin"}
    for _ in range(2):  # the second start finds the SDK and installs nothing
        setup = subprocess.run(
            [python, "-c", INSTALL, str(extension / "install.py")],
            capture_output=True, text=True, timeout=600, env=app, cwd=tmp_path,
        )  # fmt: skip
        assert setup.returncode == 0, setup.stderr[-3000:]
        runs = json.loads(setup.stdout.strip().splitlines()[-1])
        if _ == 0:
            ((command, said),) = runs
            assert command.startswith('install "/') and " --constraint " in command
            assert said == f"StableQueue SDK from {ROOT / 'clients'}"
        else:
            assert runs == []
    after = freeze(python)
    # The app's pins held: every package it had is there at the same version.
    assert {k: v for k, v in after.items() if k in before} == before
    assert set(after) - set(before) == ADDED[app_name]
    assert checkout_files() == checkout  # no build/ or *.egg-info in the checkout
    import_names = subprocess.run(
        [python, "-c", "import coordinator"], capture_output=True, text=True, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert import_names.returncode == 1  # only the SDK: no top-level `coordinator`
    ran = subprocess.run(
        [python, "-c", SCRIPT, sqlite_server.address],
        capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-2000:]
    report = json.loads(ran.stdout.strip().splitlines()[-1])
    assert report["protobuf"] == "3.20.0" and report["grpc"] == after["grpcio"]
    assert (report["prompt"], report["steps"]) == ("from an old protobuf", 12)
    assert report["status"] == "JOB_STATUS_CANCELLED"
    gradio = next(p.split("==")[1] for p in APP_PINS[app_name] if p.startswith("gradio=="))
    queue_click_in_the_app(python, tmp_path, sqlite_server, gradio)


@pytest.mark.timeout(2 * PIP_S)
def test_the_comfyui_install_adds_only_the_light_sdk_and_writes_nothing_into_the_checkout(
    tmp_path: Path, sqlite_server: CoordinatorThread
) -> None:
    """README: `<ComfyUI's python> custom_nodes/comfyui-stablequeue/install.py` (as
    ComfyUI-Manager runs it). ComfyUI's own packages keep their versions (here with a
    protobuf 4 another custom node pinned), only grpcio and the SDK are added, and
    the checkout gets no build/ or *.egg-info."""
    venv = tmp_path / "comfyui-python"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    pins = ["aiohttp>=3.11.8", "pyyaml", "protobuf==4.25.3"]
    installed = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins],
        capture_output=True, text=True, timeout=PIP_S,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    before, checkout = freeze(python), checkout_files()
    ran = subprocess.run(
        [python, str(ROOT / "extensions" / "comfyui" / "install.py")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    assert f"installing the SDK from {ROOT / 'clients'}" in ran.stdout
    after = freeze(python)
    assert {k: v for k, v in after.items() if k in before} == before
    assert set(after) - set(before) == {"grpcio", "stablequeue-sdk"}
    assert checkout_files() == checkout
    used = subprocess.run(
        [python, "-c", SCRIPT, sqlite_server.address],
        capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path,
    )  # fmt: skip
    assert used.returncode == 0, used.stderr[-2000:]
    assert json.loads(used.stdout.strip().splitlines()[-1])["protobuf"] == "4.25.3"


def freeze(python: str) -> dict[str, str]:
    """Installed distributions and their versions, as pip lists them."""
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return {p["name"].lower(): p["version"] for p in json.loads(listed.stdout)}


def checkout_files() -> set[str]:
    """The checkout's top-level entries and those of the SDK's project folder."""
    return {p.name for p in ROOT.iterdir()} | {
        f"clients/{p.name}" for p in (ROOT / "clients").iterdir()
    }


def queue_click_in_the_app(
    python: str, tmp_path: Path, server: CoordinatorThread, gradio: str
) -> None:
    """The stand-in app with the extension, served by the app's gradio; clicked in Chromium."""
    from tests.test_dashboard_browser import CHROMIUM, FLAGS, free_port, use_every_control
    from tests.test_forge_extension import tensor_file

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    tensor_file(tmp_path / "models" / "dreamshaper_8.safetensors", 1.0)
    port = free_port()
    app = subprocess.Popen(
        [python, "-c", FORGE, str(ROOT), str(tmp_path / "models"), str(port), server.address],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "GRADIO_ANALYTICS_ENABLED": "False"},
    )  # fmt: skip
    try:
        assert app.stdout is not None
        line = app.stdout.readline()
        while line and not line.startswith("SQ-REPORT "):  # gradio 3 prints its URL
            line = app.stdout.readline()
        assert line, app.stderr.read()[-3000:] if app.stderr else ""
        report = json.loads(line.removeprefix("SQ-REPORT "))
        # Forge's built-in ControlNet binds 3 handlers to Generate before the app's own.
        bound = {"txt2img": [4, True], "img2img": [4, True]}
        assert report == {"gradio": gradio, "bound": bound}
        with server.client() as sq, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}")
            page.fill("#txt2img_prompt textarea", f"queued from gradio {gradio}")
            page.click("#txt2img_sq_queue")
            page.wait_for_selector("#txt2img_sq_status .sq-message", timeout=30_000)
            assert "Queued 1 job" in page.inner_text("#txt2img_sq_status")
            jobs = sq.list_jobs(statuses=[queue_pb2.JOB_STATUS_PENDING]).jobs
            assert [j.spec.params.prompt for j in jobs] == [f"queued from gradio {gradio}"]
            page.click("#sq_tab_link")
            page.wait_for_selector(f"#sq_queue :text('{jobs[0].id[:8]}')", timeout=30_000)
            forge = FakeForge(step_seconds=0.02)
            try:
                register_server(sq, "forge-1", "forge", forge.url)
                use_every_control(page, sq, tmp_path, prefix=f"gradio-{gradio}-")
            finally:
                forge.close()
            browser.close()
    finally:
        app.kill()
        app.communicate(timeout=10)
