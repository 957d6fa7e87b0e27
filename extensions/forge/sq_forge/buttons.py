"""Queue buttons beside Generate, their options, and the StableQueue tab.

The buttons are made when Forge creates `{tab}_generate` (an after-component
callback). Generate's own click is wired later in Forge's UI code, so the Queue
click is bound at the first component created after it in the same Blocks
(or, at the latest, when the tabs are built), with Generate's exact inputs
followed by ours (target, priority, count, seed mode).
"""

from __future__ import annotations

import contextlib
import html
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from sq_forge.capture import CaptureError, build_processing, spec_from_processing
from sq_forge.inventory import Syncer
from sq_forge.options import current
from stablequeue import StableQueueError
from stablequeue.dashboard.feed import QueueFeed, unreachable
from stablequeue.v1 import processes_pb2

log = logging.getLogger("stablequeue")
ANY = "Any server with the model"
THIS = "This server"
SEED_MODES = ["increment", "random", "fixed"]
SYNCER = Syncer()


@dataclass
class TabState:
    tab: str
    generate: Any = None
    root: Any = None
    buttons: list[Any] = field(default_factory=list)
    controls: list[Any] = field(default_factory=list)
    status: Any = None
    bound: bool = False


TABS: dict[str, TabState] = {}
_building = threading.local()


@contextlib.contextmanager
def _own_components() -> Iterator[None]:
    """Our own components do not re-enter the after-component callback."""
    _building.active = True
    try:
        yield
    finally:
        _building.active = False


def _root() -> Any:
    from gradio.context import Context

    return Context.root_block


def server_choices() -> list[str]:
    """The target choices: any, this server, then every Forge the coordinator knows."""
    settings = current()
    choices = [ANY, THIS]
    try:
        with settings.client(timeout=3) as client:
            listed = client.call("ListServers", processes_pb2.ListServersRequest(), "processes")
        choices += sorted(s.alias for s in listed.servers if s.alias != settings.alias)
    except StableQueueError as e:
        log.info("StableQueue: server list unavailable: %s", e.message)
    return choices


def controls(tab: str) -> None:
    """The accordion in the scripts area (`Script.ui`): target, priority, count, seed mode."""
    state = TABS.setdefault(tab, TabState(tab))
    settings = current()
    with _own_components(), gr.Accordion("StableQueue", open=False, elem_id=f"{tab}_sq_options"):
        with gr.Row():
            target = gr.Dropdown(
                label="Run on", choices=server_choices(), value=ANY, elem_id=f"{tab}_sq_target"
            )
            refresh = gr.Button("🔄", elem_id=f"{tab}_sq_refresh", scale=0, min_width=40)
            priority = gr.Number(
                label="Priority", value=settings.priority, precision=0, elem_id=f"{tab}_sq_priority"
            )
        with gr.Row():
            count = gr.Slider(
                label="Queue ×N: jobs", minimum=2, maximum=100, step=1, value=4,
                elem_id=f"{tab}_sq_count",
            )  # fmt: skip
            seed_mode = gr.Dropdown(
                label="Queue ×N: seeds", choices=SEED_MODES, value="increment",
                elem_id=f"{tab}_sq_seed_mode",
            )  # fmt: skip
    refresh.click(lambda: gr.update(choices=server_choices()), outputs=[target])
    state.controls = [target, priority, count, seed_mode]


def on_component(component: Any, **kwargs: Any) -> None:
    """`script_callbacks.on_after_component`: buttons after Generate; bind when ready."""
    if getattr(_building, "active", False):
        return
    elem_id = kwargs.get("elem_id") or getattr(component, "elem_id", None)
    for tab in ("txt2img", "img2img"):
        if elem_id == f"{tab}_generate":
            add_buttons(tab, component)
    bind_pending(final=False)


def add_buttons(tab: str, generate: Any) -> None:
    state = TABS.setdefault(tab, TabState(tab))
    state.generate, state.root, state.bound = generate, _root(), False
    with _own_components():
        state.buttons = [
            gr.Button("Queue", elem_id=f"{tab}_sq_queue", variant="secondary"),
            gr.Button("Queue ×N", elem_id=f"{tab}_sq_queue_many", variant="secondary"),
        ]
        state.status = gr.HTML("", elem_id=f"{tab}_sq_status")


