"""What `pip install stablequeue` puts into a Python: only names of this project.

The server side lives in the folders `coordinator/` and `agent/`; installed, they are
`stablequeue_coordinator` and `stablequeue_agent`, so the distribution never takes a
generic top-level name (`coordinator`, `agent`) in the Python it lands in.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(600)
def test_the_built_wheel_installs_only_this_projects_top_level_names(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", str(ROOT),
         "--wheel-dir", str(tmp_path)],
        check=True, cwd=tmp_path, timeout=540,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("stablequeue-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"stablequeue", "stablequeue_coordinator", "stablequeue_agent"}
    # The migrations travel with the coordinator, and the entry points name the new packages.
    assert "stablequeue_coordinator/store/migrations/versions/0001_initial.py" in names
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "sq-coordinator = stablequeue_coordinator.main:main" in scripts
    assert "sq-agent = stablequeue_agent.main:main" in scripts


def test_nothing_imports_the_folders_by_their_generic_names() -> None:
    """Every import goes through the installed names: importing a module both as
    `coordinator.x` and `stablequeue_coordinator.x` would make two copies of it."""
    offenders = []
    for folder in ("coordinator", "agent", "tests", "bench", "extensions", "clients"):
        for path in (ROOT / folder).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                words = line.split()
                if (
                    len(words) >= 2
                    and words[0] in ("from", "import")
                    and words[1].split(".")[0] in ("coordinator", "agent")
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
