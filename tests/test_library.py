"""The model library: hashes against independent computation, classification,
metadata precedence, scanning through the real coordinator, rescans, bad files."""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import blake3
import grpc
import numpy as np
import pytest
from safetensors.numpy import save_file

from stablequeue import Client
from stablequeue.v1 import models_pb2
from stablequeue_coordinator.library.hashing import hash_file
from stablequeue_coordinator.library.safetensors_header import HeaderError, read_header
from tests.conftest import CoordinatorThread, make_settings
from tests.fakes.forge import png
from tests.helpers import raises

SDXL_TENSORS = {
    "conditioner.embedders.1.model.ln_final.weight": np.ones(4, dtype=np.float32),
    "model.diffusion_model.input_blocks.0.0.weight": np.arange(300_000, dtype=np.float32),
    "first_stage_model.decoder.conv_in.weight": np.zeros(8, dtype=np.float32),
}
LORA_TENSORS = {
    "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": np.ones(
        (4, 8), dtype=np.float16
    ),
    "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": np.ones((8, 4), np.float16),
}


def independent_hashes(path: Path) -> dict[str, str]:
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return {
        "sha256": hashlib.sha256(data).hexdigest(),
        "autov1": (
            hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8] if len(data) >= 0x110000 else ""
        ),
        "autov3": hashlib.sha256(data[8 + length :]).hexdigest(),
        "blake3": blake3.blake3(data).hexdigest(),
    }


@pytest.fixture
def model_tree(tmp_path: Path) -> Path:
    """An A1111 + ComfyUI style model folder with sidecars, a preview and bad files."""
    root = tmp_path / "models"
    (root / "Stable-diffusion").mkdir(parents=True)
    (root / "Lora").mkdir()
    (root / "comfy" / "checkpoints").mkdir(parents=True)
    save_file(SDXL_TENSORS, str(root / "Stable-diffusion" / "sdxl_base.safetensors"),
              metadata={"modelspec.title": "SDXL Base"})  # fmt: skip
    # The same content under ComfyUI's folder: one model, two locations.
    (root / "comfy" / "checkpoints" / "copy_of_base.safetensors").write_bytes(
        (root / "Stable-diffusion" / "sdxl_base.safetensors").read_bytes()
    )
    lora = root / "Lora" / "detail_tweaker.safetensors"
    save_file(LORA_TENSORS, str(lora), metadata={
        "ss_base_model_version": "sd_v1", "ss_output_name": "detail-from-kohya",
        "modelspec.description": "from the safetensors metadata",
    })  # fmt: skip
    (root / "Lora" / "detail_tweaker.json").write_text(json.dumps(
        {"description": "from the Forge sidecar", "activation text": "detailed, sharp",
         "sd version": "SD1"}
    ))  # fmt: skip
    (root / "Lora" / "detail_tweaker.civitai.info").write_text(json.dumps(
        {"id": 222, "modelId": 111, "name": "v1.0", "baseModel": "SD 1.5",
         "description": "from civitai", "trainedWords": ["ignored: forge came first"],
         "model": {"name": "Detail Tweaker", "type": "LORA"}}
    ))  # fmt: skip
    (root / "Lora" / "detail_tweaker.preview.png").write_bytes(png((1, 2, 3), size=16))
    # Bad files: a header running past the end, a header that is not JSON, a dangling link.
    (root / "Lora" / "truncated.safetensors").write_bytes(struct.pack("<Q", 10_000) + b"{}")
    (root / "Lora" / "garbage.safetensors").write_bytes(struct.pack("<Q", 5) + b"nope!" + b"x" * 9)
    (root / "Lora" / "gone.safetensors").symlink_to(root / "nowhere.safetensors")
    (root / "Lora" / "loop").symlink_to(root, target_is_directory=True)  # a symlink loop
    (root / "notes.txt").write_text("not a model")
    return root


@pytest.fixture
def library_server(
    tmp_path: Path, model_tree: Path, database_url: str
) -> Iterator[CoordinatorThread]:
    settings = make_settings(tmp_path, database_url, model_roots=[model_tree], hash_workers=2)
    running = CoordinatorThread(settings)
    yield running
    running.close()


