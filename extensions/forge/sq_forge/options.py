"""The "StableQueue" settings section and the values the extension reads from it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from stablequeue import Client

SECTION = ("stablequeue", "StableQueue")
DEFAULT_ADDRESS = "127.0.0.1:50051"


@dataclass(frozen=True)
class Settings:
    address: str
    api_key: str
    alias: str
    public_url: str
    priority: int
    sync: bool
    sync_minutes: float

    def client(self, timeout: float = 15.0) -> Client:
        return Client(self.address, self.api_key, timeout=timeout)


def register(shared: Any, gr: Any) -> None:
    """Adds the settings to Settings → StableQueue (`on_ui_settings`)."""
    info = shared.OptionInfo
    options = {
        "stablequeue_address": info(
            os.environ.get("SQ_ADDR", DEFAULT_ADDRESS),
            "Coordinator address (host:port; an active and standbys: comma-separated)",
            gr.Textbox,
            section=SECTION,
        ),
        "stablequeue_api_key": info(
            "",
            "API key (from `sq keys create`; an admin key also registers this server)",
            gr.Textbox,
            {"type": "password"},
            section=SECTION,
        ),
        "stablequeue_alias": info(
            "", "This server's alias in StableQueue", gr.Textbox, section=SECTION
        ),
        "stablequeue_public_url": info(
            "",
            "This server's URL as the coordinator reaches it (needs --api), e.g. http://gpu1:7860",
            gr.Textbox,
            section=SECTION,
        ),
        "stablequeue_priority": info(
            0, "Default priority (higher runs first)", gr.Number, {"precision": 0}, section=SECTION
        ),
        "stablequeue_sync": info(
            True, "Send this server's models to StableQueue", gr.Checkbox, section=SECTION
        ),
        "stablequeue_sync_minutes": info(
            10,
            "Full model sync every N minutes",
            gr.Slider,
            {"minimum": 1, "maximum": 120, "step": 1},
            section=SECTION,
        ),
    }
    for key, option in options.items():
        shared.opts.add_option(key, option)


def current() -> Settings:
    """The settings now (changed settings apply without a restart)."""
    from modules import shared

    opts = shared.opts

    def get(key: str, default: Any) -> Any:
        value = getattr(opts, key, None)
        return default if value is None else value

    return Settings(
        address=str(get("stablequeue_address", "")).strip()
        or os.environ.get("SQ_ADDR", DEFAULT_ADDRESS),
        api_key=str(get("stablequeue_api_key", "")).strip() or os.environ.get("SQ_API_KEY", ""),
        alias=str(get("stablequeue_alias", "")).strip(),
        public_url=str(get("stablequeue_public_url", "")).strip().rstrip("/"),
        priority=int(get("stablequeue_priority", 0) or 0),
        sync=bool(get("stablequeue_sync", True)),
        sync_minutes=float(get("stablequeue_sync_minutes", 10) or 10),
    )
