"""The SDK inside an app's own Python: Forge's and ComfyUI's environments often pin an
old protobuf (mediapipe: < 5). A fresh venv with protobuf 3.20.3 and grpcio 1.62.3 —
the oldest the SDK declares — submits, reads and cancels a job on a real coordinator
through the committed stubs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import CoordinatorThread

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


def test_the_sdk_works_on_protobuf_3_20_and_grpcio_1_62(
    tmp_path: Path, sqlite_server: CoordinatorThread
) -> None:
    venv = tmp_path / "app-python"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    installed = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "protobuf==3.20.3", "grpcio==1.62.3"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    ran = subprocess.run(
        [python, "-c", SCRIPT, sqlite_server.address],
        capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(ROOT / "clients"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-2000:]
    report = json.loads(ran.stdout.strip().splitlines()[-1])
    assert report["protobuf"] == "3.20.3" and report["grpc"] == "1.62.3"
    assert (report["prompt"], report["steps"]) == ("from an old protobuf", 12)
    assert report["status"] == "JOB_STATUS_CANCELLED"