def scan(sq: Client, **kwargs: object) -> models_pb2.ScanProgress:
    updates = list(sq.stream("ScanLibrary", models_pb2.ScanLibraryRequest(**kwargs), "models"))
    assert updates[-1].done and not any(u.done for u in updates[:-1])
    return updates[-1]


def locate(sq: Client, reference: str) -> models_pb2.LocateModelResponse:
    return sq.call("LocateModel", models_pb2.LocateModelRequest(reference=reference), "models")


def test_hashes_match_independent_computation(model_tree: Path) -> None:
    for path in (model_tree / "Stable-diffusion" / "sdxl_base.safetensors",
                 model_tree / "Lora" / "detail_tweaker.safetensors"):  # fmt: skip
        expected = independent_hashes(path)
        got = hash_file(path, tensor_hash=True, blake3=True)
        assert (got.sha256, got.autov1, got.autov3, got.blake3) == (
            expected["sha256"], expected["autov1"], expected["autov3"], expected["blake3"]
        )  # fmt: skip
        assert got.autov2 == expected["sha256"][:10]
    big = model_tree / "Stable-diffusion" / "sdxl_base.safetensors"
    assert big.stat().st_size > 0x110000  # AutoV1 reads real bytes at 1 MiB
    # Too short for the bytes at 1 MiB: no AutoV1 (A1111 would give every such file
    # sha256("")[:8], so it identifies nothing).
    assert hash_file(model_tree / "Lora" / "detail_tweaker.safetensors").autov1 == ""


