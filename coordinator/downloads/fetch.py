"""Fetching one model file: confined to a model root, resumable, verified, atomic.

Used by the coordinator and, unchanged, by node agents. A file is streamed to a
unique `<name>.<id>.incomplete` beside its destination and hashed as it arrives
(every library hash, in one pass, on a writer thread so receiving and hashing
overlap). A dropped connection resumes with `Range` from what is on disk — also
after a restart, since the partial file's name comes from the download id; a
server that ignores `Range` (200) starts the file over. The size is checked
against `Content-Length`, the SHA-256 when one is known (a mismatch deletes the
file), and only then is the file linked into place, never over an existing one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import re
import shutil
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit, urlunsplit

import httpx

from stablequeue_coordinator.errors import InvalidArgument
from stablequeue_coordinator.library.hashing import FileHashes, Hasher, hash_file, is_safetensors

log = logging.getLogger(__name__)
CHUNK = 1024 * 1024
PENDING_WRITES = 8  # chunks received ahead of the writer thread
SPACE_MARGIN = 64 * 1024 * 1024  # left free on the disk after a download
SYNC_EVERY = 64 * 1024 * 1024
ProgressFn = Callable[[int, int], None]  # (bytes done, bytes total or 0 when unknown)
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class DownloadFailed(Exception):
    """The download cannot succeed as asked; the message says why (never a secret)."""


def confined(roots: list[Path], dest: str, name: str, field: str = "dest") -> Path:
    """The destination file for `name` in folder `dest`, which must lie inside one of
    the model `roots` (relative: to the first root). `name` may have sub-folders
    (`unet/model.safetensors`), never `..`.

    Raises:
        InvalidArgument: no model root, an escape (`..`, an absolute path or a
            symlink leading outside), or an unusable name.
    """
    if not roots:
        raise InvalidArgument(field, "the coordinator has no model root to download into "
                                     "(start it with --model-root)")  # fmt: skip
    relative = PurePosixPath(name.replace("\\", "/"))
    if not name or relative.is_absolute() or ".." in relative.parts or name.endswith("/"):
        raise InvalidArgument("name", f"{name!r} is not a plain file name inside the folder")
    folder = Path(dest) if dest else roots[0]
    if ".." in folder.parts:
        raise InvalidArgument(field, f"{dest!r} must not contain '..'")
    if not folder.is_absolute():
        folder = roots[0] / folder
    target = (folder / relative).resolve()
    if not any(target.is_relative_to(root.resolve()) for root in roots):
        shown = ", ".join(str(r) for r in roots)
        raise InvalidArgument(field, f"{folder / relative} is outside the model roots ({shown})")
    return target


def partial_path(target: Path, download_id: str) -> Path:
    return target.with_name(f"{target.name}.{download_id[:12]}.incomplete")


def check_space(folder: Path, needed: int) -> None:
    """Raises DownloadFailed when `needed` more bytes would not fit (with a margin)."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if needed and needed + SPACE_MARGIN > free:
        raise DownloadFailed(
            f"not enough disk space in {folder}: {needed / 2**20:,.0f} MiB needed, "
            f"{free / 2**20:,.0f} MiB free"
        )


def existing(target: Path, sha256: str) -> FileHashes | None:
    """The hashes of a file already at `target` that is the one wanted (None: absent).

    Raises:
        DownloadFailed: a different file (or one that cannot be checked) is there.
    """
    if not target.exists():
        return None
    if sha256:
        hashes = hash_file(target, tensor_hash=True)
        if hashes.sha256 == sha256.lower():
            return hashes
    raise DownloadFailed(f"{target} already exists and is not the file asked for; "
                         "remove it or choose another destination")  # fmt: skip


def settle(partial: Path, target: Path, hashes: FileHashes, sha256: str) -> None:
    """Verifies and moves a finished partial file into place (never over another file).

    Raises:
        DownloadFailed: SHA-256 mismatch (the partial file is deleted) or the target
            appeared meanwhile.
    """
    if sha256 and hashes.sha256 != sha256.lower():
        partial.unlink(missing_ok=True)
        raise DownloadFailed(
            f"SHA-256 mismatch for {target.name}: expected {sha256.lower()}, got "
            f"{hashes.sha256}; the downloaded file was deleted"
        )
    try:
        os.link(partial, target)  # atomic, and fails rather than replace a file
    except FileExistsError:
        partial.unlink(missing_ok=True)
        raise DownloadFailed(f"{target} appeared during the download; kept it") from None
    except OSError:  # a filesystem without hard links
        if target.exists():
            raise DownloadFailed(f"{target} appeared during the download; kept it") from None
        os.replace(partial, target)
        return
    partial.unlink()


