"""The model and location records: scan results stored, references resolved,
pages of models read. Functions of an open session; the library runs them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, or_
from sqlmodel import Session, col, select

from stablequeue.v1 import models_pb2
from stablequeue_coordinator.common import utcnow
from stablequeue_coordinator.library.classify import EXTENSIONS
from stablequeue_coordinator.library.scanner import Examined
from stablequeue_coordinator.store.tables import LocationRow, ModelRow

LOCAL_HOST = "coordinator"  # locations under the coordinator's own --model-root folders
# Who reported a location. Each source replaces only its own rows of a host; the
# library's view of the host is their union.
SOURCE_PROBE = "probe"  # a registered server's health probe
SOURCE_SYNC = "sync"  # SyncInventory: an in-app extension or an agent
SOURCE_SCAN = "scan"  # the coordinator's scan of its own model roots
SOURCE_DOWNLOAD = "download"  # a file a node downloaded, hashed by its agent
HEX = re.compile(r"^[0-9a-f]+$")
TYPES = {
    "checkpoint": models_pb2.MODEL_TYPE_CHECKPOINT,
    "diffusion_model": models_pb2.MODEL_TYPE_DIFFUSION_MODEL,
    "lora": models_pb2.MODEL_TYPE_LORA,
    "vae": models_pb2.MODEL_TYPE_VAE,
    "text_encoder": models_pb2.MODEL_TYPE_TEXT_ENCODER,
    "embedding": models_pb2.MODEL_TYPE_EMBEDDING,
    "upscaler": models_pb2.MODEL_TYPE_UPSCALER,
    "controlnet": models_pb2.MODEL_TYPE_CONTROLNET,
    "other": models_pb2.MODEL_TYPE_OTHER,
}
TYPE_NAMES = {v: k for k, v in TYPES.items()}


# Page tokens past the hashed models: the file names listed so far.
UNHASHED_TOKEN = "\x1ffiles\n"  # a control character no name starts with (never NUL)


@dataclass(frozen=True)
class Placement:
    """Where a model is: its SHA-256 ("" if unknown) and host -> the backend's name for it."""

    sha256: str
    hosts: dict[str, str]


def name_key(path: str) -> str:
    """Lower-case file name without folders or model-file extension (either separator);
    Forge titles' " [hash]" suffix is dropped too."""
    base = re.split(r"[\\/]", path.strip())[-1].split(" [", 1)[0]
    stem, dot, ext = base.rpartition(".")
    return (stem if dot and f".{ext.lower()}" in EXTENSIONS else base).lower()


def local_cache(session: Session, roots: list[Path]) -> dict[str, tuple[int, int]]:
    rows = session.exec(
        select(LocationRow.path, LocationRow.size_bytes, LocationRow.mtime_ns).where(
            LocationRow.host == LOCAL_HOST, LocationRow.source == SOURCE_SCAN, LocationRow.verified
        )
    )
    return {path: (size, mtime) for path, size, mtime in rows}


def forget_missing(session: Session, roots: list[Path], seen: set[str]) -> None:
    """Drops local locations under `roots` whose files are gone (the models stay)."""
    rows = session.exec(
        select(LocationRow.id, LocationRow.path).where(
            LocationRow.host == LOCAL_HOST, LocationRow.source == SOURCE_SCAN
        )
    )
    gone = [
        row_id
        for row_id, path in rows
        if path not in seen and any(Path(path).is_relative_to(r) for r in roots)
    ]
    for start in range(0, len(gone), 500):
        session.execute(
            delete(LocationRow).where(col(LocationRow.id).in_(gone[start : start + 500]))
        )


def store_examined(session: Session, examined: list[Examined]) -> None:
    """Upserts the models (filling only empty fields) and their local locations."""
    now = utcnow()
    shas = {e.hashes.sha256 for e in examined}
    models = {
        m.sha256: m for m in session.exec(select(ModelRow).where(col(ModelRow.sha256).in_(shas)))
    }
    paths = [str(e.found.path) for e in examined]
    locations = {
        loc.path: loc
        for loc in session.exec(
            select(LocationRow).where(
                LocationRow.host == LOCAL_HOST,
                LocationRow.source == SOURCE_SCAN,
                col(LocationRow.path).in_(paths),
            )
        )
    }
    for e in examined:
        fresh = model_fields(e)
        model = models.get(e.hashes.sha256)
        if model is None:
            model = ModelRow(sha256=e.hashes.sha256, created_at=now, updated_at=now, **fresh)
            models[model.sha256] = model
        else:
            for key, value in fresh.items():
                if value and getattr(model, key) in ("", 0, "[]", None):
                    setattr(model, key, value)
            model.updated_at = now
        session.add(model)
        loc = locations.get(str(e.found.path)) or LocationRow(
            host=LOCAL_HOST, source=SOURCE_SCAN, path=str(e.found.path), seen_at=now
        )
        loc.backend_name = str(e.found.relative)
        loc.type = e.type
        loc.name_key = name_key(e.found.path.name)
        loc.sha256 = e.hashes.sha256
        loc.verified = True
        loc.size_bytes = e.found.size
        loc.mtime_ns = e.found.mtime_ns
        loc.seen_at = now
        session.add(loc)


def model_fields(e: Examined) -> dict[str, Any]:
    info = e.info
    return {
        "autov2": e.hashes.autov2,
        "autov1": e.hashes.autov1,
        "autov3": e.hashes.autov3,
        "blake3": e.hashes.blake3,
        "name": info.name or e.found.path.stem,
        "type": e.type,
        "base_model": e.base_model,
        "size_bytes": e.found.size,
        "description": info.description,
        "trained_words": json.dumps(info.trained_words) if info.trained_words else "[]",
        "tags": json.dumps(info.tags) if info.tags else "[]",
        "civitai_model_id": info.civitai_model_id,
        "civitai_version_id": info.civitai_version_id,
        "version_name": info.version_name,
        "source_url": info.source_url,
        "preview_url": info.preview_url,
        "preview_path": str(e.preview) if e.preview else "",
    }


