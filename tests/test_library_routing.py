"""Jobs go only where their model and LoRAs are, under the name each server uses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from stablequeue import Client, txt2img, workflow
from stablequeue.v1 import common_pb2, models_pb2, processes_pb2, queue_pb2
from tests.conftest import CoordinatorThread, make_settings
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.forge import CHECKPOINTS, FakeForge
from tests.helpers import final_job, raises, register_server, wait_until

SDXL_SHA = str(CHECKPOINTS[0]["sha256"])


@pytest.fixture
def forge() -> Iterator[FakeForge]:
    fake = FakeForge()  # a "Windows" Forge: C:\\sd\\models\\... paths, knows the SHA-256
    yield fake
    fake.close()


@pytest.fixture
def comfy() -> Iterator[FakeComfyUI]:
    fake = FakeComfyUI()  # a "Linux" ComfyUI: relative names, no hashes
    fake.checkpoints = ["SDXL/sd_xl_base_1.0.safetensors"]
    yield fake
    fake.close()


def both(server: CoordinatorThread, sq: Client, forge: FakeForge, comfy: FakeComfyUI) -> None:
    register_server(sq, "win-forge", "forge", forge.url)
    register_server(sq, "linux-comfy", "comfyui", comfy.url)
    wait_until(lambda: {"win-forge", "linux-comfy"} <= server.coordinator.library.inventoried)


def test_one_file_on_two_servers_is_one_model_with_two_locations(
    server: CoordinatorThread, sq: Client, forge: FakeForge, comfy: FakeComfyUI
) -> None:
    both(server, sq, forge, comfy)
    located = sq.call(
        "LocateModel", models_pb2.LocateModelRequest(reference="31E35C80FC"), "models"
    )
    assert located.model.id == SDXL_SHA
    assert {(loc.host, loc.path, loc.backend_name) for loc in located.locations} == {
        ("win-forge", "C:\\sd\\models\\Stable-diffusion\\sd_xl_base_1.0.safetensors",
         "sd_xl_base_1.0.safetensors [31e35c80fc]"),
        ("linux-comfy", "SDXL/sd_xl_base_1.0.safetensors", "SDXL/sd_xl_base_1.0.safetensors"),
    }  # fmt: skip
    for host, name in (("win-forge", "sd_xl_base_1.0.safetensors [31e35c80fc]"),
                       ("linux-comfy", "SDXL/sd_xl_base_1.0.safetensors")):  # fmt: skip
        request = models_pb2.ResolveModelRequest(reference="sd_xl_base_1.0", host=host)
        assert sq.call("ResolveModel", request, "models").backend_name == name


def test_a_removed_server_is_no_longer_a_place_its_models_are(
    server: CoordinatorThread, sq: Client, forge: FakeForge, comfy: FakeComfyUI
) -> None:
    both(server, sq, forge, comfy)
    sq.call("RemoveServer", processes_pb2.RemoveServerRequest(alias="win-forge"), "processes")
    located = sq.call("LocateModel", models_pb2.LocateModelRequest(reference=SDXL_SHA), "models")
    assert [loc.host for loc in located.locations] == ["linux-comfy"]
    assert "win-forge" not in server.coordinator.library.inventoried


@pytest.mark.parametrize(
    ("paused", "runs_on"), [("linux-comfy", "win-forge"), ("win-forge", "linux-comfy")]
)
def test_a_job_for_it_runs_on_either_server_under_that_servers_name(
    server: CoordinatorThread,
    sq: Client,
    forge: FakeForge,
    comfy: FakeComfyUI,
    paused: str,
    runs_on: str,
) -> None:
    both(server, sq, forge, comfy)
    sq.pause(server=paused)
    done = final_job(sq, sq.submit(txt2img("a castle", model="31e35c80fc", steps=2)).id)
    assert (done.status, done.server) == (queue_pb2.JOB_STATUS_COMPLETED, runs_on), done.reason
    assert done.model_sha256 == SDXL_SHA  # the model version it ran with
    if runs_on == "win-forge":
        body = forge.requests[-1][1]
        assert body["override_settings"]["sd_model_checkpoint"] == (
            "sd_xl_base_1.0.safetensors [31e35c80fc]"
        )
    else:
        graph = comfy.prompts[-1]["prompt"]
        loader = next(n for n in graph.values() if n["class_type"] == "CheckpointLoaderSimple")
        assert loader["inputs"]["ckpt_name"] == "SDXL/sd_xl_base_1.0.safetensors"


def test_jobs_go_only_where_the_model_and_loras_are(
    server: CoordinatorThread, sq: Client, forge: FakeForge, comfy: FakeComfyUI
) -> None:
    both(server, sq, forge, comfy)
    # v1-5 is only on Forge; the ink LoRA only on ComfyUI; detail only on Forge.
    only_forge = sq.submit(txt2img("a", model="v1-5-pruned-emaonly", steps=2))
    only_comfy = sq.submit(txt2img("b", model="sd_xl_base_1.0", loras=[("ink", 0.5)], steps=2))
    nowhere = sq.submit(txt2img("c", model="sd_xl_base_1.0", loras=[("ink", 1), ("detail", 1)]))
    assert final_job(sq, only_forge.id).server == "win-forge"
    assert final_job(sq, only_comfy.id).server == "linux-comfy"
    wait_until(lambda: "does not have" in sq.get_job(nowhere.id).reason)
    assert sq.get_job(nowhere.id).status == queue_pb2.JOB_STATUS_PENDING
    with raises(grpc.StatusCode.FAILED_PRECONDITION, "model 'sd3_medium' is not on any server"):
        sq.submit(txt2img("d", model="sd3_medium"))


def test_a_workflow_listing_its_files_runs_where_they_are_under_that_servers_names(
    server: CoordinatorThread, sq: Client, forge: FakeForge, comfy: FakeComfyUI
) -> None:
    elsewhere = FakeComfyUI()
    elsewhere.checkpoints = ["other.safetensors"]
    try:
        both(server, sq, forge, comfy)
        register_server(sq, "bare-comfy", "comfyui", elsewhere.url)
        wait_until(lambda: "bare-comfy" in server.coordinator.library.inventoried)
        # As sent from a ComfyUI where the checkpoint sits at the top of its folder.
        graph = {
            "4": {"class_type": "CheckpointLoaderSimple",
                  "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
            "1": {"class_type": "EmptyImage",
                  "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 255}},
            "3": {"class_type": "SaveImage",
                  "inputs": {"images": ["1", 0], "filename_prefix": "w"}},
        }  # fmt: skip
        spec = workflow(graph)
        spec.models.add(folder="checkpoints", name="sd_xl_base_1.0.safetensors", sha256=SDXL_SHA)
        done = final_job(sq, sq.submit(spec).id)
        assert (done.status, done.server) == (queue_pb2.JOB_STATUS_COMPLETED, "linux-comfy")
        sent = comfy.prompts[-1]["prompt"]["4"]["inputs"]["ckpt_name"]
        assert sent == "SDXL/sd_xl_base_1.0.safetensors"  # that server's own name
        assert elsewhere.prompts == []

        # A file no server has: the job waits, each server saying what it lacks.
        spec = workflow(graph)
        spec.models.add(folder="checkpoints", name="sd_xl_base_1.0.safetensors", sha256=SDXL_SHA)
        spec.models.add(folder="loras", name="mystery.safetensors", sha256="ab" * 32)
        waiting = sq.submit(spec)
        wait_until(lambda: "does not have" in sq.get_job(waiting.id).reason)
        assert "mystery.safetensors" in sq.get_job(waiting.id).reason
        assert sq.get_job(waiting.id).status == queue_pb2.JOB_STATUS_PENDING

        with raises(grpc.StatusCode.INVALID_ARGUMENT, "spec.models[0].sha256"):
            bad = workflow(graph)
            bad.models.add(name="x.safetensors", sha256="123")
            sq.submit(bad)
        with raises(grpc.StatusCode.INVALID_ARGUMENT, "spec.models"):
            params = txt2img("a")
            params.models.add(name="x.safetensors", sha256=SDXL_SHA)
            sq.submit(params)
    finally:
        elsewhere.close()


def test_probe_and_extension_each_own_their_part_of_a_hosts_inventory(
    tmp_path: Path, database_url: str, forge: FakeForge
) -> None:
    """A probe lists checkpoints and LoRAs by name (one unhashed); the extension sends
    the same files hashed plus a VAE and an embedding. Round after round, whichever
    came last, the union stands: every hash, the VAE, the embedding."""
    running = CoordinatorThread(make_settings(tmp_path, database_url, health_interval=0.05))
    sd15 = "b" * 64
    forge_files = {
        str(CHECKPOINTS[1]["filename"]): (models_pb2.MODEL_TYPE_CHECKPOINT, sd15),
        "C:\\sd\\models\\VAE\\kl-f8.safetensors": (models_pb2.MODEL_TYPE_VAE, "c" * 64),
        "C:\\sd\\embeddings\\easyneg.pt": (models_pb2.MODEL_TYPE_EMBEDDING, "d" * 64),
        "C:\\sd\\models\\Lora\\detail.safetensors": (models_pb2.MODEL_TYPE_LORA, "e" * 64),
    }
    files = [
        models_pb2.InventoryFile(
            path=path,
            backend_name=path.rsplit("\\", 1)[1],
            type=kind,
            size_bytes=4096,
            hashes=models_pb2.ModelHashes(sha256=sha),
        )
        for path, (kind, sha) in forge_files.items()
    ]
    try:
        with running.client() as sq:
            register_server(sq, "forge-1", "forge", forge.url)
            for _ in range(15):
                sq.sync_inventory("forge-1", common_pb2.APP_KIND_FORGE, files)
                for _ in range(2):  # the next probe, whichever way the race goes
                    seen = forge.model_lists
                    wait_until(lambda seen=seen: forge.model_lists > seen)
                for path, (_, sha) in forge_files.items():
                    where = sq.call("LocateModel", models_pb2.LocateModelRequest(reference=sha),
                                    "models")  # fmt: skip
                    assert ("forge-1", path) in {(loc.host, loc.path) for loc in where.locations}
                    assert where.model.size_bytes == 4096
                # The probe's own file (hashed by Forge) is there too, under its title.
                request = models_pb2.ResolveModelRequest(reference=SDXL_SHA, host="forge-1")
                assert sq.call("ResolveModel", request, "models").backend_name == str(
                    CHECKPOINTS[0]["title"]
                )
                # The probe's unhashed row of the SD1.5 file took the extension's hash:
                # one location, under the name Forge's API selects it by.
                where = sq.call(
                    "LocateModel", models_pb2.LocateModelRequest(reference=sd15), "models"
                )
                assert [loc.host for loc in where.locations] == ["forge-1"]
    finally:
        running.close()