class _Sink:
    """The partial file and its hashes, written on one thread in arrival order. Two
    helper threads keep that thread from waiting: one computes the tensor-data hash
    beside the full one, one flushes written data to disk every SYNC_EVERY bytes (so
    the final fsync waits only for the last stretch, and a crash loses little)."""

    def __init__(self, path: Path, offset: int, tensor_hash: bool, durable: bool = True) -> None:
        self._durable = durable
        self._helpers = ThreadPoolExecutor(2, thread_name_prefix="sq-download-helper")
        self._hash_helper = ThreadPoolExecutor(1) if tensor_hash else None
        self.hasher = Hasher(tensor_hash=tensor_hash, helper=self._hash_helper)
        if offset:  # resuming: the bytes already on disk are hashed first
            with open(path, "rb") as f:
                while block := f.read(4 * CHUNK):
                    self.hasher.update(block)
        self.file = open(path, "ab" if offset else "wb")  # noqa: SIM115 (closed in close())
        self.file.truncate(offset)
        self._unsynced = 0
        self._syncing: Future[None] | None = None

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self.hasher.update(chunk)
        self._unsynced += len(chunk)
        if not self._durable:
            return
        if self._unsynced >= SYNC_EVERY and (self._syncing is None or self._syncing.done()):
            self._unsynced = 0
            self.file.flush()
            self._syncing = self._helpers.submit(os.fdatasync, self.file.fileno())

    def close(self) -> None:
        try:
            self.file.flush()
            if self._syncing is not None:
                self._syncing.result()
            if self._durable:
                os.fsync(self.file.fileno())
            self.file.close()
            self.hasher.result()  # (waits for the hash helper)
        finally:
            self._helpers.shutdown()
            if self._hash_helper is not None:
                self._hash_helper.shutdown()


