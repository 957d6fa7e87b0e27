"""Logging for the coordinator and the agent: one format, and HTTP clients kept quiet.

httpx, httpcore and huggingface_hub's client log every request at INFO with its
full URL — pre-signed download URLs and `?token=` queries included — so they are
held at WARNING whatever the chosen level: no secret reaches a log.
"""

from __future__ import annotations

import logging

CHATTY = ("httpx", "httpx2", "httpcore", "httpcore2", "huggingface_hub", "urllib3")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
