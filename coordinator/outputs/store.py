"""Results on disk and in the gallery.

Images go to `<output_dir>/<YYYY-MM-DD>/<job id>-<index>.<ext>`, written to a
temporary file and renamed, so a crash never leaves a half image under a real
name. (job, index) is unique in the table and the file name is derived from it,
so saving a job's images twice (a recovered or retried job) stores them once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import io
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import PIL.Image
from sqlalchemy import Connection, and_, insert, or_
from sqlmodel import Session, col, select

from stablequeue import infotext
from stablequeue.v1 import queue_pb2
from stablequeue_coordinator.backends.base import Image
from stablequeue_coordinator.common import random_hex, timestamp, utcnow
from stablequeue_coordinator.errors import FailedPrecondition, InvalidArgument, NotFound
from stablequeue_coordinator.outputs import png
from stablequeue_coordinator.store import Database
from stablequeue_coordinator.store.hot import HotStatement
from stablequeue_coordinator.store.tables import JobRow, ResultRow

log = logging.getLogger(__name__)

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
MAX_PAGE = 500
# Scaled copies for galleries: a folder of the output folder, and the edges asked for.
THUMBNAILS = ".thumbnails"
THUMBNAIL_EDGES = (32, 2048)
IMAGE_WRITERS = 4
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
O_TMPFILE = getattr(os, "O_TMPFILE", 0)
# What opening an unnamed file says where the OS or the folder's filesystem has none.
NO_UNNAMED_FILES = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOSYS})
# Less the umask, as Forge and ComfyUI save theirs (mkstemp's 0600 kept a gallery served
# by another account, or a share of the output folder, from reading them).
FILE_MODE = 0o666
RESULTS = ResultRow.__table__  # type: ignore[attr-defined]
# A written image's record: its row's values, as `ResultStore.add` inserts them (a
# plain dict: building an ORM object per image cost more than the INSERT itself).
Record = dict[str, Any]
ADD_RECORDS = HotStatement(insert(RESULTS))


@dataclass(frozen=True)
class ResultQuery:
    job_id: str = ""
    model: str = ""
    text: str = ""
    since: datetime | None = None
    until: datetime | None = None
    page_size: int = 50
    page_token: str = ""
    # Only results of jobs this API key submitted (None: everyone's).
    owner: str | None = None


def result_to_pb(row: ResultRow) -> queue_pb2.JobResult:
    return queue_pb2.JobResult(
        id=row.id,
        filename=row.path,
        mime=row.mime,
        width=row.width,
        height=row.height,
        seed=row.seed,
        size_bytes=row.size_bytes,
        infotext=row.infotext,
        created_at=timestamp(row.created_at),
        job_id=row.job_id,
    )


def mime_of(data: bytes) -> str:
    if data.startswith(png.SIGNATURE):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


@dataclass
class Saving:
    """A completed job's images on their way to the disk: their records, and the files
    `write` puts in place (whole or not at all, each flushed to the disk)."""

    records: list[Record] = field(default_factory=list)
    files: list[tuple[Path, bytes]] = field(default_factory=list)

    def write(self) -> None:
        for path, data in self.files:
            _write_atomically(path, data)


class ResultStore:
    """Writes job images and serves the gallery.

    Args:
        db: the store.
        output_dir: root folder of every image; nothing is read or deleted outside it.
    """

    def __init__(self, db: Database, output_dir: Path) -> None:
        self._db = db
        self.root = output_dir.resolve()
        # Image files are written off the event loop by threads of their own (see `writer`).
        self._writer = ThreadPoolExecutor(IMAGE_WRITERS, thread_name_prefix="sq-images")

    def close(self) -> None:
        """Waits for image writes under way (a stopped dispatcher starts none)."""
        self._writer.shutdown(wait=True)

    def remove_orphans(self) -> int:
        """Removes the temporary files of writes a crash cut short (`.NAME.*.incomplete`,
        never renamed into place); run at start, before anything writes. Returns how
        many went."""
        removed = 0
        for tmp in self.root.glob("*/.*.incomplete") if self.root.is_dir() else ():
            try:
                tmp.unlink()
                removed += 1
            except OSError as e:
                log.warning("could not remove %s: %s", tmp, e.strerror)
        if removed:
            log.info("removed %d unfinished image file(s) a crash left in %s", removed, self.root)
        return removed

    def prepare(
        self, job: queue_pb2.Job, server: str, images: Sequence[Image], model: str = ""
    ) -> Saving:
        """The records of a completed job's images, for the caller to add in the
        transaction that completes the job, and the step that writes their files first
        (on `writer`: `Saving.write`).

        Records exist only for completed jobs, which never run again, so there is
        nothing to look up first; the unique (job, index) key guards the rest.
        """
        now = utcnow()
        params = job.spec.params if job.spec.HasField("params") else None
        saving = Saving()
        for idx, image in enumerate(images):
            data, text = _with_metadata(job, image, model)
            relative = f"{now:%Y-%m-%d}/{job.id}-{idx}.{EXTENSIONS.get(image.mime, 'bin')}"
            saving.files.append((self.root / relative, data))
            width, height = png.size(data) if image.mime == "image/png" else (0, 0)
            saving.records.append(
                {
                    "id": random_hex(8),
                    "job_id": job.id,
                    "idx": idx,
                    "path": relative,
                    "mime": image.mime,
                    "width": width,
                    "height": height,
                    "seed": image.seed,
                    "size_bytes": len(data),
                    "infotext": text,
                    "prompt": params.prompt if params else "",
                    "model": model or (params.model if params else ""),
                    "server": server,
                    "created_at": now,
                }
            )
        return saving

    @property
    def writer(self) -> Executor:
        """The threads that write image files (a file create and an fsync each), a few
        at a time so slow disks overlap their flushes."""
        return self._writer

    @staticmethod
    def add(connection: Connection, records: Sequence[Record]) -> None:
        """Adds `write`'s records in the caller's transaction (one INSERT, no ORM unit
        of work: it runs with every completion)."""
        ADD_RECORDS.many(connection, records)

    async def discard(self, records: Sequence[Record]) -> None:
        """Removes files written by `write` whose records were never stored."""
        for record in records:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread((self.root / record["path"]).unlink)

    async def for_job(self, job_id: str) -> list[ResultRow]:
        def query(session: Session) -> list[ResultRow]:
            stmt = select(ResultRow).where(ResultRow.job_id == job_id).order_by(col(ResultRow.idx))
            return list(session.exec(stmt))

        return await self._db.run(query)

    async def for_jobs(self, job_ids: list[str]) -> dict[str, list[ResultRow]]:
        """The results of several jobs at once (a listing's page), by job id."""

        def query(session: Session) -> dict[str, list[ResultRow]]:
            found: dict[str, list[ResultRow]] = {}
            stmt = (
                select(ResultRow)
                .where(col(ResultRow.job_id).in_(job_ids))
                .order_by(col(ResultRow.job_id), col(ResultRow.idx))
            )
            for row in session.exec(stmt):
                found.setdefault(row.job_id, []).append(row)
            return found

        return await self._db.run(query) if job_ids else {}

    async def list(self, query: ResultQuery) -> tuple[list[ResultRow], str]:
        """Newest first, filtered; one page and the next page's token."""
        if not 0 <= query.page_size <= MAX_PAGE:
            raise InvalidArgument("page.page_size", f"must be within 0 .. {MAX_PAGE}")
        size = query.page_size or 50
        cursor = _decode(query.page_token)

        def run(session: Session) -> list[ResultRow]:
            stmt = select(ResultRow)
            if query.job_id:
                stmt = stmt.where(ResultRow.job_id == query.job_id)
            if query.owner is not None:
                stmt = stmt.where(_owned_by(query.owner))
            if query.model:
                stmt = stmt.where(col(ResultRow.model).contains(query.model))
            if query.text:
                stmt = stmt.where(col(ResultRow.prompt).contains(query.text))
            if query.since:
                stmt = stmt.where(col(ResultRow.created_at) >= query.since)
            if query.until:
                stmt = stmt.where(col(ResultRow.created_at) < query.until)
            if cursor:
                created, last = cursor
                stmt = stmt.where(
                    or_(
                        col(ResultRow.created_at) < created,
                        and_(ResultRow.created_at == created, col(ResultRow.id) < last),
                    )
                )
            stmt = stmt.order_by(col(ResultRow.created_at).desc(), col(ResultRow.id).desc())
            return list(session.exec(stmt.limit(size + 1)))

        rows = await self._db.run(run)
        if len(rows) <= size:
            return rows, ""
        rows = rows[:size]
        return rows, _encode(rows[-1])

    async def get(
        self, result_id: str, owner: str | None = None, max_edge: int = 0
    ) -> tuple[ResultRow, Path, str]:
        """The record, its file and that file's MIME type (only of `owner`'s jobs when
        given); with `max_edge`, a WebP copy scaled to fit that square, made once.

        Raises:
            InvalidArgument: `max_edge` is neither 0 nor within THUMBNAIL_EDGES.
            NotFound: unknown id, someone else's result, or the file is gone.
            FailedPrecondition: the file is not an image that can be scaled.
        """
        if max_edge and not THUMBNAIL_EDGES[0] <= max_edge <= THUMBNAIL_EDGES[1]:
            low, high = THUMBNAIL_EDGES
            raise InvalidArgument("max_edge", f"must be 0 or within {low} .. {high}")
        row = await self._db.run(lambda s: _find(s, result_id, owner))
        path = self.confined(row.path)
        if not path.is_file():
            raise NotFound(f"result {result_id}: its file {row.path} is missing")
        if not max_edge:
            return row, path, row.mime
        small = self.root / THUMBNAILS / f"{row.id}-{max_edge}.webp"
        if not small.is_file():
            await asyncio.to_thread(_scale, path, small, max_edge)
        return row, small, "image/webp"

    async def delete(self, result_id: str, owner: str | None = None) -> None:
        """Deletes the file (if still there) and the record."""

        def remove(session: Session) -> ResultRow:
            row = _find(session, result_id, owner)
            session.delete(row)
            return row

        row = await self._db.run(remove)
        self.confined(row.path).unlink(missing_ok=True)
        for small in (self.root / THUMBNAILS).glob(f"{row.id}-*.webp"):
            small.unlink(missing_ok=True)

    def confined(self, relative: str) -> Path:
        """`relative` under the output folder; refuses anything that escapes it."""
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise InvalidArgument("path", f"{relative!r} is outside the output folder")
        return path


def _owned_by(owner: str) -> Any:
    return col(ResultRow.job_id).in_(select(JobRow.id).where(JobRow.submitted_by == owner))


def _find(session: Session, result_id: str, owner: str | None) -> ResultRow:
    stmt = select(ResultRow).where(ResultRow.id == result_id)
    if owner is not None:
        stmt = stmt.where(_owned_by(owner))
    row = session.exec(stmt).first()
    if row is None:
        raise NotFound(f"no result with id {result_id!r}")
    return row


def _with_metadata(job: queue_pb2.Job, image: Image, model: str) -> tuple[bytes, str]:
    """The bytes to store and the infotext they carry.

    ComfyUI's `prompt`/`workflow` chunks stay as they came; a PNG gets an A1111
    `parameters` chunk unless the backend already wrote one: the backend's text of
    what ran (a ComfyUI graph read back), else a parameter job's own parameters.
    """
    if image.mime != "image/png":
        return image.data, image.infotext
    data = image.data
    existing = png.text(data)
    if image.keep_text_as and "parameters" in existing:  # not A1111's: kept aside
        data = png.with_text(data, image.keep_text_as, existing.pop("parameters"))
    if "parameters" in existing:
        return data, existing["parameters"]
    if not job.spec.HasField("params"):
        if not image.infotext:
            return data, ""
        return png.with_text(data, "parameters", image.infotext), image.infotext
    text = image.infotext or infotext.build(job.spec.params, image.seed, model)
    return png.with_text(data, "parameters", text), text


def _scale(source: Path, target: Path, max_edge: int) -> None:
    """Writes `source` scaled to fit a `max_edge` square (never enlarged) as WebP."""
    try:
        with PIL.Image.open(source) as image:
            image.thumbnail((max_edge, max_edge), PIL.Image.Resampling.LANCZOS)
            if image.mode not in ("RGB", "RGBA"):
                image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
            buffer = io.BytesIO()
            image.save(buffer, format="WEBP", quality=80, method=4)
    except (OSError, ValueError, PIL.Image.DecompressionBombError) as e:
        raise FailedPrecondition(f"{source.name} cannot be scaled: {e}") from e
    _write_atomically(target, buffer.getvalue())


def _write_atomically(path: Path, data: bytes) -> None:
    """Writes `path` whole or not at all, flushed to the disk before it has its name.

    Where the OS has unnamed files (Linux: `O_TMPFILE` on ext4, xfs, btrfs, tmpfs), the
    data goes to a file with no name in the folder, then gets its name by a link: the
    folder is locked once per image, not twice, and the new file's inode is found
    outside that lock. (The image threads, writing into one day's folder, queued on its
    lock for each create and rename, and the kernel spins while it waits: where finding
    a free inode is slow - ext4 without a journal passes over the inodes freed in the
    last minutes - that spinning was a third to a half of the kernel CPU per image.) A
    crash leaves nothing behind. Elsewhere, or when the name exists already (a retried
    job's image), it is `_write_renamed`.
    """
    if O_TMPFILE:
        try:
            fd = _open_in(path.parent, path.parent, os.O_WRONLY | O_TMPFILE | O_CLOEXEC)
        except OSError as e:
            if e.errno not in NO_UNNAMED_FILES:
                raise
        else:
            try:
                _write_all(fd, data)
                # Python calls linkat, which alone follows /proc's link to the open
                # file, only when given a folder's fd; an absolute source path ignores it.
                os.link(f"/proc/self/fd/{fd}", path, src_dir_fd=fd, follow_symlinks=True)
                return
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOENT):  # named already; no /proc
                    raise
            finally:
                os.close(fd)
    _write_renamed(path, data)


