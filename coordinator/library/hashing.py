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

import collections
import hashlib
import struct
from collections.abc import Callable
from concurrent.futures import Executor, Future
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


class Hasher:
    """Every hash of one file, fed its bytes in order (any block sizes).

    Args:
        tensor_hash: also the safetensors tensor-data hash (AutoV3); only for a
            safetensors file. Costs a second SHA-256 pass in CPU.
        blake3: also BLAKE3 (when installed).
    """

    def __init__(
        self, *, tensor_hash: bool = False, blake3: bool = False, helper: Executor | None = None
    ) -> None:
        # With a helper thread, the tensor-data hash runs there, beside the full one
        # (hashlib releases the GIL): a download hashes at the speed of one SHA-256.
        self._helper = helper
        self._helped: collections.deque[Future[None]] = collections.deque()
        self._full = hashlib.sha256()
        self._tensors = hashlib.sha256() if tensor_hash else None
        self._b3 = _blake3.blake3(max_threads=1) if blake3 and _blake3 is not None else None
        self._head = bytearray()  # the first 8 bytes: the safetensors header length
        self._data_start = -1
        self._legacy = bytearray()
        self.size = 0

    def update(self, block: bytes | memoryview) -> None:
        offset = self.size
        self._full.update(block)
        if self._b3 is not None:
            self._b3.update(block)
        if self._tensors is not None:
            if self._data_start < 0 and len(self._head) < 8:
                self._head += block[: 8 - len(self._head)]
                if len(self._head) == 8:
                    self._data_start = 8 + struct.unpack("<Q", bytes(self._head))[0]
            if self._data_start >= 0 and offset + len(block) > self._data_start:
                part = memoryview(block)[max(0, self._data_start - offset) :]
                if self._helper is None:
                    self._tensors.update(part)
                else:
                    self._helped.append(self._helper.submit(self._tensors.update, part))
                    if len(self._helped) > 8:
                        self._helped.popleft().result()
        if len(self._legacy) < AUTOV1_LENGTH and offset + len(block) > AUTOV1_OFFSET:
            start = max(0, AUTOV1_OFFSET - offset)
            self._legacy += block[start : start + AUTOV1_LENGTH - len(self._legacy)]
        self.size += len(block)

    def result(self) -> FileHashes:
        while self._helped:
            self._helped.popleft().result()
        tensors = self._tensors
        return FileHashes(
            sha256=self._full.hexdigest(),
            # A file too short for the 64 KiB at 1 MiB has no meaningful AutoV1 (A1111
            # would hash the short or empty read, giving many files the same value;
            # Civitai leaves it null): none is recorded.
            autov1=hashlib.sha256(bytes(self._legacy)).hexdigest()[:8]
            if len(self._legacy) == AUTOV1_LENGTH
            else "",
            autov3=tensors.hexdigest()
            if tensors is not None and 0 <= self._data_start <= self.size
            else "",
            blake3=self._b3.hexdigest() if self._b3 is not None else "",
        )


def is_safetensors(name: str | Path) -> bool:
    return Path(name).suffix.lower() in SAFETENSORS_SUFFIXES


def hash_file(
    path: Path,
    *,
    tensor_hash: bool = False,
    blake3: bool = False,
    on_bytes: Callable[[int], None] | None = None,
) -> FileHashes:
    """Hashes `path` in one pass.

    Args:
        tensor_hash: also the safetensors tensor-data hash (AutoV3); ignored for a
            file that is not safetensors.
        blake3: also BLAKE3 (when installed).
        on_bytes: called with the byte count after each block (progress).

    Raises:
        OSError: the file cannot be read.
    """
    hasher = Hasher(tensor_hash=tensor_hash and is_safetensors(path), blake3=blake3)
    with open(path, "rb", buffering=0) as f:
        while block := f.read(BLOCK):
            hasher.update(block)
            if on_bytes is not None:
                on_bytes(len(block))
    return hasher.result()
