"""The model library: scans, metadata refreshes, server inventories and resolving
references, over the model and location records.

One model per SHA-256; every file with that content, on any host, is a location.
A reference a person types — a hash of any kind, a name with or without
extension and folder, a path — resolves to one model.

Its seams: `scanner` (walking and hashing files), `records` (the SQL of models and
locations), `inventory` (what servers, extensions and agents report), `local` and
`civitai` (metadata sources), `convert` (records as contract messages).
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path, PurePath

from sqlalchemy import delete, func, or_
from sqlmodel import Session, col, select

from stablequeue.v1 import models_pb2
from stablequeue_coordinator.backends.base import InventoryEntry
from stablequeue_coordinator.common import read_chunks, utcnow
from stablequeue_coordinator.errors import FailedPrecondition, InvalidArgument, NotFound
from stablequeue_coordinator.library import metadata
from stablequeue_coordinator.library.civitai import CivitaiClient, CivitaiUnavailable
from stablequeue_coordinator.library.convert import copy_progress
from stablequeue_coordinator.library.hashing import FileHashes
from stablequeue_coordinator.library.inventory import HostReport, store_report
from stablequeue_coordinator.library.local import fill_row, read_local, write_file
from stablequeue_coordinator.library.metadata import ModelInfo
from stablequeue_coordinator.library.records import (
    LOCAL_HOST,
    SOURCE_DOWNLOAD,
    SOURCE_PROBE,
    SOURCE_SYNC,
    UNHASHED_TOKEN,
    Placement,
    forget_missing,
    local_cache,
    locations_of,
    name_key,
    placement_of,
    resolve_reference,
    store_examined,
    unhashed,
    unhashed_page,
)
from stablequeue_coordinator.library.scanner import Examined, Found, examine, walk
from stablequeue_coordinator.outputs.store import mime_of
from stablequeue_coordinator.store.db import Database
from stablequeue_coordinator.store.tables import LocationRow, ModelRow

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 0.25


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
            cache = await self._db.run(lambda s: local_cache(s, chosen))
            todo = []
            for f in found:
                cached = cache.get(str(f.path))
                if not force and cached == (f.size, f.mtime_ns):
                    progress.files_cached += 1
                else:
                    todo.append(f)
            progress.bytes_total = sum(f.size for f in todo)
            yield copy_progress(progress)
            hashed: list[str] = []
            async for update in self._hash_all(todo, progress, hashed):
                yield update
            await self._db.run(lambda s: forget_missing(s, chosen, {str(f.path) for f in found}))
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
            yield copy_progress(progress)
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
                    await self._db.run(lambda s, rows=rows: store_examined(s, rows))
                if time.monotonic() - last >= PROGRESS_EVERY_S or done:
                    last = time.monotonic()
                    yield copy_progress(progress)

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
        await self._db.run(lambda s: store_examined(s, [examined]))
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

    async def preview(self, reference: str) -> tuple[bytes, str]:
        """The model's preview image and its MIME type.

        Raises:
            NotFound: no such model, no preview, or its file is unreadable.
        """
        model, _ = await self.get(reference)
        if not model.preview_path:
            raise NotFound(f"model {model.name!r} has no preview")
        path = Path(model.preview_path)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as e:
            raise NotFound(f"the preview of {model.name!r} is unreadable: {e.strerror}") from e
        return data, mimetypes.guess_type(path.name)[0] or "application/octet-stream"

    async def read_file(
        self, sha256: str, offset: int, chunk: int
    ) -> AsyncIterator[tuple[bytes, int, int, str]]:
        """The coordinator's copy of a model from `offset`: (data, offset, size, file name).

        Raises:
            NotFound: no copy here. InvalidArgument: the offset ("offset").
        """
        _, path = await self.local_file(sha256)
        async for data, at, size in read_chunks(path, chunk, offset):
            yield data, at, size, path.name

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
                local, found = await asyncio.to_thread(read_local, Path(loc.path), errors)
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
            fill_row(row, info, preview)
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
        await asyncio.to_thread(write_file, path, data)
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
        report = HostReport(host, source, app, items, incremental, gone)
        if await self._db.run(lambda s: store_report(s, report)):
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
            self._hosts_cache[key] = await self._db.run(lambda s: placement_of(s, reference))
        return self._hosts_cache[key]

    # ---- reading ----------------------------------------------------------

    async def resolve(self, reference: str) -> ModelRow | None:
        """The model `reference` names (any hash, a name or a path), or None."""
        return await self._db.run(lambda s: resolve_reference(s, reference))

    async def get(self, reference: str) -> tuple[ModelRow, list[LocationRow]]:
        """Raises: NotFound."""

        def read(session: Session) -> tuple[ModelRow, list[LocationRow]]:
            model = resolve_reference(session, reference)
            if model is not None:
                return model, locations_of(session, [model.sha256])[model.sha256]
            files = unhashed(session, [name_key(reference)])
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
                return unhashed_page(session, (type_name, host, text), after, page_size)
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
            where = locations_of(session, [r.sha256 for r in rows])
            found = [(r, where[r.sha256]) for r in rows]
            if more:
                return found, f"{rows[-1].name}\n{rows[-1].sha256}"
            if base_model or page_size - len(found) <= 0:
                return found, "" if base_model else UNHASHED_TOKEN
            rest, token = unhashed_page(
                session, (type_name, host, text), "", page_size - len(found)
            )
            return found + rest, token

        return await self._db.run(read)
