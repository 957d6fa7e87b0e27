"""Civitai enrichment against a loopback fake: fills empty fields, previews, 404 remembered,
429 backed off, requests spaced, no network at all, the token never shown."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from google.protobuf.json_format import MessageToJson
from safetensors.numpy import save_file

from stablequeue import Client
from stablequeue.v1 import models_pb2
from tests.conftest import CoordinatorThread, make_settings
from tests.fakes.civitai import FakeCivitai

INTERVAL = 0.2


@pytest.fixture
def civitai() -> Iterator[FakeCivitai]:
    fake = FakeCivitai()
    yield fake
    fake.close()


@pytest.fixture
def models(tmp_path: Path) -> Path:
    root = tmp_path / "models" / "Stable-diffusion"
    root.mkdir(parents=True)
    for name, value in (("castle", 1.0), ("unknown", 2.0)):
        save_file({"model.diffusion_model.w": np.full(64, value, np.float32)},
                  str(root / f"{name}.safetensors"))  # fmt: skip
    return root.parent


def coordinator(tmp_path: Path, models: Path, url: str, token: str = "") -> CoordinatorThread:
    # SQLite only: what is tested here is the Civitai client, not the store.
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'sq.db'}", model_roots=[models],
        civitai_url=url, civitai_token=token, civitai_interval=INTERVAL,
    )  # fmt: skip
    return CoordinatorThread(settings)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def scan(sq: Client, fetch: bool = True) -> models_pb2.ScanProgress:
    request = models_pb2.ScanLibraryRequest(fetch_civitai=fetch)
    return list(sq.stream("ScanLibrary", request, "models"))[-1]


def get(sq: Client, ref: str) -> models_pb2.Model:
    return sq.call("GetModel", models_pb2.GetModelRequest(id=ref), "models").model


def refresh(sq: Client, ref: str) -> models_pb2.Model:
    request = models_pb2.RefreshMetadataRequest(id=ref, fetch_civitai=True)
    return sq.call("RefreshMetadata", request, "models").model


def test_scan_enriches_from_civitai_and_remembers_404(
    tmp_path: Path, models: Path, civitai: FakeCivitai
) -> None:
    castle = sha(models / "Stable-diffusion" / "castle.safetensors")
    civitai.version(castle, "Castle Maker", model_id=77, version_id=88)
    token = "civitai-" + secrets.token_hex(8)
    running = coordinator(tmp_path, models, civitai.api, token)
    try:
        with running.client() as sq:
            final = scan(sq)
            assert final.done and not final.errors, final.errors
            model = get(sq, castle)
            assert (model.name, model.base_model, model.version_name) == (
                "Castle Maker", "SDXL 1.0", "v2.0"
            )  # fmt: skip
            assert list(model.trained_words) == ["castle", "moat"]
            assert (model.civitai_model_id, model.civitai_version_id) == (77, 88)
            assert model.source_url == "https://civitai.com/models/77?modelVersionId=88"
            assert model.has_preview
            preview = sq.call(
                "GetModelPreview", models_pb2.GetModelPreviewRequest(id=castle), "models"
            )
            assert preview.mime == "image/png" and preview.data.startswith(b"\x89PNG")

            lookups = [r for r in civitai.requests if "by-hash" in r[1]]
            assert len(lookups) == 2 and {r[2] for r in lookups} == {f"Bearer {token}"}
            assert lookups[1][0] - lookups[0][0] >= INTERVAL * 0.9  # spaced
            assert token not in MessageToJson(model)

            unknown = sha(models / "Stable-diffusion" / "unknown.safetensors")
            before = len(civitai.requests)
            assert refresh(sq, unknown).name == "unknown"  # its 404 is remembered:
            assert len(civitai.requests) == before  # Civitai is not asked again
    finally:
        running.close()


def test_429_is_backed_off_and_retried(tmp_path: Path, models: Path, civitai: FakeCivitai) -> None:
    castle = sha(models / "Stable-diffusion" / "castle.safetensors")
    civitai.version(castle, "Castle Maker", model_id=77, version_id=88)
    running = coordinator(tmp_path, models, civitai.api)
    try:
        with running.client() as sq:
            scan(sq, fetch=False)
            civitai.busy = 1
            assert refresh(sq, castle).name == "Castle Maker"
            lookups = [r for r in civitai.requests if "by-hash" in r[1]]
            assert len(lookups) == 2 and lookups[1][0] - lookups[0][0] >= 0.9  # backed off
    finally:
        running.close()


def test_no_network_at_all_is_reported_and_harmless(tmp_path: Path, models: Path) -> None:
    running = coordinator(tmp_path, models, "http://127.0.0.1:9/api/v1")  # nothing listens
    try:
        with running.client() as sq:
            final = scan(sq)
            assert final.files_hashed == 2
            errors = "\n".join(final.errors)
            assert "Civitai is unreachable" in errors and "look-ups stopped" in errors
            assert get(sq, "castle").name == "castle"
            castle = get(sq, "castle").id
            assert refresh(sq, castle).id == castle  # refresh still works, without Civitai
    finally:
        running.close()
