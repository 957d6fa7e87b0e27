"""Where models come from: Hugging Face (through `huggingface_hub`), Civitai (a version's
metadata, then its redirecting download URL) and plain URLs. Each source ends in
files in a model folder with their hashes; the caller registers them.

Shared by the coordinator and node agents.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from stablequeue_coordinator.downloads.fetch import (
    DownloadFailed,
    ProgressFn,
    check_space,
    confined,
    existing,
    fetch_url,
    partial_path,
)
from stablequeue_coordinator.errors import InvalidArgument
from stablequeue_coordinator.library.civitai import CivitaiClient, CivitaiUnavailable
from stablequeue_coordinator.library.hashing import FileHashes, hash_file

log = logging.getLogger(__name__)
AIR = re.compile(r"urn:air:[\w.-]+:[\w.-]+:civitai:(\d+)@(\d+)(?:\.[\w]+)?", re.IGNORECASE)
SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class Cancelled(Exception):
    """Raised inside a worker thread to stop a download that was cancelled."""


@dataclass
class Fetched:
    path: Path
    hashes: FileHashes
    source_url: str = ""  # where it came from, without secrets


@dataclass
class Job:
    """One download as the downloader sees it (the service keeps the record)."""

    id: str
    roots: list[Path]
    dest: str
    sha256: str = ""
    on_progress: ProgressFn = lambda done, total: None
    on_verifying: Callable[[], None] = lambda: None
    cancelled: threading.Event = field(default_factory=threading.Event)


def url_file_name(url: str) -> str:
    """The file name a URL names (its last path segment)."""
    name = unquote(PurePosixPath(urlsplit(url).path).name)
    if not name or name in (".", ".."):
        raise InvalidArgument("url", f"{url.split('?', 1)[0]!r} names no file")
    return name


def civitai_version_id(reference: str) -> int:
    """A model-version id from `12345` or an AIR (`urn:air:sdxl:lora:civitai:1@12345`).

    Raises:
        InvalidArgument: neither.
    """
    text = reference.strip()
    if text.isdigit() and int(text) > 0:
        return int(text)
    match = AIR.fullmatch(text)
    if match is None:
        raise InvalidArgument(
            "civitai.reference",
            f"{reference!r} is neither a model-version id nor an AIR "
            "(urn:air:ECOSYSTEM:TYPE:civitai:MODEL@VERSION)",
        )
    return int(match.group(2))


async def from_url(client: httpx.AsyncClient, job: Job, url: str) -> list[Fetched]:
    target = confined(job.roots, job.dest, url_file_name(url))
    hashes = await fetch_url(
        client, url, target, partial_path(target, job.id),
        sha256=job.sha256, on_progress=job.on_progress,
    )  # fmt: skip
    return [Fetched(target, hashes, url.split("?", 1)[0])]


async def from_civitai(
    client: httpx.AsyncClient, civitai: CivitaiClient, job: Job, reference: str
) -> list[Fetched]:
    """The version's primary model file, with `.civitai.info` and a preview beside it."""
    version_id = civitai_version_id(reference)
    try:
        version = await civitai.version(version_id)
    except CivitaiUnavailable as e:
        raise DownloadFailed(str(e)) from e
    if version is None:
        raise DownloadFailed(f"Civitai has no model version {version_id}")
    files = [f for f in version.get("files") or [] if f.get("type", "Model") == "Model"]
    chosen = next((f for f in files if f.get("primary")), files[0] if files else None)
    if chosen is None or not chosen.get("name"):
        raise DownloadFailed(f"Civitai model version {version_id} lists no model file")
    expected = str((chosen.get("hashes") or {}).get("SHA256") or "").lower()
    if job.sha256 and expected and job.sha256.lower() != expected:
        raise DownloadFailed(f"Civitai says version {version_id} has SHA-256 {expected}, "
                             f"not {job.sha256.lower()}")  # fmt: skip
    url = chosen.get("downloadUrl") or version.get("downloadUrl")
    if not url:
        raise DownloadFailed(f"Civitai gives no download URL for version {version_id}")
    target = confined(job.roots, job.dest, str(chosen["name"]), field="civitai")
    hashes = await fetch_url(
        client, url, target, partial_path(target, job.id), sha256=job.sha256 or expected,
        headers=civitai.auth_headers, on_progress=job.on_progress,
    )  # fmt: skip
    stem = target.name.rsplit(".", 1)[0]
    info = target.with_name(f"{stem}.civitai.info")
    await asyncio.to_thread(info.write_text, json.dumps(version, indent=2))
    images = [i.get("url") for i in version.get("images") or [] if i.get("url")]
    if images:
        try:
            preview = await civitai.download(str(images[0]))
            await asyncio.to_thread(target.with_name(f"{stem}.preview.png").write_bytes, preview)
        except CivitaiUnavailable as e:  # the model is what matters
            log.info("no preview for Civitai version %s: %s", version_id, e)
    return [Fetched(target, hashes, url.split("?", 1)[0])]