def _open_in(folder: Path, name: Path, flags: int) -> int:
    """`os.open(name, flags)` for a file of `folder`, which is made when it is missing
    (the first image of the day)."""
    try:
        return os.open(name, flags, FILE_MODE)
    except FileNotFoundError:
        folder.mkdir(parents=True, exist_ok=True)
        return os.open(name, flags, FILE_MODE)


def _write_renamed(path: Path, data: bytes) -> None:
    """`_write_atomically` by a temporary file beside `path` (a name no other write
    uses, which `remove_orphans` knows), flushed to the disk, then renamed over it.

    Only the system calls that takes (open, write, fsync, close, rename; the day's
    folder is made when it is missing): each lets go of the GIL, and taking it back
    waits while the event loop runs Python.
    """
    tmp = path.with_name(f".{path.name}.{random_hex(6)}.incomplete")
    fd = _open_in(path.parent, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_CLOEXEC)
    try:
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_all(fd: int, data: bytes) -> None:
    """All of `data` to `fd`, then flushed to the disk."""
    rest = memoryview(data)
    while rest:
        rest = rest[os.write(fd, rest) :]
    os.fsync(fd)


def _encode(row: ResultRow) -> str:
    key = {"c": row.created_at.isoformat(), "i": row.id}
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def _decode(token: str) -> tuple[datetime, str] | None:
    if not token:
        return None
    try:
        key: dict[str, Any] = json.loads(base64.urlsafe_b64decode(token.encode()))
        return datetime.fromisoformat(key["c"]), str(key["i"])
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidArgument("page.page_token", "malformed; start from the first page") from e
