"""Queue buttons beside Generate, their options, and the StableQueue tab.

The buttons are made when Forge creates `{tab}_generate` (an after-component
callback). Generate's own click is wired later in Forge's UI code — after other
extensions' handlers on the same button (Forge's built-in ControlNet binds three) —
so the Queue click is bound at the first component created after the app's own
generation handler in the same Blocks (or, at the latest, when the tabs are built),
with that handler's exact inputs followed by ours (target, priority, count, seed
mode).
"""

from __future__ import annotations

import contextlib
import html
import inspect
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


def clicks(blocks: Any, component: Any) -> list[Any]:
    """The functions bound to `component`'s click in `blocks`, in binding order
    (gradio 3.41 to 6)."""
    fns = getattr(blocks, "fns", None) or {}
    functions = list(fns.values()) if isinstance(fns, dict) else list(fns)
    dependencies = getattr(blocks, "dependencies", None)
    found = []
    for index, function in enumerate(functions):
        targets = getattr(function, "targets", None)
        if targets is None and isinstance(dependencies, list) and index < len(dependencies):
            dep = dependencies[index]  # gradio 3: ids and one trigger name
            targets = [
                (t, dep.get("trigger", "click")) if isinstance(t, int) else tuple(t)
                for t in dep.get("targets", [])
            ]
        if any(t[0] == component._id and t[1] == "click" for t in targets or []):
            found.append(function)
    return found


def find_click(blocks: Any, component: Any) -> Any:
    """The first function bound to `component`'s click in `blocks`, or None."""
    found = clicks(blocks, component)
    return found[0] if found else None


def app_function(tab: str) -> Any:
    """The app's own generation function for `tab` (what Generate runs)."""
    import importlib

    module = importlib.import_module(f"modules.{tab}")
    return getattr(module, tab, None)


def describe_handler(function: Any) -> str:
    fn = inspect.unwrap(getattr(function, "fn", None) or (lambda: None))
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    return f"{name} ({len(getattr(function, 'inputs', []) or [])} inputs)"


def find_generation(blocks: Any, generate: Any, tab: str) -> Any:
    """The app's own generation handler among those bound to Generate's click.

    Other extensions bind handlers to Generate too (Forge's built-in ControlNet binds
    three, before Forge's own), so the one whose function is — through its wrappers
    (`wrap_gradio_gpu_call` keeps `__wrapped__`) — the app's `modules.txt2img.txt2img`
    or `modules.img2img.img2img` is chosen. None when no such handler is bound.
    """
    own = app_function(tab)
    for function in clicks(blocks, generate):
        fn = getattr(function, "fn", None)
        if fn is None:
            continue
        unwrapped = inspect.unwrap(fn)
        if unwrapped is own or (
            getattr(unwrapped, "__module__", "") == f"modules.{tab}"
            and getattr(unwrapped, "__name__", "") == tab
        ):
            return function
    return None


def bind_pending(final: bool) -> None:
    """Binds each tab's Queue buttons once the app's own Generate handler exists."""
    for state in TABS.values():
        if state.bound or state.generate is None or not state.controls or not state.buttons:
            continue
        if not final and _root() is not state.root:
            continue
        generate = find_generation(state.root, state.generate, state.tab)
        outputs = [state.status] if state.status is not None else []
        if generate is None:
            if final:
                unbound(state, outputs)
            continue
        inputs = list(generate.inputs) + state.controls
        for button, many in zip(state.buttons, (False, True), strict=True):
            button.click(fn=handler(state.tab, many), inputs=inputs, outputs=outputs)
        state.bound = True


def unbound(state: TabState, outputs: list[Any]) -> None:
    """No generation handler on Generate: the buttons say so, the console says what was
    there instead."""
    found = [describe_handler(f) for f in clicks(state.root, state.generate)]
    log.warning(
        "StableQueue: Queue on %s is off: none of the %d handlers on Generate is the app's "
        "own modules.%s.%s: %s",
        state.tab, len(found), state.tab, state.tab, "; ".join(found) or "none",
    )  # fmt: skip
    text = message(
        f"StableQueue cannot queue from {state.tab} in this app: its Generate button does "
        "not run the app's own generation (see the console)",
        error=True,
    )
    for button in state.buttons:
        button.click(fn=lambda text=text: text, outputs=outputs)
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
