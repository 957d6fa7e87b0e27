"""A model process's output, as sd-server and sd-cli write it (PROTOCOLS.md §12).

They redraw a progress bar in place while sampling (`  |====>   | 3/40 - 1.56it/s`, or
`s/it` when slow), each redraw starting with `\\r` and no newline until sampling ends;
a reader that waits for newlines sees none of it until the end. `Lines` splits the
stream at `\\r` as well as `\\n`; `step_of` reads a progress line.
"""

from __future__ import annotations

import collections
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

PROGRESS = re.compile(r"\|\s*(\d+)/(\d+)\s*-\s*([\d.]+|inf|nan)\s*(it/s|s/it)")
# Terminal escapes (colours, cursor moves) some builds print around log lines.
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
CHUNK = 4096


@dataclass(frozen=True)
class Step:
    """One redraw of the progress bar: step `done` of `total`, at `per_second` steps/s."""

    done: int
    total: int
    per_second: float


def step_of(line: str) -> Step | None:
    """The progress a line shows, or None for any other line."""
    found = PROGRESS.search(line)
    if found is None:
        return None
    done, total = int(found.group(1)), int(found.group(2))
    try:
        rate = float(found.group(3))
    except ValueError:
        rate = 0.0
    per_second = rate if found.group(4) == "it/s" else (1 / rate if rate else 0.0)
    return Step(done, total, per_second)


class Sampling:
    """Tells sampling steps from the other bars of the same shape: sd.cpp draws its
    tiled VAE encode/decode with the same bar (tiles done / tiles), between its
    "sampling completed" and the next "sampling using … method" lines. A process
    that never printed those lines (an older build) has all its bars counted."""

    def __init__(self) -> None:
        self.marked = False  # it prints the sampling lines
        self.sampling = False

    def step(self, line: str) -> Step | None:
        """The sampling step `line` shows, or None (any other line or bar)."""
        if "sampling using " in line:
            self.marked = self.sampling = True
        elif "sampling completed" in line:
            self.marked, self.sampling = True, False
        step = step_of(line)
        return step if step is not None and (self.sampling or not self.marked) else None


def keep_tail(tail: collections.deque[str], line: str) -> None:
    """Appends `line`, a progress redraw replacing the redraw before it."""
    if tail and is_bar(line) and is_bar(tail[-1]):
        tail[-1] = line
    else:
        tail.append(line)


# Any progress bar: sampling (it/s, s/it) and also loading tensors (`| 644/686 - 555.00MB/s`).
BAR = re.compile(r"\s*\|[^|\r\n]*\|\s*\d+/\d+\s*-\s*(?:[\d.]+|inf|nan)\s*[A-Za-z]*/[A-Za-z]+")


def is_bar(line: str) -> bool:
    """True for a progress bar redraw of any kind (never worth keeping as a message)."""
    return BAR.search(line) is not None


def readable(message: str) -> str:
    """An error message without terminal escapes, progress bars or line breaks."""
    text = BAR.sub("", ESCAPES.sub("", message))
    return re.sub(r"\s*[\r\n]+\s*", " | ", text).strip(" |")


def clean(line: str) -> str:
    """A line without terminal escapes and trailing blanks."""
    return ESCAPES.sub("", line).rstrip()


async def lines(stream: AsyncIterator[bytes] | object) -> AsyncIterator[str]:
    """Every line of an asyncio stream (`read(n)`), split at `\\r`, `\\n` or `\\r\\n`,
    escapes removed; empty ones skipped."""
    pending = ""
    reader = stream
    while True:
        chunk = await reader.read(CHUNK)  # type: ignore[attr-defined]
        if not chunk:
            break
        pending += chunk.decode(errors="replace")
        *complete, pending = re.split(r"\r\n|\r|\n", pending)
        for line in complete:
            line = clean(line)
            if line:
                yield line
    line = clean(pending)
    if line:
        yield line