def find_click(blocks: Any, component: Any) -> Any:
    """The function bound to `component`'s click in `blocks` (gradio 3.41 to 6)."""
    fns = getattr(blocks, "fns", None) or {}
    functions = list(fns.values()) if isinstance(fns, dict) else list(fns)
    dependencies = getattr(blocks, "dependencies", None)
    for index, function in enumerate(functions):
        targets = getattr(function, "targets", None)
        if targets is None and isinstance(dependencies, list) and index < len(dependencies):
            dep = dependencies[index]  # gradio 3: ids and one trigger name
            targets = [
                (t, dep.get("trigger", "click")) if isinstance(t, int) else tuple(t)
                for t in dep.get("targets", [])
            ]
        if any(t[0] == component._id and t[1] == "click" for t in targets or []):
            return function
    return None


def bind_pending(final: bool) -> None:
    """Binds each tab's Queue buttons once Generate's click exists."""
    for state in TABS.values():
        if state.bound or state.generate is None or not state.controls or not state.buttons:
            continue
        if not final and _root() is not state.root:
            continue
        generate = find_click(state.root, state.generate)
        if generate is None:
            if final:
                log.warning("StableQueue: no Generate click found on %s", state.tab)
            continue
        inputs = list(generate.inputs) + state.controls
        outputs = [state.status] if state.status is not None else []
        for button, many in zip(state.buttons, (False, True), strict=True):
            button.click(fn=handler(state.tab, many), inputs=inputs, outputs=outputs)
        state.bound = True


def handler(tab: str, many: bool) -> Callable[..., str]:
    def queue(request: gr.Request, *values: Any) -> str:
        *generate_values, target, priority, count, seed_mode = values
        return submit(
            tab, request, generate_values, target, priority, count if many else 1, seed_mode
        )

    return queue


TAB_LINK = '<a href="#" id="sq_tab_link" onclick="return stablequeueShowTab()">StableQueue tab</a>'


def message(text: str, error: bool = False, link: bool = False) -> str:
    color = "#dc2626" if error else "inherit"
    more = f" — see the {TAB_LINK}." if link else ""
    return f'<div class="sq-message" style="color:{color}">{html.escape(text)}{more}</div>'


def submit(
    tab: str,
    request: Any,
    values: list[Any],
    target: str,
    priority: Any,
    count: Any,
    seed_mode: str,
) -> str:
    """Builds the job from Generate's inputs and submits it; returns the message to show."""
    settings = current()
    server = "" if target in (ANY, "", None) else target
    if target == THIS:
        if not settings.alias:
            return message(
                "StableQueue: set this server's alias in Settings → StableQueue to queue here",
                error=True,
            )
        server = settings.alias
    try:
        p, scripts, script_args = build_processing(tab, request, values)
        spec = spec_from_processing(
            p,
            scripts,
            script_args,
            img2img=tab == "img2img",
            target=server,
            priority=int(priority or 0),
        )
    except CaptureError as e:
        return message(f"StableQueue: {e}", error=True)
    try:
        with settings.client() as client:
            count = int(count or 1)
            if count > 1:
                jobs = client.submit_many(spec, count, seed_mode or "increment")
            else:
                jobs = [client.submit(spec)]
    except StableQueueError as e:
        return message(unreachable(settings.address, e), error=True)
    ids = ", ".join(j.id[:8] for j in jobs)
    where = f" on {server}" if server else ""
    noun = "job" if len(jobs) == 1 else "jobs"
    return message(f"Queued {len(jobs)} {noun}{where}: {ids}", link=True)


def paste_hook() -> Callable[[Any, str, Any], None] | None:
    """Forge's send-to-tab binding, for the tab's "Send to txt2img/img2img" buttons."""
    try:
        from modules import infotext_utils as copypaste
    except ImportError:
        try:
            from modules import generation_parameters_copypaste as copypaste  # A1111 < 1.8
        except ImportError:
            return None

    def paste(button: Any, tab: str, text: Any) -> None:
        copypaste.register_paste_params_button(
            copypaste.ParamBinding(paste_button=button, tabname=tab, source_text_component=text)
        )

    return paste


_FEED: QueueFeed | None = None


def ui_tabs() -> list[tuple[Any, str, str]]:
    """`script_callbacks.on_ui_tabs`: the StableQueue tab (and any binding still due)."""
    from stablequeue.dashboard.ui import Dashboard, build

    global _FEED
    if _FEED is None:
        _FEED = QueueFeed(lambda: current().client()).start()
    with gr.Blocks(analytics_enabled=False) as tab:
        bind_pending(final=True)
        attach = build(Dashboard(_FEED, lambda: current().client()), paste=paste_hook())
        attach(tab)
    return [(tab, "StableQueue", "stablequeue")]