def chunks(values: Iterable[str], size: int = 500) -> Iterable[list[str]]:
    """`values` in lists of at most `size`, for IN (...) clauses."""
    items = list(values)
    for start in range(0, len(items), size):
        yield items[start : start + size]


def placement_of(session: Session, reference: str) -> Placement:
    model = resolve_reference(session, reference)
    key = name_key(reference)
    condition = LocationRow.name_key == key
    if model is not None:
        unknown_content = col(LocationRow.sha256).is_(None)
        condition = or_(
            LocationRow.sha256 == model.sha256, (LocationRow.name_key == key) & unknown_content
        )
    hosts: dict[str, str] = {}
    for host, backend_name in session.exec(
        select(LocationRow.host, LocationRow.backend_name).where(
            condition, LocationRow.host != LOCAL_HOST
        )
    ):
        hosts.setdefault(host, backend_name)
    return Placement(model.sha256 if model else "", hosts)


def resolve_reference(session: Session, reference: str) -> ModelRow | None:
    ref = reference.strip()
    low = ref.lower().removeprefix("0x")
    if HEX.match(low) and len(low) >= 8:
        column = {64: ModelRow.sha256, 10: ModelRow.autov2, 8: ModelRow.autov1}.get(len(low))
        candidates = []
        if column is not None:
            candidates.append(column == low)
        if len(low) == 64:
            candidates += [ModelRow.autov3 == low, ModelRow.blake3 == low]
        if len(low) == 12:  # Civitai AutoV3 / A1111 LoRA hash
            candidates.append(col(ModelRow.autov3).startswith(low))
        if candidates:
            found = session.exec(select(ModelRow).where(or_(*candidates)).limit(1)).first()
            if found is not None:
                return found
    key = name_key(ref)
    shas = session.exec(
        select(LocationRow.sha256, func.count())
        .where(LocationRow.name_key == key, col(LocationRow.sha256).is_not(None))
        .group_by(LocationRow.sha256)
        .order_by(func.count().desc())
    ).all()
    if shas:
        return session.get(ModelRow, shas[0][0])
    return session.exec(select(ModelRow).where(func.lower(ModelRow.name) == ref.lower())).first()


def unhashed_page(
    session: Session, filters: tuple[str, str, str], after: str, size: int
) -> tuple[list[tuple[ModelRow, list[LocationRow]]], str]:
    """A page of files no source has hashed, by file name after `after`; filtered by
    (type, host, text) as `ModelLibrary.list` is."""
    type_name, host, text = filters
    stmt = select(LocationRow.name_key).where(col(LocationRow.sha256).is_(None))
    if type_name:
        stmt = stmt.where(LocationRow.type == type_name)
    if host:
        stmt = stmt.where(LocationRow.host == host)
    if text:
        stmt = stmt.where(col(LocationRow.name_key).like(f"%{text.lower()}%"))
    if after:
        stmt = stmt.where(LocationRow.name_key > after)
    keys = list(session.exec(stmt.distinct().order_by(LocationRow.name_key).limit(size + 1)))
    more = len(keys) > size
    keys = keys[:size]
    return unhashed(session, keys), UNHASHED_TOKEN + keys[-1] if more else ""


def unhashed(session: Session, keys: list[str]) -> list[tuple[ModelRow, list[LocationRow]]]:
    """Files no source has hashed, one entry per file name (`keys`, in that order): a
    model row that is not stored (sha256 ""), and its files on every host."""
    by_key: dict[str, list[LocationRow]] = {}
    for chunk in chunks(keys):
        for loc in session.exec(
            select(LocationRow)
            .where(col(LocationRow.name_key).in_(chunk), col(LocationRow.sha256).is_(None))
            .order_by(LocationRow.host, LocationRow.path, col(LocationRow.seen_at).desc())
        ):
            same = by_key.setdefault(loc.name_key, [])
            if not any((o.host, o.path) == (loc.host, loc.path) for o in same):
                same.append(loc)
    found = []
    for key in keys:
        where = by_key.get(key)
        if where:
            size = max(loc.size_bytes for loc in where)
            seen = max(loc.seen_at for loc in where)
            row = ModelRow(sha256="", autov2="", name=key, type=where[0].type,
                           size_bytes=size, created_at=seen, updated_at=seen)  # fmt: skip
            found.append((row, where))
    return found


def locations_of(session: Session, shas: list[str]) -> dict[str, list[LocationRow]]:
    """Each model's files, one per file on a host whichever sources reported it: rows of
    the same path, or of the same API name (a probe's relative name for the file an
    extension reported by its full path), are one file; a verified row is shown before
    a presumed one, a reported path before a probe's name."""
    found: dict[str, list[LocationRow]] = {sha: [] for sha in shas}
    if shas:
        seen: set[tuple[str, str]] = set()
        for loc in session.exec(
            select(LocationRow)
            .where(col(LocationRow.sha256).in_(shas))
            .order_by(
                LocationRow.host,
                col(LocationRow.verified).desc(),
                LocationRow.source == "probe",
                col(LocationRow.seen_at).desc(),
            )
        ):
            keys = {(loc.host, "path", loc.path), (loc.host, "name", loc.backend_name or loc.path)}
            if not keys & seen:
                found[str(loc.sha256)].append(loc)
            seen |= keys
        for where in found.values():
            where.sort(key=lambda loc: (loc.host, loc.path))
    return found
