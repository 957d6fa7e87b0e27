"""Reading a safetensors header (PROTOCOLS.md §5) without touching the tensors.

The file is an 8-byte little-endian header length N, N bytes of JSON, then the
tensor data. Only the first 8 + N bytes are read. Every way a file can be
broken is reported as `HeaderError` with the reason, never as a crash.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

MAX_HEADER = 100 * 1024 * 1024  # the reference implementation's limit


class HeaderError(ValueError):
    """A safetensors header that cannot be used, with the reason."""


@dataclass
class Header:
    # Where the tensor data starts (8 + N): the tensor-data hash covers the rest.
    data_start: int
    metadata: dict[str, str] = field(default_factory=dict)
    tensors: dict[str, dict[str, Any]] = field(default_factory=dict)


def read_header(path: Path) -> Header:
    """The header of the safetensors file at `path`.

    Raises:
        HeaderError: truncated, oversized or invalid header.
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        return parse_header(f, path.stat().st_size)


def parse_header(f: BinaryIO, file_size: int) -> Header:
    prefix = f.read(8)
    if len(prefix) < 8:
        raise HeaderError(f"file is {file_size} bytes, too short for a safetensors header")
    (length,) = struct.unpack("<Q", prefix)
    if length > MAX_HEADER:
        raise HeaderError(f"header length {length} exceeds the {MAX_HEADER} byte limit")
    if 8 + length > file_size:
        raise HeaderError(f"header length {length} runs past the end of the file ({file_size})")
    raw = f.read(length)
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HeaderError(f"header is not valid JSON: {e}") from None
    if not isinstance(document, dict):
        raise HeaderError("header is not a JSON object")
    metadata = document.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise HeaderError("__metadata__ is not an object")
    data_size = file_size - 8 - length
    tensors: dict[str, dict[str, Any]] = {}
    for name, info in document.items():
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_size
        ):
            raise HeaderError(f"tensor {name!r} has invalid data_offsets {offsets!r}")
        tensors[name] = info
    return Header(
        data_start=8 + length,
        metadata={str(k): str(v) for k, v in metadata.items()},
        tensors=tensors,
    )