def from_huggingface(job: Job, repo: str, files: list[str], revision: str) -> list[Fetched]:
    """Each file with `hf_hub_download` into the destination folder (run in a thread).

    `HF_ENDPOINT` and `HF_TOKEN` are read now (huggingface_hub reads the endpoint only
    when imported). The Hub's ETag is the SHA-256 of an LFS file, so every such file
    is verified even when no hash was given.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import (
        HfHubHTTPError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
    )

    endpoint = os.environ.get("HF_ENDPOINT") or None
    token = os.environ.get("HF_TOKEN") or None
    folder = confined(job.roots, job.dest, "x", field="dest").parent
    rev = revision or "main"
    plans = []
    name = ""
    try:
        for name in files:
            target = confined(job.roots, job.dest, name)
            meta = get_hf_file_metadata(
                hf_hub_url(repo, name, revision=rev, endpoint=endpoint), token=token
            )
            etag = (meta.etag or "").strip('"')
            expected = job.sha256 if len(files) == 1 and job.sha256 else ""
            if not expected and SHA256.fullmatch(etag):
                expected = etag
            plans.append((name, target, int(meta.size or 0), expected.lower()))
        check_space(folder, sum(size for *_, size, _ in plans))
        total = sum(size for *_, size, _ in plans)
        done_before = 0
        fetched = []
        for name, target, size, expected in plans:
            already = existing(target, expected)
            if already is None:
                progress = _progress_class(job, done_before, total)
                path = Path(
                    hf_hub_download(
                        repo, name, revision=rev, local_dir=folder, endpoint=endpoint,
                        token=token, tqdm_class=progress,  # type: ignore[arg-type]
                    )
                )  # fmt: skip
                job.on_verifying()
                hashes = hash_file(path, tensor_hash=True)
                if expected and hashes.sha256 != expected:
                    path.unlink(missing_ok=True)
                    raise DownloadFailed(
                        f"SHA-256 mismatch for {name}: expected {expected}, got "
                        f"{hashes.sha256}; the downloaded file was deleted"
                    )
            else:
                path, hashes = target, already
            done_before += size
            job.on_progress(done_before, total)
            fetched.append(Fetched(path, hashes, f"hf://{repo}/{name}@{rev}"))
        return fetched
    except RepositoryNotFoundError as e:
        raise DownloadFailed(f"Hugging Face has no repository {repo!r} (or it needs "
                             "HF_TOKEN)") from e  # fmt: skip
    except RemoteEntryNotFoundError as e:
        raise DownloadFailed(f"{repo} has no file {name} (revision {rev})") from e
    except HfHubHTTPError as e:
        raise DownloadFailed(f"Hugging Face: {str(e).splitlines()[0]}") from e
    except (httpx.HTTPError, OSError, ValueError) as e:
        if isinstance(e, DownloadFailed | Cancelled):
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        raise DownloadFailed(f"Hugging Face download failed: {type(e).__name__}: {first}") from e


def _progress_class(job: Job, before: int, total: int) -> type:
    """A tqdm stand-in for `hf_hub_download(tqdm_class=...)`: reports bytes to the job
    and stops the download (by raising in the worker thread) once it is cancelled."""

    class Progress:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.n = int(kwargs.get("initial") or 0)
            job.on_progress(before + self.n, total)  # started (it reports every 10 MiB)

        def __enter__(self) -> Progress:
            return self

        def __exit__(
            self, kind: type[BaseException] | None, value: BaseException | None,
            trace: TracebackType | None,
        ) -> None:  # fmt: skip
            return None

        def update(self, n: float | None = 1) -> None:
            if job.cancelled.is_set():
                raise Cancelled
            self.n += int(n or 0)
            job.on_progress(before + self.n, total)

        def close(self) -> None:
            return None

    return Progress
