"""The sources with their real clients: `huggingface_hub` against a loopback Hub (plain
and redirected files, progress through tqdm_class, cancel), Civitai by version id and
AIR (metadata, redirecting download, sidecars), plain URLs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stablequeue_coordinator.downloads.fetch import DownloadFailed
from stablequeue_coordinator.downloads.sources import (
    Cancelled,
    Job,
    civitai_version_id,
    from_civitai,
    from_huggingface,
    from_url,
)
from stablequeue_coordinator.errors import InvalidArgument
from stablequeue_coordinator.library.civitai import CivitaiClient
from tests.fakes.civitai import FakeCivitai
from tests.fakes.files import FileHost, random_bytes


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FileHost]:
    server = FileHost()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    yield server
    server.close()


def job(tmp_path: Path, dest: str = "", sha256: str = "") -> Job:
    root = tmp_path / "models"
    root.mkdir(exist_ok=True)
    progress: list[tuple[int, int]] = []
    made = Job("dl-0123456789ab", [root], dest, sha256,
               on_progress=lambda done, total: progress.append((done, total)))  # fmt: skip
    made.progress = progress  # type: ignore[attr-defined]
    return made


def test_huggingface_files_arrive_verified_by_the_hub_etag(
    host: FileHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unet = random_bytes(2_000_000, seed=7)
    vae = random_bytes(300_000, seed=8)
    host.add("city96/FLUX-gguf/flux1-q4.gguf", unet)
    host.add("city96/FLUX-gguf/vae/ae.safetensors", vae)
    host.hf_redirect.add("city96/FLUX-gguf/vae/ae.safetensors")  # a CDN redirect
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    work = job(tmp_path, dest="unet")
    fetched = from_huggingface(
        work, "city96/FLUX-gguf", ["flux1-q4.gguf", "vae/ae.safetensors"], ""
    )
    root = tmp_path / "models"
    assert [f.path for f in fetched] == [
        root / "unet/flux1-q4.gguf",
        root / "unet/vae/ae.safetensors",
    ]
    assert fetched[0].path.read_bytes() == unet and fetched[1].path.read_bytes() == vae
    assert fetched[0].source_url == "hf://city96/FLUX-gguf/flux1-q4.gguf@main"
    assert work.progress[-1] == (2_300_000, 2_300_000)  # type: ignore[attr-defined]
    assert "Bearer hf_test_token" in host.auth  # HF_TOKEN honoured

    # Bytes that do not match the Hub's ETag (its SHA-256) are refused and removed.
    host.add("city96/FLUX-gguf/bad.gguf", random_bytes(1000, seed=9))
    host.wrong.add("city96/FLUX-gguf/bad.gguf")
    with pytest.raises(DownloadFailed, match=r"SHA-256 mismatch for bad\.gguf"):
        from_huggingface(job(tmp_path, dest="unet"), "city96/FLUX-gguf", ["bad.gguf"], "")
    assert not (root / "unet/bad.gguf").exists()
    with pytest.raises(DownloadFailed, match="has no file"):
        from_huggingface(job(tmp_path), "city96/FLUX-gguf", ["nope.gguf"], "")


def test_a_cancelled_huggingface_download_stops_in_its_thread(
    host: FileHost, tmp_path: Path
) -> None:
    # huggingface_hub reports every 10 MiB: the cancel is seen at the second report.
    host.add("org/big/model.gguf", random_bytes(13_000_000, seed=10))
    host.delay = 0.002  # a slow line
    work = job(tmp_path)
    work.on_progress = lambda done, total: work.cancelled.set()  # cancel at the first bytes
    with pytest.raises(Cancelled):
        from_huggingface(work, "org/big", ["model.gguf"], "")
    assert not (tmp_path / "models/model.gguf").exists()
    assert not list((tmp_path / "models").rglob("*.incomplete"))  # huggingface_hub's own


async def test_civitai_by_air_with_metadata_and_preview_beside_it(
    host: FileHost, tmp_path: Path
) -> None:
    data = random_bytes(500_000, seed=11)
    sha = host.add("castle.safetensors", data)
    civitai = FakeCivitai()
    try:
        civitai.version(sha, "Castle LoRA", model_id=77, version_id=7701)
        answer = civitai.versions[sha.upper()]
        answer["files"][0].update(
            name="castle_v2.safetensors", downloadUrl=f"{host.url}/redirect/castle.safetensors"
        )
        civitai.by_id[7701] = answer
        client = CivitaiClient(civitai.api, token="civitai-secret", interval=0)
        async with httpx.AsyncClient(follow_redirects=True) as http:
            work = job(tmp_path, dest="Lora")
            (fetched,) = await from_civitai(http, client, work, "urn:air:sdxl:lora:civitai:77@7701")
        await client.close()
        lora = tmp_path / "models/Lora"
        assert fetched.path == lora / "castle_v2.safetensors" and fetched.hashes.sha256 == sha
        assert json.loads((lora / "castle_v2.civitai.info").read_text())["id"] == 7701
        assert (lora / "castle_v2.preview.png").read_bytes().startswith(b"\x89PNG")
        assert "Bearer civitai-secret" in host.auth  # the token went with the download
        assert "secret" not in fetched.source_url
    finally:
        civitai.close()


async def test_civitai_unknown_version_and_bad_references(host: FileHost, tmp_path: Path) -> None:
    civitai = FakeCivitai()
    try:
        client = CivitaiClient(civitai.api, interval=0)
        async with httpx.AsyncClient() as http:
            with pytest.raises(DownloadFailed, match="Civitai has no model version 999"):
                await from_civitai(http, client, job(tmp_path), "999")
        await client.close()
    finally:
        civitai.close()
    assert civitai_version_id("urn:air:flux1:checkpoint:civitai:618692@691639") == 691639
    for bad in ("", "abc", "-3", "urn:air:sdxl:lora:huggingface:x@1"):
        with pytest.raises(InvalidArgument) as refused:
            civitai_version_id(bad)
        assert refused.value.field == "civitai.reference"


async def test_a_url_needs_a_file_name(host: FileHost, tmp_path: Path) -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(InvalidArgument, match="names no file"):
            await from_url(http, job(tmp_path), f"{host.url}/")
        host.add("a.bin", b"x" * 10)
        (fetched,) = await from_url(
            http, job(tmp_path, dest="other"), f"{host.url}/files/a.bin?x=1"
        )
    assert fetched.path == tmp_path / "models/other/a.bin" and fetched.source_url.endswith("/a.bin")
