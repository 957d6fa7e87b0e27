"""The model library: scans, the model and location records, and resolving references.

One model per SHA-256; every file with that content, on any host, is a location.
A reference a person types — a hash of any kind, a name with or without
extension and folder, a path — resolves to one model.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePath
from typing import Any

from sqlalchemy import delete, func, or_
from sqlmodel import Session, col, select

from stablequeue.v1 import common_pb2, models_pb2
from stablequeue_coordinator.backends.base import InventoryEntry
from stablequeue_coordinator.common import timestamp, utcnow
from stablequeue_coordinator.errors import FailedPrecondition, InvalidArgument, NotFound
from stablequeue_coordinator.kinds import KIND_TO_PB
from stablequeue_coordinator.library import metadata
from stablequeue_coordinator.library.civitai import CivitaiClient, CivitaiUnavailable
from stablequeue_coordinator.library.classify import EXTENSIONS
from stablequeue_coordinator.library.hashing import SAFETENSORS_SUFFIXES, FileHashes
from stablequeue_coordinator.library.metadata import ModelInfo
from stablequeue_coordinator.library.safetensors_header import HeaderError, read_header
from stablequeue_coordinator.library.scanner import Examined, Found, examine, walk
from stablequeue_coordinator.outputs.store import mime_of
from stablequeue_coordinator.store.db import Database
from stablequeue_coordinator.store.tables import LocationRow, ModelRow

log = logging.getLogger(__name__)
LOCAL_HOST = "coordinator"  # locations under the coordinator's own --model-root folders
# Who reported a location. Each source replaces only its own rows of a host; the
# library's view of the host is their union.
SOURCE_PROBE = "probe"  # a registered server's health probe
SOURCE_SYNC = "sync"  # SyncInventory: an in-app extension or an agent
SOURCE_SCAN = "scan"  # the coordinator's scan of its own model roots
SOURCE_DOWNLOAD = "download"  # a file a node downloaded, hashed by its agent
PROGRESS_EVERY_S = 0.25
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


class ModelLibrary:
    """Args:
    db: the store.
    roots: the coordinator's model folders (`--model-root`).
    workers: files hashed at once (0 = CPU count).
    """

    def __init__(
        self,
        db: Database,
        roots: Iterable[Path],
        workers: int = 0,
        civitai: CivitaiClient | None = None,
        previews_dir: Path | None = None,
    ) -> None:
        self._db = db
        self._civitai = civitai
        self._previews_dir = previews_dir
        self.roots = [Path(r).resolve() for r in roots]
        self._workers = workers or os.cpu_count() or 1
        self._scanning = asyncio.Lock()
        # Bumped whenever locations change; keys the host look-up cache.
        self.version = 0
        self.inventoried: set[str] = set()  # hosts that reported an inventory
        self.lora_hosts: set[str] = set()  # ... with LoRAs in it
        self._lora_sources: dict[str, set[str]] = {}  # host -> sources that listed LoRAs
        self._hosts_cache: dict[tuple[int, str], Placement] = {}
        self._listeners: list[Callable[[], None]] = []

    def on_change(self, listener: Callable[[], None]) -> None:
        """Calls `listener()` whenever model locations changed (a job waiting for a file
        may now have a place to run)."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        self.version += 1
        for listener in self._listeners:
            listener()

    # ---- scanning ---------------------------------------------------------

    async def scan(
        self, roots: list[str] | None = None, force: bool = False, fetch_civitai: bool = False
    ) -> AsyncIterator[models_pb2.ScanProgress]:
        """Scans `roots` (default: all configured), yielding progress; the last has done=True.
        With `fetch_civitai`, models hashed in this scan are then looked up on Civitai.

        Raises:
            InvalidArgument: a root that is not one of the configured model roots.
        """
        chosen = self._chosen_roots(roots)
        async with self._scanning:  # one scan at a time; a second caller waits its turn
            progress = models_pb2.ScanProgress()
            found, errors = await asyncio.to_thread(walk, chosen)
            progress.files_found = len(found)
            progress.errors.extend(errors)
            cache = await self._db.run(lambda s: _local_cache(s, chosen))
            todo = []
            for f in found:
                cached = cache.get(str(f.path))
                if not force and cached == (f.size, f.mtime_ns):
                    progress.files_cached += 1
                else:
                    todo.append(f)
            progress.bytes_total = sum(f.size for f in todo)
            yield _copy(progress)
            hashed: list[str] = []
            async for update in self._hash_all(todo, progress, hashed):
                yield update
            await self._db.run(lambda s: _forget_missing(s, chosen, {str(f.path) for f in found}))
            self._changed()
            if fetch_civitai:
                async for update in self._enrich(sorted(set(hashed)), progress):
                    yield update
            progress.done = True
            progress.current_path = ""
            yield progress

    def _chosen_roots(self, roots: list[str] | None) -> list[Path]:
        if not roots:
            return self.roots
        chosen = []
        for root in roots:
            resolved = Path(root).resolve()
            if not any(resolved == r or resolved.is_relative_to(r) for r in self.roots):
                raise InvalidArgument(
                    "roots", f"{root!r} is not inside a configured model root (--model-root)"
                )
            chosen.append(resolved)
        return chosen

    async def _enrich(
        self, shas: list[str], progress: models_pb2.ScanProgress
    ) -> AsyncIterator[models_pb2.ScanProgress]:
        """Civitai look-ups for freshly hashed models; stops at the first outage."""
        for sha in shas:
            progress.current_path = f"civitai: {sha[:10]}"
            _, _, errors = await self.refresh(sha, fetch_civitai=True)
            civitai_errors = [e for e in errors if e.startswith("civitai")]
            progress.errors.extend(civitai_errors)
            yield _copy(progress)
            if any("unreachable" in e or "kept answering" in e for e in civitai_errors):
                progress.errors.append("civitai: look-ups stopped for this scan")
                return

    async def _hash_all(
        self, todo: list[Found], progress: models_pb2.ScanProgress, hashed: list[str]
    ) -> AsyncIterator[models_pb2.ScanProgress]:
        loop = asyncio.get_running_loop()
        read = [0]

        def count(n: int) -> None:
            read[0] += n  # approximate under threads; only for the progress bar

        pending: set[asyncio.Future[Examined | str]] = set()
        batch: list[Examined] = []
        last = time.monotonic()
        with ThreadPoolExecutor(self._workers, thread_name_prefix="sq-hash") as pool:
            queue = list(reversed(todo))
            while queue or pending:
                while queue and len(pending) < self._workers:
                    f = queue.pop()
                    progress.current_path = str(f.path)
                    pending.add(loop.run_in_executor(pool, lambda f=f: examine(f, on_bytes=count)))
                done, pending = await asyncio.wait(
                    pending, timeout=PROGRESS_EVERY_S, return_when=asyncio.FIRST_COMPLETED
                )
                for future in done:
                    result = future.result()
                    if isinstance(result, str):
                        progress.errors.append(result)
                        continue
                    progress.files_hashed += 1
                    progress.errors.extend(result.errors)
                    batch.append(result)
                    hashed.append(result.hashes.sha256)
                progress.bytes_hashed = read[0]
                if len(batch) >= 100 or (batch and not pending and not queue):
                    rows, batch = batch, []
                    await self._db.run(lambda s, rows=rows: _store(s, rows))
                if time.monotonic() - last >= PROGRESS_EVERY_S or done:
                    last = time.monotonic()
                    yield _copy(progress)

    def root_of(self, path: Path) -> Path | None:
        """The configured model root `path` lies in (None: outside them all)."""
        resolved = path.resolve()
        return next((r for r in self.roots if resolved.is_relative_to(r)), None)

    async def register(self, path: Path, hashes: FileHashes) -> tuple[ModelRow, list[str]]:
        """Records a file that just arrived in a model root (a download) with the hashes
        computed as it was written: only its header and sidecars are read. Returns the
        model and any problems with the file (a bad header: still recorded).

        Raises:
            InvalidArgument: the file is not inside a model root.
        """

        def read() -> Examined | str:
            root = self.root_of(path)
            if root is None:
                return f"{path} is not inside a model root"
            fst = path.stat()
            found = Found(root, path.resolve(), fst.st_size, fst.st_mtime_ns)
            return examine(found, hashes=hashes)

        examined = await asyncio.to_thread(read)
        if isinstance(examined, str):
            raise InvalidArgument("path", examined)
        await self._db.run(lambda s: _store(s, [examined]))
        self._changed()
        model, _ = await self.get(hashes.sha256)
        return model, examined.errors

    async def register_remote(self, host: str, path: str, hashes: FileHashes, size: int) -> None:
        """Records a file that arrived on another host (a node's download), by the hashes
        its agent computed: a location of the model, created if new."""
        now = utcnow()
        name = PurePath(path.replace("\\", "/")).name

        def store(session: Session) -> None:
            model = session.get(ModelRow, hashes.sha256)
            if model is None:
                model = ModelRow(
                    sha256=hashes.sha256, autov2=hashes.autov2, autov1=hashes.autov1,
                    autov3=hashes.autov3, blake3=hashes.blake3, name=name.rsplit(".", 1)[0],
                    size_bytes=size, created_at=now, updated_at=now,
                )  # fmt: skip
                session.add(model)
            location = session.exec(
                select(LocationRow).where(
                    LocationRow.host == host,
                    LocationRow.source == SOURCE_DOWNLOAD,
                    LocationRow.path == path,
                )
            ).first() or LocationRow(host=host, source=SOURCE_DOWNLOAD, path=path, seen_at=now)
            location.backend_name = name
            location.name_key = name_key(name)
            location.sha256 = hashes.sha256
            location.verified = True
            location.size_bytes = size
            location.seen_at = now
            session.add(location)

        await self._db.run(store)
        self._changed()

    async def local_file(self, reference: str) -> tuple[ModelRow, Path]:
        """A readable copy of the model in the coordinator's model roots.

        Raises:
            NotFound: no such model, or no copy of it here.
        """
        model, locations = await self.get(reference)

        def first_present() -> Path | None:
            for loc in locations:
                path = Path(loc.path)
                if loc.host == LOCAL_HOST and self.root_of(path) is not None and path.is_file():
                    return path
            return None

        path = await asyncio.to_thread(first_present)
        if path is None:
            raise NotFound(f"model {model.name!r} has no file on the coordinator")
        return model, path

    async def delete_files(self, reference: str, path: str = "") -> list[str]:
        """Deletes the model's files under the coordinator's model roots (one copy when
        `path` is given) and forgets those locations; the model record stays.

        Raises:
            NotFound: no such model, or no such copy of it here.
            InvalidArgument: `path` is not a copy of this model under a model root.
        """
        model, locations = await self.get(reference)
        local = [loc for loc in locations if loc.host == LOCAL_HOST]
        if path:
            local = [loc for loc in local if loc.path == path]
            if not local:
                raise InvalidArgument("path", f"not a copy of {model.name!r} on the coordinator")
        if not local:
            raise NotFound(f"model {model.name!r} has no files on the coordinator")
        deleted = []
        for loc in local:
            target = await asyncio.to_thread(Path(loc.path).resolve)
            if not any(target.is_relative_to(root) for root in self.roots):
                raise InvalidArgument("path", f"{loc.path} is outside the model roots")
            try:
                await asyncio.to_thread(target.unlink)
            except FileNotFoundError:
                pass  # already gone: forget it all the same
            except OSError as e:
                raise InvalidArgument("path", f"{loc.path}: {e.strerror}") from e
            deleted.append(loc.path)
        ids = [loc.id for loc in local]
        await self._db.run(
            lambda s: s.execute(delete(LocationRow).where(col(LocationRow.id).in_(ids)))
        )
        self._changed()
        return deleted

    async def close(self) -> None:
        if self._civitai is not None:
            await self._civitai.close()

    # ---- metadata -----------------------------------------------------------

    async def refresh(
        self, reference: str, fetch_civitai: bool
    ) -> tuple[ModelRow, list[LocationRow], list[str]]:
        """Re-reads the sidecars and metadata of the model's local files and, if asked,
        Civitai; fills only empty fields. Returns the model, its locations and problems.

        Raises:
            NotFound: no model matches `reference`.
        """
        model, locations = await self.get(reference)
        if not model.sha256:
            raise FailedPrecondition(
                f"{reference!r}: only its file name is known; no source has hashed it yet"
            )
        errors: list[str] = []
        info = ModelInfo()
        preview = ""
        for loc in locations:
            if loc.host == LOCAL_HOST:
                local, found = await asyncio.to_thread(_read_local, Path(loc.path), errors)
                info.fill(local)
                preview = preview or found
        status, checked = model.civitai_status, model.civitai_checked_at
        if fetch_civitai:
            status, checked = await self._ask_civitai(model, info, errors)
        if not (model.preview_path or preview) and info.preview_url:
            preview = await self._download_preview(model.sha256, info.preview_url, errors)

        def store(session: Session) -> ModelRow:
            row = session.get(ModelRow, model.sha256)
            if row is None:
                raise NotFound(f"model {model.sha256} was removed meanwhile")
            _fill(row, info, preview)
            row.civitai_status, row.civitai_checked_at = status, checked
            row.updated_at = utcnow()
            session.add(row)
            return row

        row = await self._db.run(store)
        return row, locations, errors

    async def _ask_civitai(
        self, model: ModelRow, info: ModelInfo, errors: list[str]
    ) -> tuple[str, datetime | None]:
        """Fills `info` from Civitai; returns the status to store. A 404 is remembered
        ("missing") and not asked again."""
        if self._civitai is None:
            errors.append("civitai: not configured")
            return model.civitai_status, model.civitai_checked_at
        if model.civitai_status == "missing":
            return model.civitai_status, model.civitai_checked_at
        try:
            data = await self._civitai.version_by_hash(model.sha256)
        except CivitaiUnavailable as e:
            errors.append(f"civitai: {e}")
            return model.civitai_status, model.civitai_checked_at
        if data is None:
            return "missing", utcnow()
        info.fill(metadata.from_civitai(data))
        return "found", utcnow()

    async def _download_preview(self, sha256: str, url: str, errors: list[str]) -> str:
        if self._civitai is None or self._previews_dir is None:
            return ""
        try:
            data = await self._civitai.download(url)
        except CivitaiUnavailable as e:
            errors.append(f"civitai preview: {e}")
            return ""
        ext = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}.get(mime_of(data))
        if ext is None:
            errors.append("civitai preview: not a PNG, JPEG or WebP image")
            return ""
        path = self._previews_dir / f"{sha256}.{ext}"
        await asyncio.to_thread(_write_file, path, data)
        return str(path)

    # ---- server inventories -----------------------------------------------

    async def replace_inventory(
        self,
        host: str,
        app: str,
        entries: Iterable[InventoryEntry],
        incremental: bool = False,
        removed: Iterable[str] = (),
        source: str = SOURCE_PROBE,
    ) -> None:
        """Makes `entries` the complete list of model files `source` reports on `host` —
        or, when `incremental`, adds them and drops the `removed` paths. What other
        sources reported on the host stays."""
        items = list(entries)
        gone = set(removed)
        report = _Report(host, source, app, items, incremental, gone)
        if await self._db.run(lambda s: _replace_inventory(s, report)):
            self._changed()
        self.inventoried.add(host)
        sources = self._lora_sources.setdefault(host, set())
        if any(item.type == "lora" for item in items):
            sources.add(source)
        elif not incremental:
            sources.discard(source)
        if sources:
            self.lora_hosts.add(host)
        else:
            self.lora_hosts.discard(host)

    async def forget_host(self, host: str) -> None:
        """Drops every location on `host` (a server that was removed); models stay."""

        def forget(session: Session) -> int:
            return session.exec(delete(LocationRow).where(LocationRow.host == host)).rowcount  # type: ignore[call-overload]

        if await self._db.run(forget):
            self._changed()
        self.inventoried.discard(host)
        self.lora_hosts.discard(host)
        self._lora_sources.pop(host, None)

    async def sync_inventory(
        self,
        host: str,
        app: str,
        entries: list[InventoryEntry],
        incremental: bool = False,
        removed: Iterable[str] = (),
    ) -> tuple[int, list[str]]:
        """An extension's or agent's snapshot: the host's "sync" part (a probe's part
        stays); returns how many of its files matched a known model and the paths the
        sender should hash (content unknown, or only presumed from the file name)."""
        await self.replace_inventory(host, app, entries, incremental, removed, SOURCE_SYNC)

        def read(session: Session) -> tuple[int, list[str]]:
            rows = session.exec(
                select(LocationRow.path, LocationRow.sha256, LocationRow.verified).where(
                    LocationRow.host == host, LocationRow.source == SOURCE_SYNC
                )
            )
            matched, unverified = 0, []
            for path, sha, verified in rows:
                matched += bool(sha)
                if not verified:  # unknown, or only matched by name
                    unverified.append(path)
            return matched, sorted(unverified)

        return await self._db.run(read)

    async def hosts_for(self, reference: str) -> Placement | None:
        """Where the model `reference` names is: its SHA-256 when known, and host -> the
        exact name that host's backend uses. None when no host reported an inventory."""
        if not self.inventoried:
            return None
        key = (self.version, reference)
        if key not in self._hosts_cache:
            if len(self._hosts_cache) > 10_000:
                self._hosts_cache.clear()
            self._hosts_cache[key] = await self._db.run(lambda s: _hosts_for(s, reference))
        return self._hosts_cache[key]

    # ---- reading ----------------------------------------------------------

    async def resolve(self, reference: str) -> ModelRow | None:
        """The model `reference` names (any hash, a name or a path), or None."""
        return await self._db.run(lambda s: _resolve(s, reference))

    async def get(self, reference: str) -> tuple[ModelRow, list[LocationRow]]:
        """Raises: NotFound."""

        def read(session: Session) -> tuple[ModelRow, list[LocationRow]]:
            model = _resolve(session, reference)
            if model is not None:
                return model, _locations(session, [model.sha256])[model.sha256]
            files = _unhashed(session, [name_key(reference)])
            if files:
                return files[0]
            raise NotFound(f"no model matches {reference!r}")

        return await self._db.run(read)

    async def list(
        self, type_name: str = "", base_model: str = "", host: str = "", text: str = "",
        page_size: int = 50, page_token: str = "", missing_metadata: bool = False,
    ) -> tuple[list[tuple[ModelRow, list[LocationRow]]], str]:  # fmt: skip
        """Models by name (then id), filtered; a cursor token for the next page. After
        the models come files no source has hashed (one entry per file name, id "")
        unless the filter asks for what only a hash gives (a base model)."""

        def read(session: Session) -> tuple[list[tuple[ModelRow, list[LocationRow]]], str]:
            if page_token.startswith(UNHASHED_TOKEN):
                after = page_token.removeprefix(UNHASHED_TOKEN)
                return _unhashed_page(session, (type_name, host, text), after, page_size)
            stmt = select(ModelRow)
            if type_name:
                stmt = stmt.where(ModelRow.type == type_name)
            if base_model:
                stmt = stmt.where(func.lower(ModelRow.base_model) == base_model.lower())
            if missing_metadata:
                stmt = stmt.where(
                    ModelRow.description == "",
                    ModelRow.trained_words == "[]",
                    ModelRow.civitai_version_id == 0,
                )
            if host:
                stmt = stmt.where(
                    col(ModelRow.sha256).in_(
                        select(LocationRow.sha256).where(LocationRow.host == host)
                    )
                )
            if text:
                like = f"%{text.lower()}%"
                stmt = stmt.where(
                    or_(
                        func.lower(ModelRow.name).like(like),
                        func.lower(ModelRow.trained_words).like(like),
                        func.lower(ModelRow.tags).like(like),
                        col(ModelRow.sha256).in_(
                            select(LocationRow.sha256).where(col(LocationRow.name_key).like(like))
                        ),
                    )
                )
            if page_token:
                name, _, sha = page_token.partition("\n")
                stmt = stmt.where(
                    or_(
                        ModelRow.name > name,
                        (ModelRow.name == name) & (ModelRow.sha256 > sha),
                    )
                )
            rows = list(
                session.exec(stmt.order_by(ModelRow.name, ModelRow.sha256).limit(page_size + 1))
            )
            more = len(rows) > page_size
            rows = rows[:page_size]
            where = _locations(session, [r.sha256 for r in rows])
            found = [(r, where[r.sha256]) for r in rows]
            if more:
                return found, f"{rows[-1].name}\n{rows[-1].sha256}"
            if base_model or page_size - len(found) <= 0:
                return found, "" if base_model else UNHASHED_TOKEN
            rest, token = _unhashed_page(
                session, (type_name, host, text), "", page_size - len(found)
            )
            return found + rest, token

        return await self._db.run(read)


