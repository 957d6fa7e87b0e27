"""Every model hash from one read of the file (PROTOCOLS.md §3).

- sha256: the whole file; AutoV2 is its first 10 hex digits.
- AutoV1: sha256 of the 64 KiB at offset 1 MiB, first 8 hex digits (A1111's old
  `model_hash`); empty for files too short to have those bytes.
- AutoV3 / kohya "addnet": sha256 of a safetensors file's tensor data (after the
  8 + N header bytes), so metadata edits do not change it.
- BLAKE3 of the whole file, when the `blake3` package is installed.

hashlib and blake3 release the GIL on large updates, so files hashed on several
threads use several cores.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

try:
    import blake3 as _blake3
except ImportError:  # optional
    _blake3 = None

BLOCK = 4 * 1024 * 1024
AUTOV1_OFFSET = 0x100000
AUTOV1_LENGTH = 0x10000
HAS_BLAKE3 = _blake3 is not None
SAFETENSORS_SUFFIXES = {".safetensors", ".sft"}


@dataclass(frozen=True)
class FileHashes:
    sha256: str
    autov1: str
    autov3: str = ""  # safetensors only, and only when asked for
    blake3: str = ""

    @property
    def autov2(self) -> str:
        return self.sha256[:10]


def hash_file(
    path: Path,
    *,
    tensor_hash: bool = False,
    blake3: bool = False,
    on_bytes: Callable[[int], None] | None = None,
) -> FileHashes:
    """Hashes `path` in one pass.

    Args:
        tensor_hash: also the safetensors tensor-data hash (AutoV3); needs a
            safetensors file (ignored otherwise). Costs a second SHA-256 pass in CPU.
        blake3: also BLAKE3 (when installed).
        on_bytes: called with the byte count after each block (progress).

    Raises:
        OSError: the file cannot be read.
    """
    full = hashlib.sha256()
    tensors = hashlib.sha256() if tensor_hash else None
    b3 = _blake3.blake3(max_threads=1) if blake3 and _blake3 is not None else None
    data_start = -1
    is_safetensors = path.suffix.lower() in SAFETENSORS_SUFFIXES
    legacy = bytearray()
    offset = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            block = f.read(BLOCK)
            if not block:
                break
            full.update(block)
            if b3 is not None:
                b3.update(block)
            if offset == 0 and tensors is not None and len(block) >= 8 and is_safetensors:
                data_start = 8 + struct.unpack("<Q", block[:8])[0]
            if tensors is not None and data_start >= 0:
                end = offset + len(block)
                if end > data_start:
                    tensors.update(memoryview(block)[max(0, data_start - offset) :])
            if len(legacy) < AUTOV1_LENGTH and offset + len(block) > AUTOV1_OFFSET:
                start = max(0, AUTOV1_OFFSET - offset)
                legacy += block[start : start + AUTOV1_LENGTH - len(legacy)]
            offset += len(block)
            if on_bytes is not None:
                on_bytes(len(block))
    return FileHashes(
        sha256=full.hexdigest(),
        # A file too short for the 64 KiB at 1 MiB has no meaningful AutoV1 (A1111 would
        # hash the short or empty read, giving many files the same value; Civitai
        # leaves it null): none is recorded.
        autov1=hashlib.sha256(bytes(legacy)).hexdigest()[:8]
        if len(legacy) == AUTOV1_LENGTH
        else "",
        autov3=tensors.hexdigest() if tensors is not None and 0 <= data_start <= offset else "",
        blake3=b3.hexdigest() if b3 is not None else "",
    )
