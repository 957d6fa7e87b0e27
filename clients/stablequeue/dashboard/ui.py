"""The StableQueue tab: live queue, actions, history gallery, servers and nodes.

`build()` lays the tab out inside the caller's gradio Blocks (Forge's tab, or the
standalone `sq dashboard`); the page is kept current by one generator per open
page that waits on the process-wide `QueueFeed` (fed by WatchQueue). Written for
the gradio Forge pins (4.40) as well as the current one.
"""

from __future__ import annotations

import base64
import html
import inspect
import io
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from stablequeue import infotext
from stablequeue.client import Client, StableQueueError
from stablequeue.dashboard.feed import QueueFeed, perform, unreachable
from stablequeue.text import describe, enum_name, stage_name, status_name
from stablequeue.v1 import models_pb2, processes_pb2, queue_pb2

QUEUE_COLUMNS = ["ID", "Status", "Stage", "Progress", "Server", "Model", "Priority", "Prompt"]
SERVER_COLUMNS = ["Server", "Kind", "Health", "Jobs", "Loaded model"]
NODE_COLUMNS = ["Node", "State", "GPUs", "Models"]
MODEL_COLUMNS = ["Model", "Type", "Available on"]
GALLERY_SIZE = 24
AUX_SECONDS = 5.0
CSS = """
#sq_running .sq-job { margin-bottom: .6em; }
#sq_running .sq-bar { height: .7em; background: #8884; border-radius: .35em; overflow: hidden; }
#sq_running .sq-bar > div { height: 100%; background: #3b82f6; }
#sq_running img { max-width: 256px; max-height: 256px; display: block; margin-top: .3em; }
"""
PasteHook = Callable[[Any, str, Any], None]


