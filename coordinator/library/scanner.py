"""Walking model roots and examining each file: hashes, type, base model, metadata.

Everything here runs on worker threads and touches only the filesystem; the
library service stores what it returns. A bad file (unreadable, truncated,
corrupt header, gone mid-scan) becomes an error string for that file, never an
exception out of the scan.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from stablequeue_coordinator.library import classify, metadata
from stablequeue_coordinator.library.hashing import SAFETENSORS_SUFFIXES, FileHashes, hash_file
from stablequeue_coordinator.library.safetensors_header import HeaderError, read_header

# Above this size a safetensors file's tensor-data hash (AutoV3) is skipped: it
# doubles the CPU of hashing a checkpoint and only LoRA-sized files are looked
# up by it (A1111's LoRA hash). Set per scan.
TENSOR_HASH_MAX = 2 * 1024**3


@dataclass(frozen=True)
class Found:
    """A candidate file from the walk."""

    root: Path
    path: Path
    size: int
    mtime_ns: int

    @property
    def relative(self) -> PurePath:
        return self.path.relative_to(self.root)


@dataclass
class Examined:
    """What one file turned out to be."""

    found: Found
    hashes: FileHashes
    type: str = ""
    base_model: str = ""
    info: metadata.ModelInfo = field(default_factory=metadata.ModelInfo)
    preview: Path | None = None
    errors: list[str] = field(default_factory=list)


def walk(roots: list[Path]) -> tuple[list[Found], list[str]]:
    """Model files under `roots` (symlinks followed, loops cut) and per-path errors."""
    found: list[Found] = []
    errors: list[str] = []
    for root in roots:
        if not root.is_dir():
            errors.append(f"{root}: model root does not exist or is not a folder")
            continue
        seen: set[tuple[int, int]] = set()

        def on_error(e: OSError) -> None:
            errors.append(f"{e.filename}: {e.strerror or e}")

        for folder, dirs, files in os.walk(root, followlinks=True, onerror=on_error):
            try:
                st = os.stat(folder)
            except OSError as e:
                errors.append(f"{folder}: {e.strerror or e}")
                dirs[:] = []
                continue
            if (st.st_dev, st.st_ino) in seen:
                errors.append(f"{folder}: symlink loop, not followed again")
                dirs[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                path = Path(folder) / name
                if path.suffix.lower() not in classify.EXTENSIONS or name.startswith("."):
                    continue
                try:
                    fst = path.stat()
                except OSError as e:  # vanished, or a dangling link
                    errors.append(f"{path}: {e.strerror or e}")
                    continue
                found.append(Found(root, path, fst.st_size, fst.st_mtime_ns))
    return found, errors


def examine(
    found: Found,
    *,
    tensor_hash: bool | None = None,
    on_bytes: Callable[[int], None] | None = None,
    hashes: FileHashes | None = None,
) -> Examined | str:
    """Hashes and classifies one file; a string is the reason it could not be.

    `hashes`: already known (a download hashed the bytes as they arrived), so only
    the header and sidecars are read.
    """
    path = found.path
    header = None
    errors: list[str] = []
    is_safetensors = path.suffix.lower() in SAFETENSORS_SUFFIXES
    try:
        if is_safetensors:
            try:
                header = read_header(path)
            except HeaderError as e:
                errors.append(f"{path}: {e}")  # still hashed: it is a file people use
        want_tensor_hash = (
            tensor_hash if tensor_hash is not None else found.size <= TENSOR_HASH_MAX
        ) and header is not None
        if hashes is None:
            hashes = hash_file(path, tensor_hash=want_tensor_hash, on_bytes=on_bytes)
    except OSError as e:
        return f"{path}: {e.strerror or e}"
    names = list(header.tensors) if header else []
    meta = header.metadata if header else {}
    kind = classify.type_from_folder(found.relative) or classify.type_from_tensors(names)
    info = metadata.read_sidecars(path, errors)
    info.fill(metadata.from_safetensors(meta))
    base = info.base_model or classify.base_model(meta, names)
    return Examined(
        found=found,
        hashes=hashes,
        type=kind or "other",
        base_model=base,
        info=info,
        preview=metadata.find_preview(path),
        errors=errors,
    )
