"""Downloads through the Models service of a real coordinator: progress while they run,
the model registered when done, bad requests named, cancel, wrong bytes, Hugging Face,
and a coordinator killed mid-download that resumes where it was."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from stablequeue import Client
from stablequeue.v1 import models_pb2
from tests.conftest import CoordinatorThread, make_settings
from tests.fakes.files import FileHost, random_bytes
from tests.helpers import kill_all, raises, wait_until
from tests.test_durability import CoordinatorProcess

DONE = models_pb2.DOWNLOAD_STATE_COMPLETED


@pytest.fixture
def host() -> Iterator[FileHost]:
    server = FileHost()
    yield server
    server.close()


@pytest.fixture
def coordinator(tmp_path: Path, database_url: str) -> Iterator[CoordinatorThread]:
    (tmp_path / "models").mkdir()
    settings = make_settings(tmp_path, database_url, model_roots=[tmp_path / "models"])
    running = CoordinatorThread(settings)
    yield running
    running.close()


def start(sq: Client, **fields: object) -> models_pb2.Download:
    request = models_pb2.StartDownloadRequest(**fields)  # type: ignore[arg-type]
    return sq.call("StartDownload", request, "models").download


def watch(sq: Client, download_id: str) -> list[models_pb2.Download]:
    request = models_pb2.WatchDownloadRequest(id=download_id)
    return list(sq.stream("WatchDownload", request, "models"))


def test_a_url_download_shows_progress_and_registers_the_model(
    coordinator: CoordinatorThread, host: FileHost, tmp_path: Path
) -> None:
    data = random_bytes(6_000_000, seed=20)
    sha = host.add("dreamshaper_8.ckpt", data)
    host.delay = 0.015  # ~4 MB/s: long enough to watch
    with coordinator.client() as sq:
        url = models_pb2.UrlSource(url=f"{host.url}/files/dreamshaper_8.ckpt")
        begun = start(sq, url=url, dest="Stable-diffusion", sha256=sha)
        assert begun.state in (
            models_pb2.DOWNLOAD_STATE_QUEUED,
            models_pb2.DOWNLOAD_STATE_DOWNLOADING,
        )
        events = watch(sq, begun.id)
        final = events[-1]
        assert final.state == DONE, final.error
        moving = [e for e in events if e.state == models_pb2.DOWNLOAD_STATE_DOWNLOADING]
        assert len(moving) >= 3 and any(
            e.bytes_per_second > 0 and e.eta_seconds > 0 for e in moving
        )
        assert [e.bytes_done for e in moving] == sorted(e.bytes_done for e in moving)
        assert (final.bytes_done, final.bytes_total) == (len(data), len(data))
        target = tmp_path / "models/Stable-diffusion/dreamshaper_8.ckpt"
        assert final.dest_path == str(target) and target.read_bytes() == data
        assert final.model_id == sha
        model = sq.call("GetModel", models_pb2.GetModelRequest(id=sha[:10]), "models").model
        assert model.hashes.sha256 == sha and model.source_url.endswith("/dreamshaper_8.ckpt")
        listed = sq.call("ListDownloads", models_pb2.ListDownloadsRequest(states=[DONE]), "models")
        assert [d.id for d in listed.downloads] == [begun.id]
        assert (
            sq.call(
                "GetDownload", models_pb2.GetDownloadRequest(id=begun.id), "models"
            ).download.state
            == DONE
        )


def test_bad_requests_name_the_field(coordinator: CoordinatorThread, host: FileHost) -> None:
    url = models_pb2.UrlSource(url=f"{host.url}/files/a.bin")
    with coordinator.client() as sq:
        for fields, fragment in [
            ({}, "source: one of huggingface, url, civitai or library is required"),
            ({"url": url, "dest": "../../etc"}, "dest: '../../etc' must not contain '..'"),
            ({"url": url, "dest": "/etc"}, "dest: /etc/a.bin is outside the model roots"),
            ({"url": url, "sha256": "abc"}, "sha256: must be 64 hexadecimal digits"),
            ({"url": models_pb2.UrlSource(url="ftp://x/a.bin")}, "url.url: must be an http"),
            ({"civitai": models_pb2.CivitaiSource(reference="nope")}, "civitai.reference:"),
            ({"huggingface": models_pb2.HuggingFaceSource(repo="a/b")}, "huggingface.files:"),
            ({"huggingface": models_pb2.HuggingFaceSource(repo="a/b", files=["../x"])},
             "name: '../x' is not a plain file name"),
        ]:  # fmt: skip
            with raises(grpc.StatusCode.INVALID_ARGUMENT, fragment):
                start(sq, **fields)
        with raises(grpc.StatusCode.NOT_FOUND, "no node named 'gpu-9'"):
            start(sq, url=url, node="gpu-9")
        with raises(grpc.StatusCode.NOT_FOUND, "no download 'missing'"):
            sq.call("GetDownload", models_pb2.GetDownloadRequest(id="missing"), "models")


def test_cancel_leaves_nothing_and_wrong_bytes_fail_with_both_hashes(
    coordinator: CoordinatorThread, host: FileHost, tmp_path: Path
) -> None:
    host.add("slow.bin", random_bytes(8_000_000, seed=21))
    host.delay = 0.01
    models = tmp_path / "models"
    with coordinator.client() as sq:
        begun = start(sq, url=models_pb2.UrlSource(url=f"{host.url}/files/slow.bin"))
        wait_until(lambda: sq.call("GetDownload", models_pb2.GetDownloadRequest(id=begun.id),
                                   "models").download.bytes_done > 0)  # fmt: skip
        cancelled = sq.call(
            "CancelDownload", models_pb2.CancelDownloadRequest(id=begun.id), "models"
        )
        assert cancelled.download.state == models_pb2.DOWNLOAD_STATE_CANCELLED
        assert list(models.rglob("*")) == []

        host.delay = 0
        sha = host.add("lie.bin", random_bytes(100_000, seed=22))
        host.wrong.add("lie.bin")
        begun = start(sq, url=models_pb2.UrlSource(url=f"{host.url}/files/lie.bin"), sha256=sha)
        final = watch(sq, begun.id)[-1]
        assert final.state == models_pb2.DOWNLOAD_STATE_FAILED
        assert f"expected {sha}, got " in final.error and "deleted" in final.error
        assert list(models.rglob("*")) == []


def test_huggingface_through_the_service(
    coordinator: CoordinatorThread, host: FileHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", host.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    data = random_bytes(1_500_000, seed=23)
    sha = host.add("stabilityai/sdxl-vae/sdxl_vae.safetensors", data)
    with coordinator.client() as sq:
        begun = start(sq, huggingface=models_pb2.HuggingFaceSource(
            repo="stabilityai/sdxl-vae", files=["sdxl_vae.safetensors"]), dest="VAE")  # fmt: skip
        final = watch(sq, begun.id)[-1]
        assert final.state == DONE, final.error
        assert (
            final.model_id == sha
            and final.source == "hf://stabilityai/sdxl-vae sdxl_vae.safetensors"
        )
    assert (tmp_path / "models/VAE/sdxl_vae.safetensors").read_bytes() == data


def test_a_coordinator_killed_mid_download_resumes_it(
    tmp_path: Path, host: FileHost, database_url: str
) -> None:
    data = random_bytes(12_000_000, seed=24)
    sha = host.add("big.ckpt", data)
    host.delay = 0.01  # ~6 MB/s
    models = tmp_path / "models"
    models.mkdir()
    first = CoordinatorProcess(tmp_path / "data", database_url, "--model-root", str(models))
    second = None
    try:
        with Client(first.address) as sq:
            begun = start(sq, url=models_pb2.UrlSource(url=f"{host.url}/files/big.ckpt"),
                          sha256=sha)  # fmt: skip
            get = models_pb2.GetDownloadRequest(id=begun.id)
            wait_until(
                lambda: sq.call("GetDownload", get, "models").download.bytes_done > 3_000_000
            )
        first.kill()
        assert list(models.glob("*.incomplete"))  # the partial file stayed
        host.delay = 0
        second = CoordinatorProcess(tmp_path / "data", database_url, "--model-root", str(models))
        with Client(second.address) as sq:
            final = watch(sq, begun.id)[-1]
            assert final.state == DONE, final.error
        assert (models / "big.ckpt").read_bytes() == data
        # The second coordinator asked only for the rest of the file.
        (_, second_try) = [s for s in host.served if s[0] == "big.ckpt"]
        assert second_try[1] > 0 and second_try[1] + second_try[2] == len(data)
        assert list(models.glob("*.incomplete")) == []
    finally:
        kill_all(first.proc, second.proc if second else None)


def test_sq_download_commands(
    capsys: pytest.CaptureFixture[str], coordinator: CoordinatorThread, host: FileHost,
    tmp_path: Path,
) -> None:  # fmt: skip
    import json

    from tests.test_cli import sq as run_sq

    sha = host.add("detail.ckpt", random_bytes(300_000, seed=25))
    code, out, _ = run_sq(capsys, coordinator, "download", "url",
                          f"{host.url}/files/detail.ckpt", "--dest", "Lora",
                          "--sha256", sha)  # fmt: skip
    assert code == 0 and "downloaded" in out and "Lora/detail.ckpt" in out
    code, out, _ = run_sq(capsys, coordinator, "downloads", "--json")
    (listed,) = json.loads(out)
    assert listed["state"] == "DOWNLOAD_STATE_COMPLETED" and listed["model_id"] == sha
    code, out, _ = run_sq(capsys, coordinator, "downloads", "--state", "completed")
    assert code == 0 and listed["id"][:12] in out
    code, _, err = run_sq(capsys, coordinator, "download", "civitai", "not-a-version")
    assert code == 1 and "civitai.reference" in err

    host.add("slow.bin", random_bytes(4_000_000, seed=26))
    host.delay = 0.02
    code, out, _ = run_sq(capsys, coordinator, "download", "url", f"{host.url}/files/slow.bin",
                          "--no-wait")  # fmt: skip
    download_id = out.strip()
    code, out, _ = run_sq(capsys, coordinator, "download", "cancel", download_id[:8])
    assert code == 0 and "cancelled" in out
    assert not list((tmp_path / "models").glob("slow.bin*"))


def test_a_password_in_a_download_url_is_used_but_never_shown(
    coordinator: CoordinatorThread, host: FileHost, caplog: pytest.LogCaptureFixture
) -> None:
    """`http://user:pass@host/...`: the password authenticates the download, and is
    replaced by *** wherever the URL is shown (the Download any submit key reads, logs)."""
    import base64

    host.add("secret.safetensors", random_bytes(1000, seed=3))
    port = host.url.rsplit(":", 1)[1]
    url = f"http://me:s3cret@127.0.0.1:{port}/files/secret.safetensors?token=t0ken"
    with coordinator.client() as sq:
        begun = start(sq, url=models_pb2.UrlSource(url=url), dest="Lora")
        assert begun.source == f"http://me:***@127.0.0.1:{port}/files/secret.safetensors"
        assert watch(sq, begun.id)[-1].state == DONE
        listed = sq.call("ListDownloads", models_pb2.ListDownloadsRequest(), "models")
    assert "Basic " + base64.b64encode(b"me:s3cret").decode() in host.auth
    for text in (str(begun), str(listed), caplog.text):
        assert "s3cret" not in text and "t0ken" not in text