def _listen(block: Any, event: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
    """Binds `block.<event>`, dropping options this gradio does not know (3.x has fewer).

    The options are read off the event method of the block's class: Forge replaces each
    component's own event methods with `(*args, **kwargs)` wrappers, whose signature
    says nothing about what gradio takes.
    """
    # gradio 4+ defines events on the class; gradio 3 only on each instance.
    method = getattr(type(block), event, None) or getattr(block, event)
    declared = inspect.signature(method).parameters
    if any(p.kind is p.VAR_KEYWORD for p in declared.values()):
        known: Any = kwargs
    else:
        known = declared
    return getattr(block, event)(fn, **{k: v for k, v in kwargs.items() if k in known})


def _table(rows: list[list[Any]], columns: list[str]) -> Any:
    import pandas as pd  # a gradio dependency

    return pd.DataFrame(rows, columns=columns)


def bar(fraction: float, width: int = 10) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "▰" * filled + "▱" * (width - filled) + f" {fraction * 100:.0f}%"


def model_of(job: queue_pb2.Job) -> str:
    if not job.spec.HasField("params"):
        return "workflow"
    return job.spec.label or job.spec.params.model or "(loaded)"


def queue_rows(jobs: list[queue_pb2.Job]) -> list[list[Any]]:
    rows = []
    for job in jobs:
        progress = ""
        if job.status == queue_pb2.JOB_STATUS_PROCESSING:
            progress = bar(job.progress.fraction)
        elif job.status == queue_pb2.JOB_STATUS_COMPLETED:
            progress = bar(1.0)
        elif job.reason:
            progress = job.reason[:80]
        rows.append(
            [
                job.id[:8],
                status_name(job).lower(),
                stage_name(job),
                progress,
                job.server or job.spec.target_server or "any",
                model_of(job),
                job.spec.priority,
                describe(job, 48),
            ]
        )
    return rows


def changed_in_place(before: list[list[Any]], after: list[list[Any]]) -> bool:
    """Whether a row the table shows (by position) now reads differently."""
    return any(old != new for old, new in zip(before, after, strict=False))


def running_html(jobs: list[queue_pb2.Job]) -> str:
    """The running jobs: what, where, a progress bar and the latest preview."""
    parts = []
    for job in jobs:
        if job.status != queue_pb2.JOB_STATUS_PROCESSING:
            continue
        p = job.progress
        steps = f" · step {p.step}/{p.total_steps}" if p.total_steps else ""
        eta = f" · {p.eta_seconds:.0f}s left" if p.eta_seconds > 0 else ""
        preview = ""
        if p.preview_image:
            mime = p.preview_mime or "image/png"
            data = base64.b64encode(p.preview_image).decode()
            preview = f'<img alt="preview" src="data:{mime};base64,{data}">'
        parts.append(
            f'<div class="sq-job" data-job="{job.id}"><b>{html.escape(describe(job, 60))}</b><br>'
            f"{html.escape(job.server or '?')} · {html.escape(model_of(job))} · "
            f"{html.escape(stage_name(job))}{steps}{eta}"
            f'<div class="sq-bar"><div style="width:{p.fraction * 100:.1f}%"></div></div>'
            f"{preview}</div>"
        )
    return "".join(parts) or "<i>Nothing running.</i>"


def status_line(feed: QueueFeed, jobs: list[queue_pb2.Job]) -> str:
    if feed.error:
        return f"⚠️ {feed.error}"
    if not feed.connected:
        return "Connecting to StableQueue…"
    pending = sum(j.status == queue_pb2.JOB_STATUS_PENDING for j in jobs)
    running = sum(j.status == queue_pb2.JOB_STATUS_PROCESSING for j in jobs)
    paused = " · **queue paused**" if feed.stats.paused else ""
    if feed.stats.pause_reason:
        paused = f" · **held: {feed.stats.pause_reason}**"
    servers = ""
    if feed.stats.paused_servers:
        servers = " · paused: " + ", ".join(feed.stats.paused_servers)
    return f"**{running}** running · **{pending}** pending{paused}{servers}"


def caption(result: queue_pb2.JobResult) -> str:
    """A gallery image's caption: the seed it was made with, and its file."""
    seed = f"seed {result.seed}" if result.seed >= 0 else "seed unknown"
    return f"{seed} · {result.filename or result.id[:8]}"


def job_infotext(job: queue_pb2.Job) -> str:
    """A finished image's own infotext, else one built from the job's parameters."""
    for result in job.results:
        if result.infotext:
            return result.infotext
    if job.spec.HasField("params"):
        return infotext.build(job.spec.params, job.spec.params.seed, job.spec.params.model)
    return job.spec.workflow_json


@dataclass
class Dashboard:
    """Shared by every open page of one process: the feed and a small image cache."""

    feed: QueueFeed
    connect: Callable[[], Client]
    images: OrderedDict[str, Any] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self, action: Callable[[Client], str]) -> str:
        """Runs one coordinator call; a failure becomes a message, never a traceback."""
        client = self.connect()
        try:
            return action(client)
        except StableQueueError as e:
            return f"⚠️ {unreachable(client.address, e)}"
        finally:
            client.close()

    def job_id(self, text: str) -> str:
        """The full id of the job a (possibly shortened) id names."""
        text = (text or "").strip()
        matches = [j for j in list(self.feed.jobs) if j.startswith(text)] if text else []
        return matches[0] if len(matches) == 1 else text

    def image(self, client: Client, result: queue_pb2.JobResult) -> Any:
        from PIL import Image  # a gradio dependency

        with self.lock:
            cached = self.images.get(result.id)
        if cached is None:
            sink = io.BytesIO()
            client.download_result(result.id, sink)
            cached = Image.open(io.BytesIO(sink.getvalue()))
            cached.load()
            with self.lock:
                self.images[result.id] = cached
                while len(self.images) > GALLERY_SIZE * 2:
                    self.images.popitem(last=False)
        return cached

    def gallery(self) -> tuple[list[tuple[Any, str]], list[list[str]]]:
        """The newest images with captions, and (result id, job id, infotext) per image."""
        client = self.connect()
        try:
            results = client.list_results(page_size=GALLERY_SIZE).results
            items = [(self.image(client, r), caption(r)) for r in results]
            return items, [[r.id, r.job_id, r.infotext] for r in results]
        except StableQueueError:
            return [], []
        finally:
            client.close()

    def fleet(self) -> tuple[Any, Any, Any]:
        """Servers, nodes and where each model is, as three tables."""
        client = self.connect()
        servers: list[list[Any]] = []
        nodes: list[list[Any]] = []
        models: list[list[Any]] = []
        try:
            listed = client.call("ListServers", processes_pb2.ListServersRequest(), "processes")
            for s in listed.servers:
                servers.append(
                    [
                        s.alias,
                        enum_name(s, "kind", "APP_KIND_"),
                        enum_name(s, "health", "SERVER_HEALTH_")
                        + (f" ({s.health_reason})" if s.health_reason else ""),
                        f"{s.running_jobs}/{s.max_concurrency}",
                        s.loaded_model or "-",
                    ]
                )
            for n in client.call("ListNodes", processes_pb2.ListNodesRequest(), "processes").nodes:
                gpus = n.usage.gpus or n.info.gpus
                nodes.append(
                    [
                        n.info.name,
                        ("online" if n.connected else "offline")
                        + (", draining" if n.draining else ""),
                        ", ".join(
                            f"{g.name} {g.vram_free_mb:,}/{g.vram_total_mb:,} MB" for g in gpus
                        )
                        or "-",
                        ", ".join(m.key for m in n.info.models),
                    ]
                )
            request = models_pb2.ListModelsRequest()
            request.page.page_size = 200
            for m in client.call("ListModels", request, "models").models:
                hosts = sorted({loc.host for loc in m.locations})
                models.append(
                    [m.name, enum_name(m, "type", "MODEL_TYPE_"), ", ".join(hosts) or "-"]
                )
        except StableQueueError:
            pass
        finally:
            client.close()
        return (
            _table(servers, SERVER_COLUMNS),
            _table(nodes, NODE_COLUMNS),
            _table(models, MODEL_COLUMNS),
        )

    def act(self, verb: str, text: str = "", value: float | None = None) -> str:
        """One button: the job action on the selected job, or pause/resume."""
        job_id = self.job_id(text)
        if not job_id and verb not in ("pause", "resume"):
            return "Select a job first (click its row)."
        return self.call(lambda client: perform(client, verb, job_id, value))

    def stream(self) -> Iterator[tuple[Any, ...]]:
        """One page's updates: a new frame whenever the feed changes (fleet every 5 s)."""
        seen = -1
        done_key: tuple[str, ...] | None = None
        fleet_at = 0.0
        shown: list[list[Any]] = []
        redraw = False
        while not self.feed.stopped:
            seen = self.feed.wait(seen, AUX_SECONDS)
            jobs = self.feed.ordered()
            finished = tuple(j.id for j in jobs if j.status == queue_pb2.JOB_STATUS_COMPLETED)
            images: Any = gr.update()
            state: Any = gr.update()
            if finished != done_key:
                done_key = finished
                images, state = self.gallery()
            tables: tuple[Any, ...] = (gr.update(), gr.update(), gr.update())
            if time.monotonic() - fleet_at >= AUX_SECONDS:
                fleet_at = time.monotonic()
                tables = self.fleet()
            rows = queue_rows(jobs)
            if changed_in_place(shown, rows):
                # gradio 4.40 (Forge's) redraws a table's new rows but not the changed
                # cells of rows it shows; new headers make it redraw the whole table.
                redraw = not redraw
            shown = rows
            columns = [*QUEUE_COLUMNS[:-1], QUEUE_COLUMNS[-1] + ("\u200b" if redraw else "")]
            yield (
                status_line(self.feed, jobs),
                _table(rows, columns),
                running_html(jobs),
                images,
                state,
                *tables,
            )