def _read_local(path: Path, errors: list[str]) -> tuple[ModelInfo, str]:
    """Sidecars, then safetensors metadata, of one local file; and its preview."""
    if not path.is_file():
        errors.append(f"{path}: gone")
        return ModelInfo(), ""
    info = metadata.read_sidecars(path, errors)
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        try:
            info.fill(metadata.from_safetensors(read_header(path).metadata))
        except (HeaderError, OSError) as e:
            errors.append(f"{path}: {e}")
    preview = metadata.find_preview(path)
    return info, str(preview) if preview else ""


def _fill(row: ModelRow, info: ModelInfo, preview: str) -> None:
    """Sets the row's empty fields from `info`."""
    values: dict[str, Any] = {
        "name": info.name, "description": info.description, "base_model": info.base_model,
        "civitai_model_id": info.civitai_model_id, "civitai_version_id": info.civitai_version_id,
        "version_name": info.version_name, "source_url": info.source_url,
        "preview_url": info.preview_url, "preview_path": preview,
        "trained_words": json.dumps(info.trained_words) if info.trained_words else "",
        "tags": json.dumps(info.tags) if info.tags else "",
    }  # fmt: skip
    for key, value in values.items():
        if value and getattr(row, key) in ("", 0, "[]", None):
            setattr(row, key, value)
    # A name taken from the file name gives way to a real one.
    if info.name and row.name == name_key(row.name) and row.name != info.name.lower():
        row.name = info.name


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".incomplete")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _copy(progress: models_pb2.ScanProgress) -> models_pb2.ScanProgress:
    copy = models_pb2.ScanProgress()
    copy.CopyFrom(progress)
    return copy


