"""Models fetched on the node that runs them: a job for a model whose `huggingface:`
files are missing waits in a downloading stage while the agent fetches them (one
download for two jobs), then runs there; a failed download fails the jobs behind it
with its reason; `sq download --node` fetches onto a node. Real agent, real
coordinator, the real huggingface_hub client against a loopback Hub."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from stablequeue import txt2img
from stablequeue.v1 import common_pb2, models_pb2, processes_pb2, queue_pb2
from tests.conftest import CoordinatorThread, make_settings
from tests.fakes.files import FileHost, random_bytes
from tests.helpers import final_job, raises, wait_until
from tests.test_agent_process import SERVER
from tests.test_agent_session import BEAT, ROOT, connected, nodes


@pytest.fixture
def coordinator(sqlite_server: CoordinatorThread) -> CoordinatorThread:
    return sqlite_server


@pytest.fixture
def host() -> Iterator[FileHost]:
    server = FileHost()
    yield server
    server.close()


def hf_model(key: str, repo: str, name: str) -> str:
    return (
        f"  {key}:\n    command: {sys.executable}\n"
        f'    args: ["{SERVER}", "--listen-port", "${{PORT}}", "--model", "./models/{name}"]\n'
        "    health_path: /sdapi/v1/options\n"
        f"    huggingface:\n      repo: {repo}\n"
        f"      files:\n        - path: {name}\n          dest: ./models/\n"
    )


def start_agent(tmp_path: Path, address: str, host: FileHost, models: str) -> subprocess.Popen[str]:
    work = tmp_path / "node"
    work.mkdir()
    (work / "models.yml").write_text("models:\n" + models)
    env = {**os.environ, "HF_ENDPOINT": host.url, "HF_HOME": str(tmp_path / "hf-home"),
           "HF_HUB_DISABLE_TELEMETRY": "1"}  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "stablequeue_agent.main", "--coordinator", address, "--config",
         str(work / "models.yml"), "--name", "gpu-d", "--work-dir", str(work / "state"),
         "--heartbeat", str(BEAT)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=(work / "agent.log").open("w"),
        text=True,
    )  # fmt: skip


def test_jobs_for_a_missing_model_wait_for_one_download_on_the_node(
    tmp_path: Path, coordinator: CoordinatorThread, host: FileHost
) -> None:
    # Over 10 MiB: huggingface_hub reports progress every 10 MiB.
    weights = random_bytes(24_000_000, seed=30)
    sha = host.add("city96/FLUX-gguf/flux1-q4.gguf", weights)
    host.delay = 0.004  # ~16 MB/s: the jobs see the download
    models = hf_model("flux", "city96/FLUX-gguf", "flux1-q4.gguf") + hf_model(
        "broken", "city96/FLUX-gguf", "gone.gguf"
    )
    agent = start_agent(tmp_path, coordinator.address, host, models)
    try:
        with coordinator.client() as sq:
            wait_until(lambda: connected(sq, "gpu-d"))
            (node,) = nodes(sq)
            missing = {m.key: list(m.missing_files) for m in node.info.models}
            assert missing == {"flux": ["models/flux1-q4.gguf"], "broken": ["models/gone.gguf"]}

            first = sq.submit(txt2img("a fox", model="flux", steps=2, app="sdcpp"))
            second = sq.submit(txt2img("a hare", model="flux", steps=2, app="sdcpp"))
            watched = list(sq.watch_job(first.id))
            events = [e.job for e in watched if e.type != queue_pb2.JOB_EVENT_TYPE_PROGRESS]
            downloading = [j for j in events if j.stage == queue_pb2.JOB_STAGE_DOWNLOADING_MODEL]
            assert downloading and "downloading flux's files on gpu-d" in downloading[0].reason
            # The bytes as they came, in progress events that say what is going on.
            assert any(0 < e.job.progress.fraction < 1
                       and e.job.stage == queue_pb2.JOB_STAGE_DOWNLOADING_MODEL
                       for e in watched)  # fmt: skip
            stages = [j.stage for j in events]
            assert stages.index(queue_pb2.JOB_STAGE_STARTING_MODEL) > stages.index(
                queue_pb2.JOB_STAGE_DOWNLOADING_MODEL
            )
            for job_id in (first.id, second.id):
                done = final_job(sq, job_id)
                assert (done.status, done.server) == (queue_pb2.JOB_STATUS_COMPLETED, "gpu-d:flux")
            # One download for both jobs, onto the node, verified by the Hub's ETag.
            assert [s for s in host.served if s[0].endswith("flux1-q4.gguf")] == [
                ("city96/FLUX-gguf/flux1-q4.gguf", 0, len(weights))
            ]
            assert (tmp_path / "node/models/flux1-q4.gguf").read_bytes() == weights
            wait_until(lambda: not nodes(sq)[0].info.models[0].missing_files)
            listed = sq.call("ListDownloads", models_pb2.ListDownloadsRequest(), "models")
            (download,) = [
                d for d in listed.downloads if d.state == models_pb2.DOWNLOAD_STATE_COMPLETED
            ]
            assert download.node == "gpu-d" and download.model_id == sha
            located = sq.call("LocateModel", models_pb2.LocateModelRequest(reference=sha), "models")
            assert [(loc.host, Path(loc.path).name) for loc in located.locations] == [
                ("gpu-d", "flux1-q4.gguf")
            ]

            # A failed download fails its job with the reason, and the job behind it too.
            broken = [sq.submit(txt2img("x", model="broken", steps=2, app="sdcpp")) for _ in "ab"]
            for job in broken:
                failed = final_job(sq, job.id)
                assert failed.status == queue_pb2.JOB_STATUS_FAILED
                assert "download of broken's files failed" in failed.reason
                assert "has no file gone.gguf" in failed.reason
            state = {p.model: p for p in nodes(sq)[0].processes}["broken"]
            assert state.state == processes_pb2.PROCESS_STATE_FAILED and "gone.gguf" in state.reason
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(15)


def test_sq_download_onto_a_node(
    tmp_path: Path, coordinator: CoordinatorThread, host: FileHost
) -> None:
    data = random_bytes(700_000, seed=31)
    sha = host.add("upscaler.pth", data)
    agent = start_agent(tmp_path, coordinator.address, host,
                        hf_model("flux", "city96/FLUX-gguf", "flux1-q4.gguf"))  # fmt: skip
    try:
        with coordinator.client() as sq:
            wait_until(lambda: connected(sq, "gpu-d"))
            request = models_pb2.StartDownloadRequest(
                url=models_pb2.UrlSource(url=f"{host.url}/files/upscaler.pth"),
                dest="ESRGAN", sha256=sha, node="gpu-d",
            )  # fmt: skip
            begun = sq.call("StartDownload", request, "models").download
            assert begun.node == "gpu-d"
            watched = list(sq.stream("WatchDownload", models_pb2.WatchDownloadRequest(id=begun.id),
                                     "models"))  # fmt: skip
            final = watched[-1]
            assert final.state == models_pb2.DOWNLOAD_STATE_COMPLETED, final.error
            assert final.dest_path == str(tmp_path / "node/ESRGAN/upscaler.pth")
            assert (tmp_path / "node/ESRGAN/upscaler.pth").read_bytes() == data
            located = sq.call("LocateModel", models_pb2.LocateModelRequest(reference=sha), "models")
            assert [loc.host for loc in located.locations] == ["gpu-d"]
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(15)


def test_a_library_model_is_sent_to_a_node_over_grpc(tmp_path: Path, host: FileHost) -> None:
    models = tmp_path / "library"
    models.mkdir()
    data = random_bytes(5_000_000, seed=32)
    (models / "juggernaut.ckpt").write_bytes(data)
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'lib.db'}", model_roots=[models])
    coordinator = CoordinatorThread(settings)
    agent = start_agent(tmp_path, coordinator.address, host,
                        hf_model("flux", "city96/FLUX-gguf", "flux1-q4.gguf"))  # fmt: skip
    try:
        with coordinator.client() as sq:
            list(sq.stream("ScanLibrary", models_pb2.ScanLibraryRequest(), "models"))
            # Read from an offset: the rest of the file, in chunks.
            tail = sq.stream("ReadModelFile", models_pb2.ReadModelFileRequest(
                sha256=hashlib.sha256(data).hexdigest(), offset=4_000_000), "models")  # fmt: skip
            assert b"".join(c.data for c in tail) == data[4_000_000:]
            with raises(grpc.StatusCode.INVALID_ARGUMENT, "node: a library model is sent to"):
                library = models_pb2.LibrarySource(reference="juggernaut")
                sq.call("StartDownload", models_pb2.StartDownloadRequest(library=library), "models")

            wait_until(lambda: connected(sq, "gpu-d"))
            request = models_pb2.StartDownloadRequest(
                library=models_pb2.LibrarySource(reference="juggernaut"), node="gpu-d",
                dest="checkpoints",
            )  # fmt: skip
            begun = sq.call("StartDownload", request, "models").download
            assert begun.bytes_total == len(data)
            final = list(sq.stream("WatchDownload", models_pb2.WatchDownloadRequest(id=begun.id),
                                   "models"))[-1]  # fmt: skip
            assert final.state == models_pb2.DOWNLOAD_STATE_COMPLETED, final.error
            assert (tmp_path / "node/checkpoints/juggernaut.ckpt").read_bytes() == data
            located = sq.call("LocateModel", models_pb2.LocateModelRequest(reference="juggernaut"),
                              "models")  # fmt: skip
            assert sorted(loc.host for loc in located.locations) == ["coordinator", "gpu-d"]
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(15)
        coordinator.close()


def file_model(key: str, name: str) -> str:
    """A models.yml entry whose server is given a model file by path (no source)."""
    return (
        f"  {key}:\n    command: {sys.executable}\n"
        f'    args: ["{SERVER}", "--listen-port", "${{PORT}}", "--model", "./models/{name}"]\n'
        "    health_path: /sdapi/v1/options\n"
    )


def test_a_node_gets_the_files_its_models_name_from_the_library(
    tmp_path: Path, host: FileHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakes.civitai import FakeCivitai

    library = tmp_path / "library"
    library.mkdir()
    juggernaut = random_bytes(3_000_000, seed=33)
    (library / "juggernaut.ckpt").write_bytes(juggernaut)
    # A model seen only on a Forge laptop (its inventory) and known to Civitai.
    castle = random_bytes(1_000_000, seed=34)
    castle_sha = host.add("castle.ckpt", castle)
    civitai = FakeCivitai()
    version = civitai.version(castle_sha, "Castle", model_id=77, version_id=7701)
    version["files"][0].update(name="castle.ckpt", downloadUrl=f"{host.url}/redirect/castle.ckpt")
    civitai.by_id[7701] = version
    monkeypatch.setenv("SQ_CIVITAI_URL", civitai.api)  # the agent's Civitai, like ours
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'lib.db'}", model_roots=[library],
                             civitai_url=civitai.api, civitai_interval=0)  # fmt: skip
    coordinator = CoordinatorThread(settings)
    models = (file_model("jug", "juggernaut.ckpt") + file_model("castle", "castle.ckpt")
              + file_model("nothing", "unknown.ckpt"))  # fmt: skip
    agent = start_agent(tmp_path, coordinator.address, host, models)
    try:
        with coordinator.client() as sq:
            list(sq.stream("ScanLibrary", models_pb2.ScanLibraryRequest(), "models"))
            laptop = [
                models_pb2.InventoryItem(header=models_pb2.InventoryHeader(
                    host="forge-laptop", app=common_pb2.APP_KIND_FORGE)),
                models_pb2.InventoryItem(file=models_pb2.InventoryFile(
                    path="C:\\sd\\models\\Stable-diffusion\\castle.ckpt",
                    backend_name="castle.ckpt [" + castle_sha[:10] + "]",
                    size_bytes=len(castle), hashes=models_pb2.ModelHashes(sha256=castle_sha))),
            ]  # fmt: skip
            sq.models.SyncInventory(iter(laptop))
            refresh = models_pb2.RefreshMetadataRequest(id=castle_sha, fetch_civitai=True)
            assert sq.call("RefreshMetadata", refresh, "models").model.civitai_version_id == 7701
            wait_until(lambda: connected(sq, "gpu-d"))
            needed = {m.key: list(m.needed_files) for m in nodes(sq)[0].info.models}
            assert needed == {"jug": ["models/juggernaut.ckpt"], "castle": ["models/castle.ckpt"],
                              "nothing": ["models/unknown.ckpt"]}  # fmt: skip

            # From the coordinator's own copy, once for two jobs.
            jobs = [sq.submit(txt2img(p, model="jug", steps=2, app="sdcpp")) for p in "ab"]
            stages = [e.job.stage for e in sq.watch_job(jobs[0].id)]
            assert queue_pb2.JOB_STAGE_DOWNLOADING_MODEL in stages
            for job in jobs:
                done = final_job(sq, job.id)
                assert (done.status, done.server) == (queue_pb2.JOB_STATUS_COMPLETED, "gpu-d:jug")
            assert (tmp_path / "node/models/juggernaut.ckpt").read_bytes() == juggernaut
            listed = sq.call("ListDownloads", models_pb2.ListDownloadsRequest(), "models").downloads
            assert [d.source for d in listed] == [
                f"library:{hashlib.sha256(juggernaut).hexdigest()}"
            ]

            # From the Civitai origin the library recorded.
            done = final_job(sq, sq.submit(txt2img("c", model="castle", steps=2, app="sdcpp")).id)
            assert done.status == queue_pb2.JOB_STATUS_COMPLETED, done.reason
            assert (tmp_path / "node/models/castle.ckpt").read_bytes() == castle

            # No source at all: the job fails and says why.
            failed = final_job(sq, sq.submit(txt2img("n", model="nothing", app="sdcpp")).id)
            assert failed.status == queue_pb2.JOB_STATUS_FAILED
            assert "knows no file named unknown.ckpt" in failed.reason
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(15)
        coordinator.close()
        civitai.close()
