"""Take-over benchmark (`make bench`): an active and a standby coordinator on
PostgreSQL, a Forge fake, jobs submitted all the time; the active one is SIGKILLed
several times (each time restarted as the standby).

Prints, over the kills, p50 and max of:
  * kill -> the standby's health says SERVING;
  * kill -> the first job dispatched by it (its claim; target < 10 s);
  * kill -> a client of both addresses is served again (a submit acknowledged).
Needs PostgreSQL at 127.0.0.1:5432 (database `test`); says so and stops without it.
"""

from __future__ import annotations

import argparse
import secrets
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from stablequeue import Client, StableQueueError, txt2img  # noqa: E402
from tests.conftest import PG_DSN, PG_URL  # noqa: E402
from tests.fakes.forge import FakeForge  # noqa: E402
from tests.helpers import register_server, wait_until  # noqa: E402
from tests.test_failover import Pair, first_dispatch_after  # noqa: E402

GOAL_S = 10.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=5)
    args = parser.parse_args()
    try:
        with psycopg.connect(PG_DSN, connect_timeout=3):
            pass
    except psycopg.OperationalError as e:
        print(f"take-over benchmark skipped: PostgreSQL is not reachable ({e})")
        return
    schema = "sq_bench_" + secrets.token_hex(6)
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    forge = FakeForge(step_seconds=0.01)
    with tempfile.TemporaryDirectory() as tmp:
        pair = Pair(Path(tmp), f"{PG_URL}?options=-csearch_path%3D{schema}")
        stop = threading.Event()
        acked: list[float] = []
        try:
            pair.active()
            with Client(pair.addresses) as sq:
                register_server(sq, "forge-1", "forge", forge.url)

            def submit() -> None:
                with Client(pair.addresses) as client:
                    while not stop.is_set():
                        try:
                            client.submit(txt2img("bench", steps=4))
                            acked.append(time.time())
                        except StableQueueError:
                            pass
                        time.sleep(0.05)

            threading.Thread(target=submit, daemon=True).start()
            serving, dispatched, served = [], [], []
            with Client(pair.addresses) as sq:
                for _ in range(args.kills):
                    time.sleep(2)
                    old = pair.active()
                    proc = pair.procs[old]
                    assert proc is not None
                    began = time.time()
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(10)
                    wait_until(lambda i=1 - old: pair.serving(i), 30)
                    serving.append(time.time() - began)
                    dispatched.append(first_dispatch_after(pair.addresses, began))
                    wait_until(lambda b=began: any(t > b for t in acked), 30)
                    served.append(min(t for t in acked if t > began) - began)
                    pair.start(old)
        finally:
            stop.set()
            pair.close()
            forge.close()
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
    print()
    print(f"StableQueue take-over benchmark ({args.kills} SIGKILLs of the active coordinator)")
    for label, values in (("kill -> standby SERVING", serving),
                          ("kill -> first job dispatched", dispatched),
                          ("kill -> client served again", served)):  # fmt: skip
        print(f"  {label:30s} p50 {statistics.median(values):5.2f} s   max {max(values):5.2f} s"
              f"   (goal < {GOAL_S:g} s)")  # fmt: skip


if __name__ == "__main__":
    main()