def _local_cache(session: Session, roots: list[Path]) -> dict[str, tuple[int, int]]:
    rows = session.exec(
        select(LocationRow.path, LocationRow.size_bytes, LocationRow.mtime_ns).where(
            LocationRow.host == LOCAL_HOST, LocationRow.source == SOURCE_SCAN, LocationRow.verified
        )
    )
    return {path: (size, mtime) for path, size, mtime in rows}


def _forget_missing(session: Session, roots: list[Path], seen: set[str]) -> None:
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


def _store(session: Session, examined: list[Examined]) -> None:
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
        fresh = _model_fields(e)
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


def _model_fields(e: Examined) -> dict[str, Any]:
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


@dataclass(frozen=True)
class _Report:
    """One source's report of the model files on a host."""

    host: str
    source: str
    app: str
    entries: list[InventoryEntry]
    incremental: bool = False
    removed: set[str] = field(default_factory=set)


@dataclass
class _Known:
    """Content other reports established for entries that come without a hash."""

    by_path: dict[str, str] = field(default_factory=dict)  # same host, same path
    by_backend: dict[str, str] = field(default_factory=dict)  # same host, same API name
    by_name: dict[str, str] = field(default_factory=dict)  # file name, any host

    def verified(self, e: InventoryEntry) -> str | None:
        return self.by_path.get(e.path) or self.by_backend.get(e.backend_name)