def test_the_tensor_hash_ignores_metadata_edits(tmp_path: Path) -> None:
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file(LORA_TENSORS, str(a), metadata={"note": "one"})
    save_file(LORA_TENSORS, str(b), metadata={"note": "a different, longer note"})
    ha, hb = hash_file(a, tensor_hash=True), hash_file(b, tensor_hash=True)
    assert ha.sha256 != hb.sha256 and ha.autov3 == hb.autov3


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\x01\x02", "too short"),
        (struct.pack("<Q", 10_000) + b"{}", "runs past the end"),
        (struct.pack("<Q", 2**40) + b"{}", "exceeds"),
        (struct.pack("<Q", 4) + b"nope", "not valid JSON"),
        (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
        (struct.pack("<Q", 44) + b'{"t":{"dtype":"F32","data_offsets":[0,999]}}', "invalid"),
    ],
)
def test_bad_headers_are_reported_with_the_reason(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(HeaderError, match=reason):
        read_header(path)


def test_scan_classifies_hashes_and_reads_metadata_in_order(
    library_server: CoordinatorThread, model_tree: Path
) -> None:
    with library_server.client() as sq:
        final = scan(sq)
        # The two broken headers are still hashed (people use such files); the dangling
        # link and the loop are errors only.
        assert (final.files_found, final.files_hashed) == (5, 5)
        errors = "\n".join(final.errors)
        for expected in ("truncated.safetensors: header length", "garbage.safetensors: header",
                         "gone.safetensors", "symlink loop"):  # fmt: skip
            assert expected in errors, errors

        base = locate(sq, "sdxl_base").model
        assert base.type == models_pb2.MODEL_TYPE_CHECKPOINT and base.base_model == "SDXL"
        assert base.name == "SDXL Base"  # modelspec.title
        assert sorted(loc.backend_name for loc in base.locations) == [
            "Stable-diffusion/sdxl_base.safetensors", "comfy/checkpoints/copy_of_base.safetensors"
        ]  # fmt: skip

        lora = locate(sq, "detail_tweaker").model
        assert lora.type == models_pb2.MODEL_TYPE_LORA
        # Forge sidecar first, then .civitai.info, then the safetensors metadata.
        assert lora.description == "from the Forge sidecar"
        assert list(lora.trained_words) == ["detailed", "sharp"]
        assert lora.base_model == "SD1"
        assert lora.name == "Detail Tweaker" and lora.version_name == "v1.0"
        assert (lora.civitai_model_id, lora.civitai_version_id) == (111, 222)
        assert lora.has_preview
        preview = sq.call(
            "GetModelPreview", models_pb2.GetModelPreviewRequest(id=lora.id), "models"
        )
        assert preview.mime == "image/png" and preview.data.startswith(b"\x89PNG")


def test_any_reference_resolves_to_the_same_model(
    library_server: CoordinatorThread, model_tree: Path
) -> None:
    path = model_tree / "Lora" / "detail_tweaker.safetensors"
    expected = independent_hashes(path)
    with library_server.client() as sq:
        scan(sq)
        for reference in (
            expected["sha256"], expected["sha256"].upper(), expected["sha256"][:10].upper(),
            expected["autov3"][:12].upper(), expected["autov3"],
            "detail_tweaker", "detail_tweaker.safetensors", "Lora/detail_tweaker.safetensors",
            "C:\\\\sd\\\\models\\\\Lora\\\\detail_tweaker.safetensors", str(path),
        ):  # fmt: skip
            assert locate(sq, reference).model.id == expected["sha256"], reference
        big = independent_hashes(model_tree / "Stable-diffusion" / "sdxl_base.safetensors")
        assert locate(sq, big["autov1"]).model.id == big["sha256"]
        with raises(grpc.StatusCode.NOT_FOUND, "no model matches 'nothing-like-it'"):
            locate(sq, "nothing-like-it")


def test_a_rescan_of_unchanged_files_hashes_nothing(
    library_server: CoordinatorThread, model_tree: Path
) -> None:
    with library_server.client() as sq:
        first = scan(sq)
        second = scan(sq)
        assert (second.files_hashed, second.files_cached) == (0, first.files_hashed)
        assert second.bytes_hashed == 0
        lora = model_tree / "Lora" / "detail_tweaker.safetensors"
        os.utime(lora, ns=(1, 1))  # touched: hashed again
        assert scan(sq).files_hashed == 1
        assert scan(sq, force_rehash=True).files_hashed == first.files_hashed
        (model_tree / "comfy" / "checkpoints" / "copy_of_base.safetensors").unlink()
        scan(sq)
        assert len(locate(sq, "sdxl_base").model.locations) == 1  # the gone copy is forgotten


def test_scan_refuses_roots_outside_the_configured_ones(
    library_server: CoordinatorThread, tmp_path: Path
) -> None:
    with (
        library_server.client() as sq,
        raises(grpc.StatusCode.INVALID_ARGUMENT, "roots:", "not inside a configured model root"),
    ):
        scan(sq, roots=[str(tmp_path)])


def test_list_and_search(library_server: CoordinatorThread) -> None:
    with library_server.client() as sq:
        scan(sq)
        request = models_pb2.ListModelsRequest(type=models_pb2.MODEL_TYPE_LORA)
        names = [m.name for m in sq.call("ListModels", request, "models").models]
        assert "Detail Tweaker" in names and "SDXL Base" not in names
        request = models_pb2.ListModelsRequest(base_model="sdxl")
        assert [m.name for m in sq.call("ListModels", request, "models").models] == ["SDXL Base"]
        found = sq.call("SearchModels", models_pb2.SearchModelsRequest(query="sharp"), "models")
        assert [m.name for m in found.models] == ["Detail Tweaker"]
        page = models_pb2.ListModelsRequest()
        page.page.page_size = 1
        first = sq.call("ListModels", page, "models")
        page.page.page_token = first.next_page_token
        second = sq.call("ListModels", page, "models")
        assert first.next_page_token and first.models[0].id != second.models[0].id


def sync(
    sq: Client, host: str, *files: models_pb2.InventoryFile
) -> models_pb2.SyncInventoryResponse:
    items = [models_pb2.InventoryItem(header=models_pb2.InventoryHeader(host=host))]
    items += [models_pb2.InventoryItem(file=f) for f in files]
    return sq.call("SyncInventory", iter(items), "models")  # a client stream


def test_inventory_sync_matches_by_hash_then_name_and_asks_for_the_rest(
    library_server: CoordinatorThread, model_tree: Path
) -> None:
    lora = independent_hashes(model_tree / "Lora" / "detail_tweaker.safetensors")
    with library_server.client() as sq:
        scan(sq)
        reply = sync(
            sq, "node-1",
            models_pb2.InventoryFile(path="D:\\loras\\renamed.safetensors", backend_name="renamed",
                                     hashes=models_pb2.ModelHashes(sha256=lora["sha256"].upper())),
            models_pb2.InventoryFile(path="/srv/ckpt/sdxl_base.safetensors"),
            models_pb2.InventoryFile(path="/srv/ckpt/mystery.safetensors"),
        )  # fmt: skip
        assert (reply.files_received, reply.models_matched) == (3, 2)
        # Matched by name only, or not at all: the sender should hash these.
        assert list(reply.needs_hash) == [
            "/srv/ckpt/mystery.safetensors", "/srv/ckpt/sdxl_base.safetensors"
        ]  # fmt: skip
        hosts = {loc.host: loc.backend_name for loc in locate(sq, "renamed").locations}
        assert hosts["node-1"] == "renamed" and "coordinator" in hosts
        assert "node-1" in {loc.host for loc in locate(sq, "sdxl_base").locations}

        sync(sq, "node-1", models_pb2.InventoryFile(path="/srv/ckpt/mystery.safetensors"))
        assert "node-1" not in {loc.host for loc in locate(sq, lora["sha256"]).locations}

        with raises(grpc.StatusCode.INVALID_ARGUMENT, "header: must come first"):
            only_a_file = models_pb2.InventoryItem(file=models_pb2.InventoryFile(path="x"))
            sq.call("SyncInventory", iter([only_a_file]), "models")
        with raises(grpc.StatusCode.INVALID_ARGUMENT, "file[0].hashes.sha256"):
            sync(sq, "node-1", models_pb2.InventoryFile(
                path="x", hashes=models_pb2.ModelHashes(sha256="zz")))  # fmt: skip


def test_sq_models_commands(
    capsys: pytest.CaptureFixture[str], library_server: CoordinatorThread, model_tree: Path
) -> None:
    from tests.test_cli import sq as run_sq

    code, out, _ = run_sq(capsys, library_server, "models", "scan", "--json")
    assert code == 1  # the tree holds broken files: reported, exit 1
    summary = json.loads(out)
    assert summary["done"] and summary["files_hashed"] == "5" and summary["errors"]  # int64
    code, out, _ = run_sq(capsys, library_server, "models", "list", "--type", "lora", "--json")
    assert code == 0 and "Detail Tweaker" in {m["name"] for m in json.loads(out)}
    code, out, _ = run_sq(capsys, library_server, "models", "show", "detail_tweaker", "--json")
    assert json.loads(out)["hashes"]["autov2"] == json.loads(out)["id"][:10]
    code, out, _ = run_sq(capsys, library_server, "models", "where", "sdxl_base", "--json")
    assert len(json.loads(out)) == 2
    assert run_sq(capsys, library_server, "models", "refresh", "sdxl_base")[0] == 0
    code, out, _ = run_sq(capsys, library_server, "models", "list", "--missing-metadata", "--json")
    assert "SDXL Base" in {m["name"] for m in json.loads(out)}
    copy = model_tree / "comfy" / "checkpoints" / "copy_of_base.safetensors"
    code, out, _ = run_sq(
        capsys, library_server, "models", "delete", "sdxl_base", "--path", str(copy)
    )
    assert code == 0 and "deleted" in out and not copy.exists()
    code, _, err = run_sq(capsys, library_server, "models", "show", "no-such-model")
    assert code == 1 and "NOT_FOUND: no model matches 'no-such-model'" in err


def test_incremental_sync_missing_metadata_and_delete(
    library_server: CoordinatorThread, model_tree: Path
) -> None:
    lora = independent_hashes(model_tree / "Lora" / "detail_tweaker.safetensors")
    with library_server.client() as sq:
        scan(sq)
        sync(sq, "node-1", models_pb2.InventoryFile(path="/a/sdxl_base.safetensors"))
        header = models_pb2.InventoryHeader(host="node-1", incremental=True)
        items = [
            models_pb2.InventoryItem(header=header),
            models_pb2.InventoryItem(file=models_pb2.InventoryFile(
                path="/a/new.safetensors", hashes=models_pb2.ModelHashes(sha256=lora["sha256"]))),
            models_pb2.InventoryItem(file=models_pb2.InventoryFile(
                path="/a/sdxl_base.safetensors", removed=True)),
        ]  # fmt: skip
        sq.call("SyncInventory", iter(items), "models")
        assert "node-1" not in {loc.host for loc in locate(sq, "sdxl_base").locations}
        assert "node-1" in {loc.host for loc in locate(sq, lora["sha256"]).locations}

        request = models_pb2.ListModelsRequest(missing_metadata=True)
        bare = {m.name for m in sq.call("ListModels", request, "models").models}
        assert "SDXL Base" in bare and "Detail Tweaker" not in bare

        copy = model_tree / "comfy" / "checkpoints" / "copy_of_base.safetensors"
        with raises(grpc.StatusCode.INVALID_ARGUMENT, "path: not a copy"):
            outside = models_pb2.DeleteModelRequest(id="sdxl_base", path="/etc/passwd")
            sq.call("DeleteModel", outside, "models")
        reply = sq.call(
            "DeleteModel", models_pb2.DeleteModelRequest(id="sdxl_base", path=str(copy)), "models"
        )
        assert list(reply.deleted_paths) == [str(copy)] and not copy.exists()
        assert (model_tree / "Stable-diffusion" / "sdxl_base.safetensors").exists()
        assert len(locate(sq, "sdxl_base").model.locations) == 1


def test_a_model_root_that_does_not_exist_is_reported_not_fatal(tmp_path: Path) -> None:
    missing = tmp_path / "not-there"
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'sq.db'}", model_roots=[missing])
    running = CoordinatorThread(settings)
    try:
        with running.client() as sq:
            final = scan(sq)
            assert final.files_found == 0
            assert list(final.errors) == [
                f"{missing}: model root does not exist or is not a folder"
            ]
    finally:
        running.close()


