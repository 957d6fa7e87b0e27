"""Helpers every part of the coordinator uses: time as stored, protobuf timestamps, enum
checks and reading a file off the event loop."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import threading
import uuid
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.timestamp_pb2 import Timestamp

from stablequeue_coordinator.errors import InvalidArgument

EPOCH = datetime(1970, 1, 1)
# A server's alias, a node's or host's name: 1-100 letters, digits, '.', '_' or '-'.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
log = logging.getLogger(__name__)


class _RandomBytes:
    """Random bytes from the OS, read RANDOM_POOL bytes at a time. `os.urandom` lets go
    of the GIL for its system call, and taking it back waits while another thread runs
    Python: on the event loop, beside a busy thread, one uuid4() took ~0.5 ms of wall
    time (2 us alone), and the dispatcher made one per job."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._used = 0
        os.register_at_fork(after_in_child=self._forget)  # never the parent's bytes

    def take(self, size: int) -> bytes:
        with self._lock:
            if self._used + size > len(self._pool):
                self._pool, self._used = os.urandom(max(RANDOM_POOL, size)), 0
            start, self._used = self._used, self._used + size
            return self._pool[start : self._used]

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._pool, self._used = b"", 0


RANDOM_POOL = 4096
_random = _RandomBytes()


def random_hex(size: int) -> str:
    """`size` random bytes as hex, from the OS's generator (as `secrets.token_hex`)."""
    return _random.take(size).hex()


def random_uuid() -> str:
    """A random (version 4) UUID, from the OS's generator (as `uuid.uuid4`)."""
    return str(uuid.UUID(bytes=_random.take(16), version=4))


def utcnow() -> datetime:
    """Naive UTC, the form stored in every timestamp column."""
    return datetime.now(UTC).replace(tzinfo=None)


def timestamp(value: datetime | None) -> Timestamp | None:
    """A stored naive-UTC datetime as a protobuf Timestamp (None stays unset).

    Plain arithmetic: `Timestamp.FromDatetime` showed up in the submit profile.
    """
    if value is None:
        return None
    delta = value - EPOCH
    return Timestamp(seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000)


def check_enum(field: str, wrapper: EnumTypeWrapper, value: int, *, allow_zero: bool) -> None:
    """Rejects enum numbers the contract does not define (proto3 enums are open)."""
    if value not in _numbers(wrapper) or (value == 0 and not allow_zero):
        names = ", ".join(n for n, _ in wrapper.items() if not n.endswith("UNSPECIFIED"))
        raise InvalidArgument(field, f"unknown value {value}; expected one of {names}")


@functools.cache
def _numbers(wrapper: EnumTypeWrapper) -> frozenset[int]:
    """An enum's numbers (`values()` builds a list on every call: every submit checks
    a few enums)."""
    return frozenset(wrapper.values())


async def read_chunks(
    path: Path, size: int = 256 << 10, offset: int = 0
) -> AsyncIterator[tuple[bytes, int, int]]:
    """The file from `offset` in chunks of `size`, read off the event loop, each as
    (data, its offset, the file's size).

    Raises:
        InvalidArgument: `offset` is past the end ("offset").
        OSError: the file cannot be read.
    """
    with path.open("rb") as f:
        total = os.fstat(f.fileno()).st_size
        if not 0 <= offset <= total:
            raise InvalidArgument("offset", f"must be within 0 .. {total}")
        await asyncio.to_thread(f.seek, offset)
        while data := await asyncio.to_thread(f.read, size):
            yield data, offset, total
            offset += len(data)


class Background:
    """Tasks a service starts and does not wait for at once: kept (none is lost to the
    garbage collector), a failure logged with `what`, all awaited by `wait()`."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", self._what, exc_info=task.exception())

    async def wait(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)


def repeated(field: Any) -> bool:
    """Whether a protobuf field descriptor is a repeated (or map) field: protobuf 7
    dropped `label` for `is_repeated`; older releases have only `label`."""
    flag = getattr(field, "is_repeated", None)
    return bool(flag) if flag is not None else field.label == field.LABEL_REPEATED
