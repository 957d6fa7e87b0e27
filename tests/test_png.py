"""The PNG text chunks a completed job's images get (read back by Pillow, as Forge's
PNG Info tab and the gallery read them)."""

from __future__ import annotations

import io
import os

import PIL.Image
import PIL.PngImagePlugin
import pytest

from stablequeue_coordinator.outputs import png


def image(text: dict[str, str], itxt: dict[str, str]) -> bytes:
    # Random pixels: a large image's IDAT data is split over several chunks.
    pixels = PIL.Image.frombytes("RGB", (256, 256), os.urandom(256 * 256 * 3))
    info = PIL.PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    for key, value in itxt.items():
        info.add_itxt(key, value)
    out = io.BytesIO()
    pixels.save(out, "PNG", pnginfo=info)
    return out.getvalue()


def test_a_text_chunk_is_added_or_replaced_and_the_pixels_are_kept_as_they_came() -> None:
    data = image({"parameters": "old", "prompt": "{}"}, {"comment": "ünïcode"})
    assert png.size(data) == (256, 256)
    assert png.text(data) == {"parameters": "old", "prompt": "{}", "comment": "ünïcode"}

    added = png.with_text(data, "parameters", "Steps: 2, Seed: 5")
    assert png.text(added) == {
        "parameters": "Steps: 2, Seed: 5",
        "prompt": "{}",
        "comment": "ünïcode",
    }
    pixel_chunks = [payload for kind, payload in png.chunks(data) if kind == b"IDAT"]
    assert [p for k, p in png.chunks(added) if k == b"IDAT"] == pixel_chunks
    with PIL.Image.open(io.BytesIO(added)) as read:
        assert read.text["parameters"] == "Steps: 2, Seed: 5"
        assert read.tobytes() == PIL.Image.open(io.BytesIO(data)).tobytes()

    unicode = png.with_text(added, "parameters", "a 猫, Seed: 7")  # not Latin-1: iTXt
    assert png.text(unicode)["parameters"] == "a 猫, Seed: 7"
    assert png.seed_in(unicode) == 7


def test_what_is_not_a_png_is_refused() -> None:
    with pytest.raises(png.NotPng):
        png.size(b"GIF89a....")
    with pytest.raises(png.NotPng):
        png.text(b"")
    assert png.seed_in(b"\xff\xd8\xff") == -1
