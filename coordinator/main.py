"""`sq-coordinator`: runs the coordinator until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
from pathlib import Path

from pydantic import ValidationError

from stablequeue_coordinator.config import load_settings
from stablequeue_coordinator.logs import configure_logging
from stablequeue_coordinator.server import start_coordinator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="sq-coordinator",
        description="StableQueue coordinator (settings also from SQ_* variables or --config)",
    )
    parser.add_argument("--config", type=Path, help="YAML file of settings")
    parser.add_argument("--listen", help="HOST:PORT to serve on (default 127.0.0.1:50051)")
    parser.add_argument(
        "--http-listen",
        help="HOST:PORT of the web console and HTTP API (default 127.0.0.1:50080; 'off': none)",
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        dest="http_cors_origins",
        help="an origin whose web pages may call the HTTP API (repeatable; none by default)",
    )
    parser.add_argument("--data-dir", type=Path, help="data folder (default ./data)")
    parser.add_argument("--database-url", help="SQLAlchemy URL (default SQLite in the data folder)")
    parser.add_argument(
        "--require-auth",
        action="store_const",
        const=True,
        help="loopback callers need an API key too",
    )
    parser.add_argument("--output-dir", type=Path, help="image folder (default DATA_DIR/outputs)")
    parser.add_argument("--max-attempts", type=int, help="tries per job (default 3)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ...")
    parser.add_argument(
        "--model-root",
        type=Path,
        action="append",
        dest="model_roots",
        help="a folder of model files for the library (repeatable)",
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    settings = load_settings(
        args.config,
        listen=args.listen,
        http_listen=args.http_listen,
        http_cors_origins=args.http_cors_origins,
        data_dir=args.data_dir,
        database_url=args.database_url,
        require_auth=args.require_auth,
        log_level=args.log_level,
        output_dir=args.output_dir,
        max_attempts=args.max_attempts,
        model_roots=args.model_roots,
    )
    configure_logging(settings.log_level)
    coordinator = await start_coordinator(settings)
    # What start-up made (modules, tables, compiled statements: ~140,000 objects) lives
    # as long as the process: out of the collector's sight, a full collection no
    # longer walks it (measured: 63 ms of CPU each, every few thousand jobs).
    gc.collect()
    gc.freeze()
    # Printed for people and for tests that start us on port 0.
    print(f"sq-coordinator listening on {coordinator.address}", flush=True)
    if coordinator.http_url:
        print(f"sq-coordinator console and HTTP API on {coordinator.http_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopped, lost = asyncio.create_task(stop.wait()), asyncio.create_task(coordinator.lost.wait())
    await asyncio.wait({stopped, lost}, return_when=asyncio.FIRST_COMPLETED)
    await coordinator.stop()
    if coordinator.lost.is_set():
        raise LeaseLost("another coordinator took over this database; run me again as a standby")


class LeaseLost(Exception):
    """This coordinator was the active one and another took over."""


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        asyncio.run(serve(args))
    except LeaseLost as e:
        print(f"sq-coordinator: {e}", file=sys.stderr)
        sys.exit(3)
    except (ValidationError, ValueError, RuntimeError, OSError) as e:
        print(f"sq-coordinator: {e}", file=sys.stderr)
        sys.exit(2)