async def fetch_url(
    client: httpx.AsyncClient,
    url: str,
    target: Path,
    partial: Path,
    *,
    sha256: str = "",
    headers: dict[str, str] | None = None,
    on_progress: ProgressFn | None = None,
    retries: int = 5,
    backoff: float = 0.5,
    durable: bool = True,
) -> FileHashes:
    """Downloads `url` to `target` through `partial`; returns the file's hashes.
    `durable`: the bytes are on disk (fsync) before the file is put in place, so a
    power cut never leaves a model-looking file with missing data.

    Raises:
        DownloadFailed: an HTTP error that retrying cannot fix, too many failures,
            a size or SHA-256 mismatch, no disk space, or `target` taken.
        asyncio.CancelledError: the partial file stays, for a later resume.
    """
    already = await asyncio.to_thread(existing, target, sha256)
    if already is not None:
        return already
    failures = 0
    delay = backoff
    with ThreadPoolExecutor(1, thread_name_prefix="sq-download") as writer:
        while True:
            try:
                hashes = await _attempt(
                    client, url, partial, headers or {}, on_progress, writer,
                    (is_safetensors(target), durable),
                )  # fmt: skip
                break
            except _Retry as e:
                failures += 1
                if failures > retries:
                    raise DownloadFailed(
                        f"{shown_url(url)}: gave up after {failures} tries: {e}"
                    ) from e
                log.info("download of %s: %s; retrying in %.1f s", shown_url(url), e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
    await asyncio.to_thread(settle, partial, target, hashes, sha256)
    return hashes


class _Retry(Exception):
    """A failure worth another try (resuming from what is on disk)."""


async def _attempt(
    client: httpx.AsyncClient,
    url: str,
    partial: Path,
    headers: dict[str, str],
    on_progress: ProgressFn | None,
    writer: ThreadPoolExecutor,
    sink_options: tuple[bool, bool],
) -> FileHashes:
    loop = asyncio.get_running_loop()
    offset = _size(partial)
    request_headers = {**headers, "Accept-Encoding": "identity"}
    if offset:
        request_headers["Range"] = f"bytes={offset}-"
    try:
        async with client.stream("GET", url, headers=request_headers) as response:
            offset, total = _opening(url, response, offset, partial)
            check_space(partial.parent, max(0, total - offset))
            sink = await loop.run_in_executor(writer, _Sink, partial, offset, *sink_options)
            done = await _pump(response.aiter_raw(), sink, writer, offset, total, on_progress)
    except httpx.TransportError as e:
        raise _Retry(f"connection lost ({type(e).__name__})") from e
    if total and done != total:
        raise _Retry(f"the connection ended at {done:,} of {total:,} bytes")
    return sink.hasher.result()


async def _pump(
    pieces: AsyncIterator[bytes],
    sink: _Sink,
    writer: ThreadPoolExecutor,
    done: int,
    total: int,
    on_progress: ProgressFn | None,
) -> int:
    """Writes `pieces` to `sink` on the writer thread while the next ones arrive;
    returns the byte count reached. What arrived before an error is written.

    Chunks go to the writer through a bounded queue it drains on its own, so the
    event loop is not woken once per chunk; a full queue (the disk or the hashing is
    slower than the network) holds the receiving back."""
    loop = asyncio.get_running_loop()
    chunks: queue.Queue[bytes | None] = queue.Queue(PENDING_WRITES)
    drained = loop.run_in_executor(writer, _drain, chunks, sink)

    async def hand_over(item: bytes | None) -> None:
        while True:
            try:
                chunks.put_nowait(item)
                return
            except queue.Full:
                if drained.done():
                    drained.result()  # the writer failed: its error
                    return
                await asyncio.sleep(0.002)

    buffer: list[bytes] = []  # gathered to CHUNK, joined once
    buffered = 0
    try:
        async for piece in pieces:
            buffer.append(piece)
            buffered += len(piece)
            done += len(piece)
            if buffered >= CHUNK:
                await hand_over(b"".join(buffer))
                buffer.clear()
                buffered = 0
                if on_progress is not None:
                    on_progress(done, total)
    finally:
        if buffer:
            await hand_over(b"".join(buffer))
        await hand_over(None)
        try:
            await drained
        finally:
            await loop.run_in_executor(writer, sink.close)
    if on_progress is not None:
        on_progress(done, total)
    return done


def _drain(chunks: queue.Queue[bytes | None], sink: _Sink) -> None:
    while (chunk := chunks.get()) is not None:
        sink.write(chunk)


ChunkSource = Callable[[int], AsyncIterator[bytes]]  # a file's bytes from an offset


async def fetch_chunks(
    open_at: ChunkSource,
    total: int,
    target: Path,
    partial: Path,
    *,
    sha256: str = "",
    on_progress: ProgressFn | None = None,
    retry_on: tuple[type[BaseException], ...] = (),
    retries: int = 5,
    backoff: float = 0.5,
) -> FileHashes:
    """Like `fetch_url`, from any source that can start at an offset (a gRPC stream
    of a coordinator's model file): a cut (an exception in `retry_on`, or the stream
    ending early) resumes from what is on disk.

    Raises:
        DownloadFailed: too many cuts, a SHA-256 mismatch, no space, target taken.
    """
    already = await asyncio.to_thread(existing, target, sha256)
    if already is not None:
        return already
    loop = asyncio.get_running_loop()
    failures, delay = 0, backoff
    with ThreadPoolExecutor(1, thread_name_prefix="sq-download") as writer:
        while True:
            offset = _size(partial)
            if offset > total:
                _discard(partial)
                offset = 0
            await asyncio.to_thread(check_space, partial.parent, total - offset)
            sink = await loop.run_in_executor(
                writer, _Sink, partial, offset, is_safetensors(target)
            )
            try:
                done = await _pump(open_at(offset), sink, writer, offset, total, on_progress)
                if done == total:
                    break
                why = f"the transfer ended at {done:,} of {total:,} bytes"
            except retry_on as e:
                why = f"the transfer was cut ({type(e).__name__})"
            failures += 1
            if failures > retries:
                raise DownloadFailed(f"{target.name}: gave up after {failures} tries: {why}")
            log.info("%s: %s; resuming in %.1f s", target.name, why, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
    hashes = sink.hasher.result()
    await asyncio.to_thread(settle, partial, target, hashes, sha256)
    return hashes


def _opening(url: str, response: httpx.Response, offset: int, partial: Path) -> tuple[int, int]:
    """Where the answer starts writing and the file's full size (0: unknown).

    Raises:
        _Retry: worth another try. DownloadFailed: not.
    """
    status = response.status_code
    if status == 416 and offset:
        _discard(partial)  # what is on disk does not fit the file any more
        raise _Retry("the server refused to resume; starting over")
    if status == 429 or status >= 500:
        raise _Retry(f"HTTP {status}")
    if status >= 400:
        raise DownloadFailed(_refused(url, status))
    total = int(response.headers.get("Content-Length") or 0)
    if status == 206:
        match = CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
        if match is None or int(match.group(1)) != offset:
            _discard(partial)
            raise _Retry("the server resumed at another offset; starting over")
        return offset, int(match.group(3)) if match.group(3) != "*" else offset + total
    if offset:
        log.info("%s ignored Range: starting the file over", shown_url(url))
    return 0, total


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _refused(url: str, status: int) -> str:
    if status in (401, 403):
        return (f"{shown_url(url)}: HTTP {status}: the server wants credentials "
                "(SQ_CIVITAI_TOKEN for Civitai, HF_TOKEN for Hugging Face)")  # fmt: skip
    if status == 404:
        return f"{shown_url(url)}: HTTP 404: no such file"
    return f"{shown_url(url)}: HTTP {status}"


def shown_url(url: str) -> str:
    """A URL fit to show and log: without its query (pre-signed URLs and ?token= carry
    secrets) and with a password in it replaced by `***`."""
    bare = url.split("?", 1)[0].split("#", 1)[0]
    try:
        parts = urlsplit(bare)
        if parts.password is None:
            return bare
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return "(a URL that cannot be read)"
    return urlunsplit(parts._replace(netloc=netloc))