def build(dashboard: Dashboard, paste: PasteHook | None = None) -> Callable[[Any], None]:
    """Lays the tab out in the current gradio Blocks context.

    Args:
        paste: `paste(button, tab, infotext_box)` wires a "send to txt2img/img2img"
            button (Forge passes its paste-params binding); without it there are none.

    Returns:
        `attach(blocks)`: starts the live updates when a page loads `blocks`.
    """
    with gr.Row():
        status = gr.Markdown("Connecting to StableQueue…", elem_id="sq_status")
        pause = gr.Button("Pause queue", size="sm", elem_id="sq_pause")
        resume = gr.Button("Resume queue", size="sm", elem_id="sq_resume")
    with gr.Row():
        with gr.Column(scale=3):
            table = gr.Dataframe(
                value=_table([], QUEUE_COLUMNS),
                headers=QUEUE_COLUMNS,
                interactive=False,
                wrap=True,
                label="Queue (click a row to select it)",
                elem_id="sq_queue",
            )
        with gr.Column(scale=2):
            running = gr.HTML("<i>Nothing running.</i>", elem_id="sq_running")
            selected = gr.Textbox(label="Selected job", elem_id="sq_selected", max_lines=1)
            with gr.Row():
                cancel = gr.Button("Cancel", size="sm", elem_id="sq_cancel")
                retry = gr.Button("Retry", size="sm", elem_id="sq_retry")
                delete = gr.Button("Delete", size="sm", elem_id="sq_delete")
            with gr.Row():
                front = gr.Button("Move to front", size="sm", elem_id="sq_front")
                back = gr.Button("Move to back", size="sm", elem_id="sq_back")
            with gr.Row():
                priority = gr.Number(label="Priority", value=0, precision=0, elem_id="sq_priority")
                set_priority = gr.Button("Set priority", size="sm", elem_id="sq_set_priority")
            message = gr.Markdown("", elem_id="sq_message")
            params = gr.Textbox(
                label="Parameters", lines=4, interactive=False, elem_id="sq_infotext"
            )
            if paste is not None:
                with gr.Row():
                    for tab in ("txt2img", "img2img"):
                        button = gr.Button(f"Send to {tab}", size="sm", elem_id=f"sq_to_{tab}")
                        paste(button, tab, params)
    gallery = gr.Gallery(
        label="History (click an image for full size and its parameters)",
        columns=8,
        height=300,
        object_fit="contain",
        elem_id="sq_gallery",
        interactive=False,
    )
    with gr.Accordion("Servers, nodes and models", open=False, elem_id="sq_fleet"):
        servers = gr.Dataframe(value=_table([], SERVER_COLUMNS), interactive=False)
        nodes = gr.Dataframe(value=_table([], NODE_COLUMNS), interactive=False)
        models = gr.Dataframe(value=_table([], MODEL_COLUMNS), interactive=False)
    shown = gr.State([])  # [result id, job id, infotext] per gallery image

    def act(verb: str) -> Callable[..., str]:
        return lambda text="", value=None: dashboard.act(verb, text, value)

    for button, verb in ((cancel, "cancel"), (retry, "retry"), (delete, "delete")):
        _listen(button, "click", act(verb), inputs=[selected], outputs=[message])
    for button, verb in ((front, "front"), (back, "back")):
        _listen(button, "click", act(verb), inputs=[selected], outputs=[message])
    _listen(set_priority, "click", act("priority"), inputs=[selected, priority], outputs=[message])
    _listen(pause, "click", act("pause"), outputs=[message])
    _listen(resume, "click", act("resume"), outputs=[message])
    pick_row, pick_image = _pickers(dashboard)
    _listen(table, "select", pick_row, inputs=[table], outputs=[selected, params, priority])
    _listen(gallery, "select", pick_image, inputs=[shown], outputs=[selected, params])
    outputs = [status, table, running, gallery, shown, servers, nodes, models]

    def attach(blocks: Any) -> None:
        _listen(
            blocks,
            "load",
            dashboard.stream,
            outputs=outputs,
            concurrency_limit=None,
            show_progress="hidden",
            queue=True,
        )

    return attach


