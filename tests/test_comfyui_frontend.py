"""The ComfyUI extension's page code (extensions/comfyui/web) under node's test runner,
against stand-ins of ComfyUI's `app` and `api` (tests/js/)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_frontend_tests_pass_under_node() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (the machine image has Node.js 20)")
    ran = subprocess.run(
        [node, "--test", str(ROOT / "tests" / "js")],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-2000:]
    assert "# fail 0" in ran.stdout and "# pass 8" in ran.stdout