def _known_hashes(session: Session, report: _Report) -> _Known:
    """Content other reports already established for entries that come without a hash:
    on the same host by path, or by the name the host's API selects the file by (a
    ComfyUI probe lists relative names where its extension sends absolute paths);
    then by file name anywhere."""
    unhashed = [e for e in report.entries if not e.sha256]
    known = _Known()
    if not unhashed:
        return known
    same_host = (
        LocationRow.host == report.host,
        LocationRow.source != report.source,
        LocationRow.verified,
    )
    for paths in _chunks({e.path for e in unhashed}):
        stmt = select(LocationRow.path, LocationRow.sha256).where(
            *same_host, col(LocationRow.path).in_(paths)
        )
        for path, sha in session.exec(stmt):
            known.by_path.setdefault(path, str(sha))
    for names in _chunks({e.backend_name for e in unhashed if e.backend_name}):
        stmt = select(LocationRow.backend_name, LocationRow.sha256).where(
            *same_host, col(LocationRow.backend_name).in_(names)
        )
        for name, sha in session.exec(stmt):
            known.by_backend.setdefault(name, str(sha))
    keys = {name_key(e.path) for e in unhashed if not known.verified(e)}
    if keys:
        for key, sha in session.exec(
            select(LocationRow.name_key, LocationRow.sha256).where(
                col(LocationRow.name_key).in_(keys), LocationRow.verified
            )
        ):
            known.by_name.setdefault(key, str(sha))
    return known


