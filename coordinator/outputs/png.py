"""Just enough PNG: read the size, add a text chunk without re-encoding the pixels."""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator

SIGNATURE = b"\x89PNG\r\n\x1a\n"


class NotPng(ValueError):
    pass


def _spans(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(type, start, end) of every chunk, its length, type and CRC included, without
    copying anything: an image's IDAT chunks are most of its bytes. Raises NotPng for
    anything else."""
    if not data.startswith(SIGNATURE):
        raise NotPng("not a PNG")
    offset = len(SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, offset)
        end = offset + 12 + length
        yield kind, offset, end
        offset = end
        if kind == b"IEND":
            break


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of every chunk. Raises NotPng for anything else."""
    return [(kind, data[start + 8 : end - 4]) for kind, start, end in _spans(data)]


def size(data: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk."""
    kind, start, _ = next(_spans(data), (b"", 0, 0))
    if kind != b"IHDR":
        raise NotPng("PNG without IHDR")
    width, height = struct.unpack(">II", data[start + 8 : start + 16])
    return width, height


def text(data: bytes) -> dict[str, str]:
    """tEXt and uncompressed iTXt entries (for tests and gallery metadata)."""
    found = {}
    for kind, start, end in _spans(data):
        if kind not in (b"tEXt", b"iTXt"):
            continue
        payload = data[start + 8 : end - 4]
        if kind == b"tEXt":
            key, _, value = payload.partition(b"\0")
            found[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"iTXt":
            key, _, rest = payload.partition(b"\0")
            compressed, rest = rest[0], rest[2:]
            _lang, _, rest = rest.partition(b"\0")
            _translated, _, value = rest.partition(b"\0")
            found[key.decode("latin-1")] = (zlib.decompress(value) if compressed else value).decode(
                "utf-8"
            )
    return found


SEED = re.compile(r"(?:^|[\s,])Seed: (\d+)")


def seed_in(data: bytes) -> int:
    """The seed an image's own `parameters` text names ("Seed: N", as A1111, Forge and
    stable-diffusion.cpp write it); -1 when it names none or is not a PNG."""
    try:
        found = SEED.search(text(data).get("parameters", ""))
    except (NotPng, ValueError, IndexError, struct.error, zlib.error):
        return -1
    return int(found.group(1)) if found else -1


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def with_text(data: bytes, key: str, value: str) -> bytes:
    """`data` with a `key` text chunk before the first IDAT (tEXt if Latin-1, else iTXt),
    like Pillow's PngInfo.add_text; an existing chunk with that key is replaced."""
    try:
        payload, kind = key.encode("latin-1") + b"\0" + value.encode("latin-1"), b"tEXt"
    except UnicodeEncodeError:
        payload = key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8")
        kind = b"iTXt"
    name = key.encode("latin-1")
    out = bytearray(SIGNATURE)
    inserted = False
    whole = memoryview(data)
    for chunk_kind, start, end in _spans(data):
        if (
            chunk_kind in (b"tEXt", b"iTXt")
            and data[start + 8 : end - 4].split(b"\0", 1)[0] == name
        ):
            continue
        if chunk_kind == b"IDAT" and not inserted:
            out += _chunk(kind, payload)
            inserted = True
        out += whole[start:end]  # as it came, CRC and all
    return bytes(out)
