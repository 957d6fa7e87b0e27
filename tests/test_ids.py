"""Ids for jobs, results and attempts: random, from the OS's generator, read a pool at a
time (os.urandom lets go of the GIL, and on the event loop taking it back waited for
the busy store thread)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from stablequeue_coordinator.common import RANDOM_POOL, random_hex, random_uuid


def test_ids_are_random_and_never_repeat_across_pools() -> None:
    ids = [random_hex(8) for _ in range(3 * RANDOM_POOL // 8 + 5)]  # several pools
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)
    attempts = {random_uuid() for _ in range(1000)}
    assert len(attempts) == 1000
    assert {uuid.UUID(a).version for a in attempts} == {4}
    assert len(random_hex(RANDOM_POOL + 10)) == 2 * (RANDOM_POOL + 10)  # more than a pool


def test_a_forked_child_takes_none_of_its_parents_bytes() -> None:
    """A child forked with bytes left in the pool would repeat the parent's next ids."""
    code = (
        "import os, sys\n"
        "from stablequeue_coordinator.common import random_hex\n"
        "random_hex(8)\n"  # a pool is read; most of it is left
        "r, w = os.pipe()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.write(w, random_hex(8).encode()); os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "print(os.read(r, 16).decode(), random_hex(8))\n"
    )
    child, parent = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ},
    ).stdout.split()
    assert child != parent
