"""Fetching one file over real HTTP from a loopback host: resume after a cut, a server
that ignores Range, wrong bytes, redirects, confinement to the model roots."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stablequeue_coordinator.downloads.fetch import (
    DownloadFailed,
    confined,
    fetch_url,
    partial_path,
)
from stablequeue_coordinator.errors import InvalidArgument
from stablequeue_coordinator.library.hashing import hash_file
from tests.fakes.files import FileHost, random_bytes

SIZE = 3 * 1024 * 1024 + 12345


@pytest.fixture
def host() -> Iterator[FileHost]:
    server = FileHost()
    yield server
    server.close()


async def fetch(host: FileHost, path: str, target: Path, **kwargs: object) -> object:
    async with httpx.AsyncClient(follow_redirects=True, timeout=10) as client:
        return await fetch_url(
            client, f"{host.url}{path}", target, partial_path(target, "dl-1"),
            backoff=0.01, **kwargs,  # type: ignore[arg-type]
        )  # fmt: skip


async def test_a_file_arrives_hashed_and_in_place(host: FileHost, tmp_path: Path) -> None:
    data = random_bytes(SIZE)
    sha = host.add("model.safetensors", data)
    seen: list[tuple[int, int]] = []
    target = tmp_path / "model.safetensors"
    hashes = await fetch(host, "/files/model.safetensors", target, sha256=sha.upper(),
                         on_progress=lambda done, total: seen.append((done, total)))  # fmt: skip
    assert target.read_bytes() == data
    assert hashes == hash_file(target, tensor_hash=True)  # every hash, from the one pass
    assert seen[-1] == (SIZE, SIZE) and len(seen) > 1
    assert sorted(tmp_path.iterdir()) == [target]  # no partial file left  # noqa: ASYNC240


async def test_a_dropped_connection_resumes_from_the_offset(host: FileHost, tmp_path: Path) -> None:
    data = random_bytes(SIZE, seed=2)
    sha = host.add("big.bin", data)
    host.drop_after["big.bin"] = 1_000_000
    host.drops["big.bin"] = 2  # cut twice
    target = tmp_path / "big.bin"
    hashes = await fetch(host, "/files/big.bin", target, sha256=sha)
    assert target.read_bytes() == data and hashes.sha256 == sha
    # Each try asked only for what was missing; nothing was sent twice.
    assert host.served == [("big.bin", 0, 1_000_000), ("big.bin", 1_000_000, 1_000_000),
                           ("big.bin", 2_000_000, SIZE - 2_000_000)]  # fmt: skip


async def test_a_server_ignoring_range_restarts_the_file_cleanly(
    host: FileHost, tmp_path: Path
) -> None:
    data = random_bytes(SIZE, seed=3)
    sha = host.add("plain.bin", data)
    host.drop_after["plain.bin"] = 700_000
    host.ignore_range = True
    target = tmp_path / "plain.bin"
    hashes = await fetch(host, "/files/plain.bin", target, sha256=sha)
    assert target.read_bytes() == data and hashes.sha256 == sha
    assert host.served == [("plain.bin", 0, 700_000), ("plain.bin", 0, SIZE)]


async def test_wrong_bytes_fail_with_both_hashes_and_leave_nothing(
    host: FileHost, tmp_path: Path
) -> None:
    sha = host.add("lie.bin", random_bytes(100_000, seed=4))
    host.wrong.add("lie.bin")
    target = tmp_path / "lie.bin"
    with pytest.raises(DownloadFailed) as failed:
        await fetch(host, "/files/lie.bin", target, sha256=sha)
    got = hashlib.sha256(bytes(b ^ 0x5A for b in host.files["lie.bin"])).hexdigest()
    assert f"expected {sha}, got {got}" in str(failed.value)
    assert list(tmp_path.iterdir()) == []  # noqa: ASYNC240


async def test_a_presigned_redirect_is_followed_and_its_query_never_shown(
    host: FileHost, tmp_path: Path
) -> None:
    data = random_bytes(50_000, seed=5)
    host.add("lora.safetensors", data)
    target = tmp_path / "lora.safetensors"
    await fetch(host, "/redirect/lora.safetensors", target)
    assert target.read_bytes() == data
    with pytest.raises(DownloadFailed) as failed:
        await fetch(host, "/signed/missing.bin?sig=secret-signature", tmp_path / "m.bin")
    assert "404" in str(failed.value) and "secret-signature" not in str(failed.value)
    assert len([s for s in host.auth if s == ""]) >= 2  # one try: a 404 is not retried


async def test_an_existing_file_is_never_overwritten(host: FileHost, tmp_path: Path) -> None:
    data = random_bytes(10_000, seed=6)
    sha = host.add("x.bin", data)
    target = tmp_path / "x.bin"
    target.write_bytes(b"someone else's file")
    with pytest.raises(DownloadFailed, match="already exists and is not the file asked for"):
        await fetch(host, "/files/x.bin", target, sha256=sha)
    assert target.read_bytes() == b"someone else's file"
    target.write_bytes(data)  # the very file: nothing to download
    served = len(host.served)
    assert (await fetch(host, "/files/x.bin", target, sha256=sha)).sha256 == sha  # type: ignore[attr-defined]
    assert len(host.served) == served


def test_destinations_stay_inside_the_model_roots(tmp_path: Path) -> None:
    root = tmp_path / "models"
    (root / "Lora").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    assert confined([root], "Lora", "a.safetensors") == root / "Lora" / "a.safetensors"
    assert confined([root], str(root / "Lora"), "unet/b.gguf") == root / "Lora" / "unet" / "b.gguf"
    for dest, name, field in [
        ("../elsewhere", "a.bin", "dest"),
        (str(outside), "a.bin", "dest"),
        ("escape", "a.bin", "dest"),  # a symlink out of the root
        ("Lora", "../../a.bin", "name"),
        ("Lora", "/etc/passwd", "name"),
        ("Lora", "", "name"),
    ]:
        with pytest.raises(InvalidArgument) as refused:
            confined([root], dest, name)
        assert refused.value.field == field, (dest, name)
    with pytest.raises(InvalidArgument, match="no model root"):
        confined([], "", "a.bin")


async def test_a_cut_stream_resumes_from_the_offset_on_disk(tmp_path: Path) -> None:
    from collections.abc import AsyncIterator

    from stablequeue_coordinator.downloads.fetch import fetch_chunks

    data = random_bytes(5_000_000, seed=12)
    asked: list[int] = []

    async def source(offset: int) -> AsyncIterator[bytes]:
        """Like a gRPC stream of 2 MiB chunks; the first one is cut after two chunks."""
        asked.append(offset)
        for at in range(offset, len(data), 2 * 1024 * 1024):
            if len(asked) == 1 and at - offset >= 4 * 1024 * 1024:
                raise ConnectionError("cut")
            yield data[at : at + 2 * 1024 * 1024]

    target = tmp_path / "m.ckpt"
    sha = hashlib.sha256(data).hexdigest()
    hashes = await fetch_chunks(source, len(data), target, partial_path(target, "dl-2"),
                                sha256=sha, retry_on=(ConnectionError,), backoff=0.01)  # fmt: skip
    assert hashes.sha256 == sha and target.read_bytes() == data
    assert asked == [0, 4 * 1024 * 1024]
    with pytest.raises(DownloadFailed, match="SHA-256 mismatch"):
        await fetch_chunks(source, len(data), tmp_path / "n.ckpt",
                           partial_path(tmp_path / "n.ckpt", "dl-3"), sha256="0" * 64)  # fmt: skip


async def test_no_token_or_signature_reaches_the_log(
    host: FileHost, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from stablequeue_coordinator.logs import configure_logging

    configure_logging("INFO")  # as sq-coordinator and sq-agent do
    caplog.set_level(logging.DEBUG)
    host.add("lora.safetensors", random_bytes(200_000, seed=13))
    host.drop_after["lora.safetensors"] = 50_000  # a cut: our retry is logged
    await fetch(host, "/redirect/lora.safetensors?token=s3cret-token", tmp_path / "l.safetensors")
    with pytest.raises(DownloadFailed):
        await fetch(host, "/files/nope.bin?token=s3cret-token", tmp_path / "n.bin")
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("aiohttp")]
    assert any("retrying" in m for m in ours)  # (the fake server's access log is not ours)
    assert not [m for m in ours if "s3cret" in m or "secret-signature" in m]