def _share_hashes(session: Session, host: str, source: str, entries: list[InventoryEntry]) -> bool:
    """A hash one source knows sticks to the file: other sources' rows on `host` of the
    same path, or of the same API name, whose content was unknown or only presumed
    take it."""
    by_path = {e.path: e.sha256 for e in entries if e.sha256}
    by_backend = {e.backend_name: e.sha256 for e in entries if e.sha256 and e.backend_name}
    changed = False
    for column, hashed in ((LocationRow.path, by_path), (LocationRow.backend_name, by_backend)):
        for keys in _chunks(hashed):
            for loc in session.exec(
                select(LocationRow).where(
                    LocationRow.host == host,
                    LocationRow.source != source,
                    col(column).in_(keys),
                    col(LocationRow.verified).is_(False),
                )
            ):
                sha = by_path.get(loc.path) or by_backend[loc.backend_name]
                loc.sha256, loc.verified = sha, True
                session.add(loc)
                changed = True
    return changed


def _replace_inventory(session: Session, report: _Report) -> bool:
    """Upserts the reporting source's locations on the host (only rows that change) and
    drops the ones it no longer reports; other sources' rows stay. True when anything
    changed. An entry without a hash takes the hash another source knows for the same
    file, else is matched to a known model by file name, provisionally (verified=False)."""
    now = utcnow()
    existing = {
        loc.path: loc
        for loc in session.exec(
            select(LocationRow).where(
                LocationRow.host == report.host, LocationRow.source == report.source
            )
        )
    }
    known_hashes = _known_hashes(session, report)
    hashed = {e.sha256 for e in report.entries if e.sha256}
    known: set[str] = set()
    if hashed:
        stmt = select(ModelRow.sha256).where(col(ModelRow.sha256).in_(hashed))
        known = set(session.exec(stmt))
    changed = False
    seen = set()
    for e in report.entries:
        seen.add(e.path)
        key = name_key(e.path)
        sha = e.sha256 or known_hashes.verified(e) or known_hashes.by_name.get(key)
        if e.sha256 and e.sha256 not in known:
            session.add(ModelRow(sha256=e.sha256, autov2=e.sha256[:10], name=key, type=e.type,
                                 size_bytes=e.size_bytes, created_at=now,
                                 updated_at=now))  # fmt: skip
            known.add(e.sha256)
        values = {"backend_name": e.backend_name, "app": report.app, "type": e.type,
                  "name_key": key, "sha256": sha,
                  "verified": bool(e.sha256 or known_hashes.verified(e)),
                  "size_bytes": e.size_bytes}  # fmt: skip
        loc = existing.get(e.path)
        if loc is None:
            loc = LocationRow(
                host=report.host, source=report.source, path=e.path, seen_at=now, **values
            )
            existing[e.path] = loc  # a file listed twice (two folders' lists) is one row
        elif all(getattr(loc, k) == v for k, v in values.items()):
            continue
        else:
            for k, v in values.items():
                setattr(loc, k, v)
            loc.seen_at = now
        session.add(loc)
        changed = True
    for path, loc in existing.items():
        if (path in report.removed) if report.incremental else (path not in seen):
            session.delete(loc)
            changed = True
    _fill_sizes(session, report.entries)
    changed = _presume_by_name(session, report.entries) or changed
    return _share_hashes(session, report.host, report.source, report.entries) or changed


