"""Server inventories: one host's report as a SyncInventory stream brings it (a header,
then its files, each checked as it arrives, the refused field named), and storing a
source's report of a host beside the other sources' rows."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlmodel import Session, col, select

from stablequeue_coordinator.backends.base import InventoryEntry
from stablequeue_coordinator.common import NAME, utcnow
from stablequeue_coordinator.errors import InvalidArgument
from stablequeue_coordinator.library.records import chunks, name_key
from stablequeue_coordinator.store.tables import LocationRow, ModelRow

MAX_INVENTORY = 200_000
MAX_PATH_CHARS = 2000
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class InventoryReport:
    """Collects one host's report: `header()` once, then `add()` per file, then `finish()`.

    Raises (each method):
        InvalidArgument: naming the field and the rule.
    """

    def __init__(self) -> None:
        self.host = ""
        self.app = ""
        self.incremental = False
        self.entries: list[InventoryEntry] = []
        self.removed: list[str] = []
        self._has_header = False

    def header(self, host: str, app: str, incremental: bool) -> None:
        if self._has_header:
            raise InvalidArgument("header", "sent twice; one stream is one host")
        if not NAME.match(host):
            raise InvalidArgument(
                "header.host", f"1-100 letters, digits, '.', '_' or '-', got {host[:40]!r}"
            )
        self.host, self.app, self.incremental = host, app, incremental
        self._has_header = True

    def add(
        self, path: str, backend_name: str, type_name: str, sha256: str, size_bytes: int,
        removed: bool = False,
    ) -> None:  # fmt: skip
        if not self._has_header:
            raise InvalidArgument("header", "must come first")
        where = f"file[{len(self.entries)}]"
        if not path or len(path) > MAX_PATH_CHARS:
            raise InvalidArgument(f"{where}.path", f"required, at most {MAX_PATH_CHARS} chars")
        if len(backend_name) > MAX_PATH_CHARS:
            raise InvalidArgument(f"{where}.backend_name", f"at most {MAX_PATH_CHARS} chars")
        if removed and not self.incremental:
            raise InvalidArgument(f"{where}.removed", "only in an incremental sync")
        sha = sha256.lower().removeprefix("0x")
        if sha and not SHA256.match(sha):
            raise InvalidArgument(f"{where}.hashes.sha256", "not 64 hex digits")
        if removed:
            self.removed.append(path)
            return
        self.entries.append(
            InventoryEntry(
                path=path,
                backend_name=backend_name or path,
                type=type_name,
                sha256=sha,
                size_bytes=max(0, size_bytes),
            )
        )
        if len(self.entries) > MAX_INVENTORY:
            raise InvalidArgument("file", f"at most {MAX_INVENTORY} files per inventory")

    def finish(self) -> None:
        if not self._has_header:
            raise InvalidArgument("header", "required")


@dataclass(frozen=True)
class HostReport:
    """One source's report of the model files on a host."""

    host: str
    source: str
    app: str
    entries: list[InventoryEntry]
    incremental: bool = False
    removed: set[str] = field(default_factory=set)


@dataclass
class KnownHashes:
    """Content other reports established for entries that come without a hash."""

    by_path: dict[str, str] = field(default_factory=dict)  # same host, same path
    by_backend: dict[str, str] = field(default_factory=dict)  # same host, same API name
    by_name: dict[str, str] = field(default_factory=dict)  # file name, any host

    def verified(self, e: InventoryEntry) -> str | None:
        return self.by_path.get(e.path) or self.by_backend.get(e.backend_name)


def read_known_hashes(session: Session, report: HostReport) -> KnownHashes:
    """Content other reports already established for entries that come without a hash:
    on the same host by path, or by the name the host's API selects the file by (a
    ComfyUI probe lists relative names where its extension sends absolute paths);
    then by file name anywhere."""
    unhashed = [e for e in report.entries if not e.sha256]
    known = KnownHashes()
    if not unhashed:
        return known
    same_host = (
        LocationRow.host == report.host,
        LocationRow.source != report.source,
        LocationRow.verified,
    )
    for paths in chunks({e.path for e in unhashed}):
        stmt = select(LocationRow.path, LocationRow.sha256).where(
            *same_host, col(LocationRow.path).in_(paths)
        )
        for path, sha in session.exec(stmt):
            known.by_path.setdefault(path, str(sha))
    for names in chunks({e.backend_name for e in unhashed if e.backend_name}):
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


def share_hashes(session: Session, host: str, source: str, entries: list[InventoryEntry]) -> bool:
    """A hash one source knows sticks to the file: other sources' rows on `host` of the
    same path, or of the same API name, whose content was unknown or only presumed
    take it."""
    by_path = {e.path: e.sha256 for e in entries if e.sha256}
    by_backend = {e.backend_name: e.sha256 for e in entries if e.sha256 and e.backend_name}
    changed = False
    for column, hashed in ((LocationRow.path, by_path), (LocationRow.backend_name, by_backend)):
        for keys in chunks(hashed):
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


def store_report(session: Session, report: HostReport) -> bool:
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
    known_hashes = read_known_hashes(session, report)
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
    fill_sizes(session, report.entries)
    changed = presume_by_name(session, report.entries) or changed
    return share_hashes(session, report.host, report.source, report.entries) or changed


def fill_sizes(session: Session, entries: list[InventoryEntry]) -> None:
    """Models whose size nobody knew yet (a probe reports none) take a reported one."""
    sizes = {e.sha256: e.size_bytes for e in entries if e.sha256 and e.size_bytes}
    for shas in chunks(sizes):
        for model in session.exec(
            select(ModelRow).where(col(ModelRow.sha256).in_(shas), ModelRow.size_bytes == 0)
        ):
            model.size_bytes = sizes[model.sha256]
            session.add(model)


def presume_by_name(session: Session, entries: list[InventoryEntry]) -> bool:
    """Files reported earlier without a hash, named like a file reported now with one:
    presumed that model (unverified), as a name match at write time would be."""
    by_key = {name_key(e.path): e.sha256 for e in entries if e.sha256}
    changed = False
    for keys in chunks(by_key):
        for loc in session.exec(
            select(LocationRow).where(
                col(LocationRow.name_key).in_(keys), col(LocationRow.sha256).is_(None)
            )
        ):
            loc.sha256 = by_key[loc.name_key]
            session.add(loc)
            changed = True
    return changed
