"""`modules.script_callbacks`: the hooks extensions register."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

callbacks: dict[str, list[Any]] = defaultdict(list)


def clear_callbacks() -> None:
    callbacks.clear()


def _add(kind: str, fn: Any) -> None:
    callbacks[kind].append(fn)


def on_app_started(fn: Any) -> None:
    _add("app_started", fn)


def on_ui_tabs(fn: Any) -> None:
    _add("ui_tabs", fn)


def on_ui_settings(fn: Any) -> None:
    _add("ui_settings", fn)


def on_model_loaded(fn: Any) -> None:
    _add("model_loaded", fn)


def on_before_component(fn: Any) -> None:
    _add("before_component", fn)


def on_after_component(fn: Any) -> None:
    _add("after_component", fn)


def on_script_unloaded(fn: Any) -> None:
    _add("script_unloaded", fn)


def app_started_callback(demo: Any, app: Any) -> None:
    for fn in callbacks["app_started"]:
        fn(demo, app)


def ui_tabs_callback() -> list[Any]:
    tabs: list[Any] = []
    for fn in callbacks["ui_tabs"]:
        tabs += fn() or []
    return tabs


def ui_settings_callback() -> None:
    for fn in callbacks["ui_settings"]:
        fn()


def before_component_callback(component: Any, **kwargs: Any) -> None:
    for fn in callbacks["before_component"]:
        fn(component, **kwargs)


def after_component_callback(component: Any, **kwargs: Any) -> None:
    for fn in callbacks["after_component"]:
        fn(component, **kwargs)