def _chunks(values: Iterable[str], size: int = 500) -> Iterable[list[str]]:
    """`values` in lists of at most `size`, for IN (...) clauses."""
    items = list(values)
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _fill_sizes(session: Session, entries: list[InventoryEntry]) -> None:
    """Models whose size nobody knew yet (a probe reports none) take a reported one."""
    sizes = {e.sha256: e.size_bytes for e in entries if e.sha256 and e.size_bytes}
    for shas in _chunks(sizes):
        for model in session.exec(
            select(ModelRow).where(col(ModelRow.sha256).in_(shas), ModelRow.size_bytes == 0)
        ):
            model.size_bytes = sizes[model.sha256]
            session.add(model)


def _presume_by_name(session: Session, entries: list[InventoryEntry]) -> bool:
    """Files reported earlier without a hash, named like a file reported now with one:
    presumed that model (unverified), as a name match at write time would be."""
    by_key = {name_key(e.path): e.sha256 for e in entries if e.sha256}
    changed = False
    for keys in _chunks(by_key):
        for loc in session.exec(
            select(LocationRow).where(
                col(LocationRow.name_key).in_(keys), col(LocationRow.sha256).is_(None)
            )
        ):
            loc.sha256 = by_key[loc.name_key]
            session.add(loc)
            changed = True
    return changed