def _pickers(dashboard: Dashboard) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Select handlers: a queue row, or a gallery image, becomes the selected job."""

    def pick_row(shown_rows: Any, evt: gr.SelectData) -> tuple[Any, Any, Any]:
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        try:
            short = str(shown_rows.iloc[row, 0])
        except (AttributeError, IndexError, TypeError):
            return gr.update(), gr.update(), gr.update()
        job = dashboard.feed.jobs.get(dashboard.job_id(short))
        if job is None:
            return short, gr.update(), gr.update()
        return job.id, job_infotext(job), job.spec.priority

    def pick_image(state: list[list[str]], evt: gr.SelectData) -> tuple[Any, Any]:
        index = evt.index if isinstance(evt.index, int) else evt.index[0]
        if not 0 <= index < len(state):
            return gr.update(), gr.update()
        _, job_id, text = state[index]
        return job_id, text

    return pick_row, pick_image


def create_app(dashboard: Dashboard) -> Any:
    """The standalone page (`sq dashboard`)."""
    kwargs: dict[str, Any] = {"title": "StableQueue", "analytics_enabled": False}
    if "css" in inspect.signature(gr.Blocks).parameters:
        kwargs["css"] = CSS
    with gr.Blocks(**kwargs) as demo:
        gr.Markdown("## StableQueue")
        attach = build(dashboard)
        attach(demo)
    return demo


def serve(
    connect: Callable[[], Client],
    host: str = "127.0.0.1",
    port: int = 7870,
    block: bool = True,
) -> Any:
    """Starts the feed and serves the standalone dashboard; returns the gradio app."""
    feed = QueueFeed(connect).start()
    demo = create_app(Dashboard(feed, connect))
    demo.queue(**({"default_concurrency_limit": None} if _has_concurrency() else {}))
    launch: dict[str, Any] = {
        "server_name": host,
        "server_port": port,
        "prevent_thread_lock": not block,
        "show_error": True,
        "quiet": not block,
    }
    if "css" in inspect.signature(demo.launch).parameters:
        launch["css"] = CSS
    demo.launch(**launch)
    demo.sq_feed = feed
    return demo


def _has_concurrency() -> bool:
    return "default_concurrency_limit" in inspect.signature(gr.Blocks.queue).parameters
