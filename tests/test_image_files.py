"""How a job's image files reach the disk: whole or not at all, flushed before they have
their names, and with as little locking of the day's folder as the OS allows."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stablequeue_coordinator.outputs.store import Saving

UNNAMED = getattr(os, "O_TMPFILE", 0)
needs_unnamed_files = pytest.mark.skipif(
    not UNNAMED or not Path("/proc/self/fd").is_dir(), reason="no O_TMPFILE or /proc here"
)

# Audit hooks stay for the life of the process: this one records only while a test
# asks it to.
_calls: list[tuple[str, tuple[Any, ...]]] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _calls is not None and event in ("open", "os.rename", "os.link"):
        _calls.append((event, args))


sys.addaudithook(_audit)


@pytest.fixture
def calls() -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
    global _calls
    _calls = []
    try:
        yield _calls
    finally:
        _calls = None


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@needs_unnamed_files
def test_an_image_gets_its_name_once_written_and_flushed_without_a_temporary_name(
    tmp_path: Path, calls: list[tuple[str, tuple[Any, ...]]]
) -> None:
    """The data goes to an unnamed file of the day's folder, which is linked to its
    name: no temporary name is created and renamed (two exclusive locks of the folder
    per image, which the image threads queued on)."""
    day = tmp_path / "2026-12-05"  # made by the first image of the day
    Saving(files=[(day / "job-0.png", b"an image"), (day / "job-1.png", b"another")]).write()
    made = list(calls)
    assert not [c for c in made if c[0] == "os.rename"]
    opened = [args for event, args in made if event == "open"]
    assert opened and all(flags & UNNAMED == UNNAMED for _, _, flags in opened)
    linked = [Path(args[1]).name for event, args in made if event == "os.link"]
    assert linked == ["job-0.png", "job-1.png"]
    assert (day / "job-0.png").read_bytes() == b"an image"
    assert (day / "job-1.png").read_bytes() == b"another"
    assert leftovers(day) == ["job-0.png", "job-1.png"]


def refuse_unnamed_files(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    """The OS refuses unnamed files, as NFS, overlay and older kernels do."""
    real_open = os.open

    def opener(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if UNNAMED and flags & UNNAMED == UNNAMED:
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", opener)


@pytest.fixture(params=["unnamed", "renamed"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each way an image is written: by an unnamed file, and where there are none."""
    if request.param == "renamed":
        refuse_unnamed_files(monkeypatch, errno.EISDIR)
    return str(request.param)


def test_where_the_filesystem_has_no_unnamed_files_a_renamed_one_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: list[tuple[str, tuple[Any, ...]]]
) -> None:
    """NFS, overlay and older kernels refuse O_TMPFILE (EOPNOTSUPP, EISDIR): the
    image is then written under a temporary name and renamed."""
    refuse_unnamed_files(monkeypatch, errno.EOPNOTSUPP)
    Saving(files=[(tmp_path / "day" / "job-0.png", b"an image")]).write()
    assert (tmp_path / "day" / "job-0.png").read_bytes() == b"an image"
    assert leftovers(tmp_path / "day") == ["job-0.png"]
    renamed = [args for event, args in calls if event == "os.rename"]
    assert len(renamed) == 1 and Path(renamed[0][0]).name.endswith(".incomplete")


def test_an_image_written_again_replaces_the_one_there(tmp_path: Path, way: str) -> None:
    """A job retried after a crash between its image write and its commit writes the
    same names again: the new file replaces the old, whole."""
    path = tmp_path / "job-0.png"
    path.write_bytes(b"from the first attempt")
    Saving(files=[(path, b"from the second")]).write()
    assert path.read_bytes() == b"from the second"
    assert leftovers(tmp_path) == ["job-0.png"]


def test_an_image_that_cannot_be_flushed_leaves_nothing_under_any_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    def fails(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", fails)
    with pytest.raises(OSError, match="Input/output error"):
        Saving(files=[(tmp_path / "job-0.png", b"an image")]).write()
    assert leftovers(tmp_path) == []


def test_image_files_get_the_mode_the_umask_gives_as_in_forge(tmp_path: Path, way: str) -> None:
    old = os.umask(0o022)
    try:
        Saving(files=[(tmp_path / "job-0.png", b"an image")]).write()
        os.umask(0o077)
        Saving(files=[(tmp_path / "job-1.png", b"an image")]).write()
    finally:
        os.umask(old)
    assert (tmp_path / "job-0.png").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "job-1.png").stat().st_mode & 0o777 == 0o600