def test_an_inventory_report_refuses_each_bad_field_by_name() -> None:
    """SyncInventory's checks live in the library (library/inventory.py), not in
    the servicer: each refusal names the field."""
    from stablequeue_coordinator.errors import InvalidArgument
    from stablequeue_coordinator.library.inventory import InventoryReport

    def refused(steps: Callable[[InventoryReport], object], field: str) -> None:
        report = InventoryReport()
        with pytest.raises(InvalidArgument, match=re.escape(field)):
            steps(report)

    ok = ("/m/a.safetensors", "a.safetensors", "checkpoint", "", 10)
    refused(lambda r: r.add(*ok), "header: must come first")
    refused(lambda r: r.finish(), "header: required")
    refused(lambda r: r.header("bad host!", "forge", False), "header.host")
    refused(lambda r: (r.header("h", "", False), r.header("h", "", False)), "sent twice")
    refused(lambda r: (r.header("h", "", False), r.add("", "", "lora", "", 0)), "file[0].path")
    long_name = "y" * 2001
    refused(lambda r: (r.header("h", "", False), r.add(*ok), r.add("/x", long_name, "lora", "", 0)),
            "file[1].backend_name")  # fmt: skip
    refused(lambda r: (r.header("h", "", False), r.add("/x", "", "lora", "", 0, True)),
            "file[0].removed")  # fmt: skip
    refused(lambda r: (r.header("h", "", False), r.add("/x", "", "lora", "abc", 0)),
            "file[0].hashes.sha256")  # fmt: skip
    report = InventoryReport()
    report.header("gpu-1", "comfyui", True)
    report.add("/m/a.safetensors", "", "checkpoint", "0x" + "AB" * 32, -5)
    report.add("/m/gone.safetensors", "", "lora", "", 0, removed=True)
    report.finish()
    [entry] = report.entries
    assert (entry.backend_name, entry.sha256, entry.size_bytes) == (
        "/m/a.safetensors", "ab" * 32, 0,
    )  # fmt: skip
    assert report.removed == ["/m/gone.safetensors"] and report.app == "comfyui"
