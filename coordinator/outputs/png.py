"""Just enough PNG: read the size, add a text chunk without re-encoding the pixels."""

from __future__ import annotations

import re
import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"


class NotPng(ValueError):
    pass


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of every chunk. Raises NotPng for anything else."""
    if not data.startswith(SIGNATURE):
        raise NotPng("not a PNG")
    out, offset = [], len(SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        out.append((kind, data[offset + 8 : offset + 8 + length]))
        offset += 12 + length
        if kind == b"IEND":
            break
    return out


def size(data: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk."""
    first = chunks(data)[0]
    if first[0] != b"IHDR":
        raise NotPng("PNG without IHDR")
    width, height = struct.unpack(">II", first[1][:8])
    return width, height


def text(data: bytes) -> dict[str, str]:
    """tEXt and uncompressed iTXt entries (for tests and gallery metadata)."""
    found = {}
    for kind, payload in chunks(data):
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
    out = bytearray(SIGNATURE)
    inserted = False
    for chunk_kind, chunk_payload in chunks(data):
        if chunk_kind in (b"tEXt", b"iTXt") and chunk_payload.split(b"\0", 1)[0] == key.encode(
            "latin-1"
        ):
            continue
        if chunk_kind == b"IDAT" and not inserted:
            out += _chunk(kind, payload)
            inserted = True
        out += _chunk(chunk_kind, chunk_payload)
    return bytes(out)