def _hosts_for(session: Session, reference: str) -> Placement:
    model = _resolve(session, reference)
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


def _resolve(session: Session, reference: str) -> ModelRow | None:
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


def _unhashed_page(
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
    return _unhashed(session, keys), UNHASHED_TOKEN + keys[-1] if more else ""


def _unhashed(session: Session, keys: list[str]) -> list[tuple[ModelRow, list[LocationRow]]]:
    """Files no source has hashed, one entry per file name (`keys`, in that order): a
    model row that is not stored (sha256 ""), and its files on every host."""
    by_key: dict[str, list[LocationRow]] = {}
    for chunk in _chunks(keys):
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


def _locations(session: Session, shas: list[str]) -> dict[str, list[LocationRow]]:
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


def model_to_pb(row: ModelRow, locations: list[LocationRow]) -> models_pb2.Model:
    model = models_pb2.Model(
        id=row.sha256,
        hashes=models_pb2.ModelHashes(
            sha256=row.sha256, autov2=row.autov2, autov1=row.autov1, autov3=row.autov3,
            blake3=row.blake3,
        ),
        name=row.name,
        type=TYPES.get(row.type, models_pb2.MODEL_TYPE_OTHER),
        base_model=row.base_model,
        size_bytes=row.size_bytes,
        description=row.description,
        trained_words=json.loads(row.trained_words or "[]"),
        tags=json.loads(row.tags or "[]"),
        civitai_model_id=row.civitai_model_id,
        civitai_version_id=row.civitai_version_id,
        version_name=row.version_name,
        source_url=row.source_url,
        has_preview=bool(row.preview_path),
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
    )  # fmt: skip
    for loc in locations:
        model.locations.append(
            common_pb2.ModelLocation(
                host=loc.host, path=loc.path, backend_name=loc.backend_name,
                app=KIND_TO_PB.get(loc.app, common_pb2.APP_KIND_UNSPECIFIED),
                seen_at=timestamp(loc.seen_at), verified=bool(loc.sha256 and loc.verified),
            )
        )  # fmt: skip
    return model
