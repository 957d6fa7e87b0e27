"""`sq`: submit, inspect, reorder and watch StableQueue jobs; manage API keys."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from stablequeue.app_kinds import APPS
from stablequeue.cli import render, watch
from stablequeue.client import SEED_MODES, Client, StableQueueError
from stablequeue.specs import txt2img, workflow
from stablequeue.v1 import models_pb2, processes_pb2, queue_pb2

STATUSES = {
    name.removeprefix("JOB_STATUS_").lower(): num
    for name, num in queue_pb2.JobStatus.items()
    if num
}


class UsageError(Exception):
    """Bad command-line input, reported like argparse does."""


def lora(text: str) -> tuple[str, float]:
    name, sep, weight = text.rpartition(":")
    if not sep or not name:
        return text, 1.0
    try:
        return name, float(weight)
    except ValueError:
        return text, 1.0


def build_spec(args: argparse.Namespace) -> queue_pb2.JobSpec:
    if args.workflow:
        if args.prompt:
            raise UsageError("give either a prompt or --workflow, not both")
        try:
            text = Path(args.workflow).read_text()
        except OSError as e:
            raise UsageError(f"--workflow: {e}") from e
        return workflow(text, server=args.server, priority=args.priority, label=args.label)
    if not args.prompt:
        raise UsageError("a prompt (or --workflow FILE) is required")
    try:
        extra = json.loads(args.extra) if args.extra else None
        images = [Path(p).read_bytes() for p in args.init_image]
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(str(e)) from e
    numeric = {
        "seed": args.seed,
        "steps": args.steps,
        "cfg_scale": args.cfg,
        "width": args.width,
        "height": args.height,
        "batch_size": args.batch_size,
        "iterations": args.iterations,
        "denoising_strength": args.denoise,
        "sampler": args.sampler,
        "scheduler": args.scheduler,
    }
    return txt2img(
        args.prompt,
        negative_prompt=args.negative,
        model=args.model,
        loras=args.lora,
        init_images=images,
        app=args.app,
        server=args.server,
        priority=args.priority,
        label=args.label,
        extra=extra,
        **{k: v for k, v in numeric.items() if v is not None},
    )


def cmd_submit(sq: Client, args: argparse.Namespace) -> int:
    spec = build_spec(args)
    if args.count > 1:
        jobs = sq.submit_many(spec, args.count, args.seed_mode, args.idempotency_key)
    else:
        jobs = [sq.submit(spec, args.idempotency_key)]
    if args.json and not args.wait:
        render.print_json(jobs)
        return 0
    if not args.json:
        for job in jobs:
            render.console.print(f"queued [bold]{job.id}[/] (position {job.position})")
    if not args.wait:
        return 0
    finals = [watch.follow_job(sq, job.id, quiet=args.json) for job in jobs]
    if args.json:
        render.print_json(finals)
    return 0 if all(j.status == queue_pb2.JOB_STATUS_COMPLETED for j in finals) else 1


def show_page(
    command: str,
    items: Any,
    token: str,
    table: Callable[[Any], Any],
    as_json: bool,
    key: str = "",
) -> int:
    """One page of a list command: JSON with the next token, or a table and a hint."""
    if as_json:
        render.print_json(
            {key or command: [render.to_dict(i) for i in items], "next_page_token": token}
        )
        return 0
    render.console.print(table(items))
    if token:
        render.console.print(f"more: sq {command} --page-token {token}", style="dim")
    return 0


def cmd_jobs(sq: Client, args: argparse.Namespace) -> int:
    statuses = [STATUSES[s] for s in args.status] or (
        [] if args.all_statuses else [STATUSES["pending"], STATUSES["processing"]]
    )
    filters: dict[str, Any] = {
        "statuses": statuses,
        "app": APPS[args.app] if args.app else 0,
        "server": args.server,
        "submitted_by": args.key,
        "batch_id": args.batch,
        "order": queue_pb2.JOB_ORDER_NEWEST if args.newest else queue_pb2.JOB_ORDER_QUEUE,
    }
    page = sq.list_jobs(page_size=args.limit, page_token=args.page_token, **filters)
    return show_page("jobs", page.jobs, page.next_page_token, render.jobs_table, args.json)


def cmd_show(sq: Client, args: argparse.Namespace) -> int:
    job = sq.get_job(args.id)
    if args.json:
        render.print_json(job)
    else:
        render.console.print(render.job_details(job))
    return 0


def each(
    action: Callable[[Client, str], Any], verb: str
) -> Callable[[Client, argparse.Namespace], int]:
    def run(sq: Client, args: argparse.Namespace) -> int:
        for job_id in args.ids:
            action(sq, job_id)
            render.console.print(f"{verb} {job_id}")
        return 0

    return run


def cmd_move(sq: Client, args: argparse.Namespace) -> int:
    if args.front:
        job = sq.move(args.id, "front")
    elif args.back:
        job = sq.move(args.id, "back")
    elif args.before:
        job = sq.move(args.id, "before", args.before)
    else:
        job = sq.move(args.id, "after", args.after)
    render.console.print(f"moved {job.id} (priority {job.spec.priority}, position {job.position})")
    return 0


def cmd_priority(sq: Client, args: argparse.Namespace) -> int:
    job = sq.set_priority(args.id, args.priority)
    render.console.print(f"{job.id} now has priority {job.spec.priority}")
    return 0


def cmd_pause(sq: Client, args: argparse.Namespace) -> int:
    stats = sq.pause(args.server) if args.pause else sq.resume(args.server)
    render.console.print(render.stats_line(stats))
    return 0


def cmd_stats(sq: Client, args: argparse.Namespace) -> int:
    stats = sq.stats()
    if args.json:
        render.print_json(stats)
    else:
        render.console.print(render.stats_line(stats))
    return 0


def cmd_watch(sq: Client, args: argparse.Namespace) -> int:
    if args.json:  # one JSON object per line, for scripts
        stream = sq.watch_job(args.id) if args.id else sq.watch_queue(omit_previews=True)
        last = None
        for event in stream:
            print(json.dumps(render.to_dict(event), sort_keys=True), flush=True)
            last = event
        if args.id and last is not None:
            return 0 if last.job.status == queue_pb2.JOB_STATUS_COMPLETED else 1
        return 0
    if args.id:
        job = watch.follow_job(sq, args.id, quiet=False)
        return 0 if job.status == queue_pb2.JOB_STATUS_COMPLETED else 1
    watch.follow_queue(sq)
    return 0


def cmd_keys(sq: Client, args: argparse.Namespace) -> int:
    if args.keys_command == "create":
        created = sq.create_key(args.name, args.scope, args.node)
        if args.json:
            render.print_json(created)
        else:
            render.console.print(
                f"created {created.key.id} ({args.scope}). The key, shown only once:"
            )
            print(created.secret)
    elif args.keys_command == "list":
        keys = sq.list_keys(include_revoked=args.all)
        if args.json:
            render.print_json(keys)
        else:
            render.console.print(render.keys_table(keys))
    else:
        key = sq.revoke_key(args.id)
        render.console.print(f"revoked {key.id} ({key.name})")
    return 0


SERVER_KINDS = {name: value for name, value in APPS.items() if name != "any"}


def cmd_servers(sq: Client, args: argparse.Namespace) -> int:
    action = args.servers_command
    if action == "add":
        request = processes_pb2.RegisterServerRequest(
            alias=args.alias,
            kind=SERVER_KINDS[args.kind],
            base_url=args.url,
            username=args.username,
            password=args.password,
            bearer_token=args.token,
            max_concurrency=args.max_concurrency,
        )
        server = sq.call("RegisterServer", request, "processes").server
    elif action in ("enable", "disable"):
        request = processes_pb2.SetServerEnabledRequest(
            alias=args.alias, enabled=action == "enable"
        )
        server = sq.call("SetServerEnabled", request, "processes").server
    elif action == "remove":
        sq.call("RemoveServer", processes_pb2.RemoveServerRequest(alias=args.alias), "processes")
        render.console.print(f"removed {args.alias}")
        return 0
    elif action == "show":
        server = sq.call(
            "GetServer", processes_pb2.GetServerRequest(alias=args.alias), "processes"
        ).server
    else:
        servers = sq.call("ListServers", processes_pb2.ListServersRequest(), "processes").servers
        show_list(args, servers, render.servers_table)
        return 0
    if getattr(args, "json", False):
        render.print_json(server)
    else:
        render.console.print(render.servers_table([server]))
    return 0


def timestamp(text: str) -> Timestamp:
    """A date or date-time (ISO 8601, local time unless it names a zone)."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not an ISO date or date-time: {text!r}") from e
    stamp = Timestamp()
    stamp.FromDatetime(when.astimezone(UTC))
    return stamp


def cmd_images(sq: Client, args: argparse.Namespace) -> int:
    filters: dict[str, Any] = {"job_id": args.job, "model": args.model, "text": args.text}
    if args.since:
        filters["since"] = args.since
    if args.until:
        filters["until"] = args.until
    page = sq.list_results(page_size=args.limit, page_token=args.page_token, **filters)
    return show_page(
        "images", page.results, page.next_page_token, render.results_table, args.json, "results"
    )


def cmd_image(sq: Client, args: argparse.Namespace) -> int:
    if args.image_command == "delete":
        for result_id in args.ids:
            sq.delete_result(result_id)
            render.console.print(f"deleted image {result_id}")
        return 0
    if args.output == "-":
        sq.download_result(args.id, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return 0
    output = Path(args.output or ".")
    folder = output if output.is_dir() else output.parent
    if not output.is_dir() and output.exists() and not args.force:
        raise UsageError(f"-o: {output} exists (use --force to overwrite)")
    # Streamed into a temporary file first: an interrupted download leaves no half image.
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".sq-", delete=False) as tmp:
        try:
            result = sq.download_result(args.id, tmp)
        except BaseException:
            tmp.close()
            os.unlink(tmp.name)
            raise
    target = folder / Path(result.filename).name if output.is_dir() else output
    if target.exists() and not args.force:
        os.unlink(tmp.name)
        raise UsageError(f"{target} exists (use -o FILE or --force)")
    os.replace(tmp.name, target)
    render.console.print(f"saved {target} ({result.size_bytes:,} bytes, {result.mime})")
    return 0


MODEL_TYPES = {
    name.removeprefix("MODEL_TYPE_").lower(): num
    for name, num in models_pb2.ModelType.items()
    if num
}
DOWNLOAD_STATES = {
    name.removeprefix("DOWNLOAD_STATE_").lower(): num
    for name, num in models_pb2.DownloadState.items()
    if num
}


def cmd_models(sq: Client, args: argparse.Namespace) -> int:
    action = args.models_command
    if action == "scan":
        request = models_pb2.ScanLibraryRequest(
            roots=args.root, force_rehash=args.force, fetch_civitai=args.civitai
        )
        final = watch.follow_scan(sq.stream("ScanLibrary", request, "models"), quiet=args.json)
        if args.json:
            render.print_json(final)
        else:
            render.console.print(render.scan_summary(final))
        return 0 if not final.errors else 1
    if action == "list":
        request = models_pb2.SearchModelsRequest(
            query=args.search, type=MODEL_TYPES[args.type] if args.type else 0
        )
        request.page.page_size = args.limit
        if args.search:
            models = sq.call("SearchModels", request, "models").models
        else:
            listing = models_pb2.ListModelsRequest(
                type=request.type, base_model=args.base, host=args.host, page=request.page,
                missing_metadata=args.missing_metadata,
            )  # fmt: skip
            models = sq.call("ListModels", listing, "models").models
        show_list(args, models, render.models_table)
        return 0
    if action == "delete":
        request = models_pb2.DeleteModelRequest(id=args.ref, path=args.path)
        for path in sq.call("DeleteModel", request, "models").deleted_paths:
            render.console.print(f"deleted {path}")
        return 0
    if action == "refresh":
        request = models_pb2.RefreshMetadataRequest(id=args.ref, fetch_civitai=args.civitai)
        model = sq.call("RefreshMetadata", request, "models").model
        if args.json:
            render.print_json(model)
        else:
            render.console.print(render.model_details(model))
        return 0
    reply = sq.call("LocateModel", models_pb2.LocateModelRequest(reference=args.ref), "models")
    if args.json:
        render.print_json(reply.model if action == "show" else list(reply.locations))
    elif action == "show":
        render.console.print(render.model_details(reply.model))
    else:
        render.console.print(render.locations_table(reply.locations))
    return 0


def cmd_download(sq: Client, args: argparse.Namespace) -> int:
    action = args.download_command
    if action == "cancel":
        request = models_pb2.CancelDownloadRequest(id=_download_id(sq, args.id))
        download = sq.call("CancelDownload", request, "models").download
        render.console.print(f"{download.id}: {render.download_state(download)}")
        return 0
    request = models_pb2.StartDownloadRequest(dest=args.dest, sha256=args.sha256, node=args.node)
    if action == "hf":
        request.huggingface.repo = args.repo
        request.huggingface.files.extend(args.files)
        request.huggingface.revision = args.revision
    elif action == "url":
        request.url.url = args.url
    elif action == "library":
        request.library.reference = args.reference
    else:
        request.civitai.reference = args.reference
    download = sq.call("StartDownload", request, "models").download
    if args.no_wait:
        render.console.print(download.id)
        return 0
    updates = sq.stream("WatchDownload", models_pb2.WatchDownloadRequest(id=download.id), "models")
    final = watch.follow_download(updates, quiet=args.json)
    if args.json:
        render.print_json(final)
    elif final.state == models_pb2.DOWNLOAD_STATE_COMPLETED:
        where = f"{final.node}:{final.dest_path}" if final.node else final.dest_path
        render.console.print(f"downloaded {where} (model {final.model_id[:10]})", soft_wrap=True)
    else:
        state = render.download_state(final)
        render.console.print(f"[red]{state}[/]: {final.error}", soft_wrap=True)
    return 0 if final.state == models_pb2.DOWNLOAD_STATE_COMPLETED else 1


def _download_id(sq: Client, prefix: str) -> str:
    """A download id from the start of one, as `sq downloads` shows them."""
    if len(prefix) == 32:
        return prefix
    listed = sq.call("ListDownloads", models_pb2.ListDownloadsRequest(), "models").downloads
    matches = [d.id for d in listed if d.id.startswith(prefix)]
    if len(matches) != 1:
        raise StableQueueError(
            grpc.StatusCode.NOT_FOUND if not matches else grpc.StatusCode.INVALID_ARGUMENT,
            f"{len(matches) or 'no'} downloads start with {prefix!r}",
        )
    return matches[0]


def show_list(args: argparse.Namespace, items: Any, table: Callable[[Any], Any]) -> None:
    """A list as JSON (`--json`) or as a table."""
    if args.json:
        render.print_json(list(items))
    else:
        render.console.print(table(items))


def cmd_downloads(sq: Client, args: argparse.Namespace) -> int:
    request = models_pb2.ListDownloadsRequest(states=[DOWNLOAD_STATES[s] for s in args.state])
    downloads = sq.call("ListDownloads", request, "models").downloads
    show_list(args, downloads, render.downloads_table)
    return 0


def cmd_nodes(sq: Client, args: argparse.Namespace) -> int:
    nodes = sq.call("ListNodes", processes_pb2.ListNodesRequest(), "processes").nodes
    show_list(args, nodes, render.nodes_table)
    return 0


def cmd_drain(sq: Client, args: argparse.Namespace) -> int:
    request = processes_pb2.DrainNodeRequest(node=args.node, drain=not args.undo)
    node = sq.call("DrainNode", request, "processes").node
    render.console.print(render.nodes_table([node]))
    return 0


def cmd_processes(sq: Client, args: argparse.Namespace) -> int:
    request = processes_pb2.ListProcessesRequest(node=args.node)
    processes = sq.call("ListProcesses", request, "processes").processes
    show_list(args, processes, lambda items: render.processes_table(items, time.time()))
    return 0


def cmd_process(sq: Client, args: argparse.Namespace) -> int:
    if args.command == "logs":
        request = processes_pb2.GetProcessLogsRequest(
            node=args.node, model=args.model, lines=args.lines
        )
        for line in sq.call("GetProcessLogs", request, "processes").lines:
            print(line)
        return 0
    if args.command == "start":
        start = processes_pb2.StartProcessRequest(node=args.node, model=args.model)
        process = sq.call("StartProcess", start, "processes").process
    else:
        stop = processes_pb2.StopProcessRequest(node=args.node, model=args.model)
        process = sq.call("StopProcess", stop, "processes").process
    render.console.print(render.processes_table([process], time.time()))
    return 0


def cmd_dashboard(sq: Client, args: argparse.Namespace) -> int:
    host, sep, port = args.listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen: expected HOST:PORT (e.g. 127.0.0.1:7870), got {args.listen!r}")
    try:
        from stablequeue.dashboard.ui import serve
    except ImportError as e:
        raise UsageError(
            f"the dashboard needs gradio ({e.name} is missing): "
            "pip install 'stablequeue[dashboard]'"
        ) from None
    address, key, credentials = sq.address, args.api_key, args.credentials
    print(f"StableQueue dashboard on http://{host or '127.0.0.1'}:{port} (Ctrl+C stops it)")
    serve(lambda: Client(address, key, credentials=credentials), host or "127.0.0.1", int(port))
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="sq", description="StableQueue command line")
    root.add_argument(
        "--addr",
        help="coordinator HOST:PORT, or an active one and standbys comma-separated "
        "(env SQ_ADDR, default 127.0.0.1:50051)",
    )
    root.add_argument("--api-key", help="API key (env SQ_API_KEY)")
    root.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    root.add_argument(
        "--tls-ca", default=os.environ.get("SQ_TLS_CA", ""),
        help="connect with TLS, trusting this PEM certificate (env SQ_TLS_CA)",
    )  # fmt: skip
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _queue_commands(sub)
    _image_commands(sub)
    _model_commands(sub)
    _dashboard_command(sub)
    _node_commands(sub)
    _server_commands(sub)
    _key_commands(sub)
    return root


def _queue_commands(sub: Any) -> None:
    """`sq` commands: submitting, listing and steering jobs."""
    p = sub.add_parser("submit", help="queue a job")
    p.add_argument("prompt", nargs="?", default="")
    p.add_argument("--negative", default="", help="negative prompt")
    p.add_argument("--model", default="", help="checkpoint name, hash or path")
    p.add_argument("--lora", type=lora, action="append", default=[], metavar="NAME:WEIGHT")
    p.add_argument("--seed", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--cfg", type=float, help="CFG scale")
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--sampler")
    p.add_argument("--scheduler")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--iterations", type=int, help="batch count")
    p.add_argument("--denoise", type=float, help="img2img denoising strength")
    p.add_argument(
        "--init-image", action="append", default=[], metavar="FILE", help="makes it img2img"
    )
    p.add_argument("--extra", help="backend-specific settings as a JSON object")
    p.add_argument("--workflow", metavar="FILE", help="ComfyUI API-format workflow JSON")
    p.add_argument("--app", choices=sorted(APPS), default="any")
    p.add_argument("--server", default="", help="alias of the server that must run it")
    p.add_argument("--priority", type=int, default=0)
    p.add_argument("--label", default="")
    p.add_argument("--count", type=int, default=1, help="queue N copies")
    p.add_argument("--seed-mode", choices=sorted(SEED_MODES), default="increment")
    p.add_argument("--idempotency-key", default="")
    p.add_argument("--wait", action="store_true", help="follow until done; exit 1 unless completed")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("jobs", help="list jobs (pending and processing unless --status/--all)")
    p.add_argument("--status", action="append", default=[], choices=sorted(STATUSES))
    p.add_argument("--all", dest="all_statuses", action="store_true", help="every status")
    p.add_argument("--app", choices=sorted(APPS))
    p.add_argument("--server", default="")
    p.add_argument("--key", default="", help="only jobs of this API key id")
    p.add_argument("--batch", default="")
    p.add_argument("--newest", action="store_true", help="newest first instead of queue order")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--page-token", default="")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("show", help="one job in detail")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    for name, action, verb in (
        ("cancel", Client.cancel, "cancelled"),
        ("retry", Client.retry, "re-queued"),
        ("delete", Client.delete, "deleted"),
    ):
        p = sub.add_parser(name, help=f"{name} jobs")
        p.add_argument("ids", nargs="+", metavar="ID")
        p.set_defaults(func=each(action, verb))

    p = sub.add_parser("move", help="reorder a pending job")
    p.add_argument("id")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--front", action="store_true")
    where.add_argument("--back", action="store_true")
    where.add_argument("--before", metavar="ID")
    where.add_argument("--after", metavar="ID")
    p.set_defaults(func=cmd_move)

    p = sub.add_parser("priority", help="set a pending job's priority (higher runs first)")
    p.add_argument("id")
    p.add_argument("priority", type=int)
    p.set_defaults(func=cmd_priority)

    for name, pause in (("pause", True), ("resume", False)):
        p = sub.add_parser(name, help=f"{name} dispatching")
        p.add_argument("--server", default="", help="only this server")
        p.set_defaults(func=cmd_pause, pause=pause)

    p = sub.add_parser("watch", help="live progress of one job, or of the whole queue")
    p.add_argument("id", nargs="?")
    p.add_argument("--json", action="store_true", help="print each event as a JSON line")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("stats", help="job counts and pause state")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stats)


def _image_commands(sub: Any) -> None:
    """`sq` commands: the gallery of stored images."""
    p = sub.add_parser("images", help="the gallery: stored images, newest first")
    p.add_argument("--job", default="", help="only this job's images")
    p.add_argument("--model", default="", help="model name contains")
    p.add_argument("--text", default="", help="prompt contains")
    p.add_argument("--since", type=timestamp, help="made at or after (ISO date/time)")
    p.add_argument("--until", type=timestamp, help="made before (ISO date/time)")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--page-token", default="")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_images)

    p = sub.add_parser("image", help="fetch or delete one stored image")
    image = p.add_subparsers(dest="image_command", required=True)
    k = image.add_parser("get", help="download an image (with its metadata chunks)")
    k.add_argument("id")
    k.add_argument("-o", "--output", default="", help="file or folder; - for stdout")
    k.add_argument("--force", action="store_true", help="overwrite an existing file")
    k = image.add_parser("delete", help="delete images (file and record)")
    k.add_argument("ids", nargs="+", metavar="ID")
    p.set_defaults(func=cmd_image)


def _model_commands(sub: Any) -> None:
    """`sq` commands: the model library and downloads."""
    p = sub.add_parser("models", help="the model library")
    models = p.add_subparsers(dest="models_command", required=True)
    k = models.add_parser("scan", help="scan the model roots (progress bar; exit 1 on errors)")
    k.add_argument("--root", action="append", default=[], help="only this folder (repeatable)")
    k.add_argument("--force", action="store_true", help="re-hash unchanged files too")
    k.add_argument("--civitai", action="store_true", help="look new models up on Civitai")
    k.add_argument("--json", action="store_true")
    k = models.add_parser("list", help="models by name")
    k.add_argument("--type", choices=sorted(MODEL_TYPES))
    k.add_argument("--base", default="", help="base model family, e.g. SDXL")
    k.add_argument("--host", default="", help="only models on this server or node")
    k.add_argument("--search", default="", help="text in names, trigger words or tags")
    k.add_argument("--missing-metadata", action="store_true", help="only models without any")
    k.add_argument("--limit", type=int, default=100)
    k.add_argument("--json", action="store_true")
    for name, text in (
        ("show", "one model in detail"),
        ("where", "every copy of a model"),
        ("refresh", "re-read a model's sidecars and metadata (--civitai: ask Civitai too)"),
    ):
        k = models.add_parser(name, help=text)
        k.add_argument("ref", help="SHA-256, AutoV2/AutoV1/AutoV3, name or path")
        k.add_argument("--json", action="store_true")
        if name == "refresh":
            k.add_argument("--civitai", action="store_true")
    k = models.add_parser("delete", help="delete a model's files from the coordinator's roots")
    k.add_argument("ref")
    k.add_argument("--path", default="", help="only this copy")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("download", help="fetch a model: Hugging Face, a URL or Civitai")
    downloads = p.add_subparsers(dest="download_command", required=True)
    k = downloads.add_parser("hf", help="files of a Hugging Face repository")
    k.add_argument("repo", help="OWNER/NAME")
    k.add_argument("files", nargs="+", metavar="FILE")
    k.add_argument("--revision", default="", help="branch, tag or commit (default main)")
    k = downloads.add_parser("url", help="a file from a URL (resumed after a cut)")
    k.add_argument("url")
    k = downloads.add_parser("civitai", help="a Civitai model version (with its metadata)")
    k.add_argument("reference", metavar="ID|AIR", help="version id or urn:air:...@VERSION")
    k = downloads.add_parser("library", help="send a model of the coordinator to a --node")
    k.add_argument("reference", metavar="MODEL", help="SHA-256, AutoV2, name...")
    for k in downloads.choices.values():
        k.add_argument("--dest", default="", help="folder inside a model root (default: the first)")
        k.add_argument("--sha256", default="", help="expected SHA-256 (verified)")
        k.add_argument("--node", default="", help="download on this node instead")
        k.add_argument("--no-wait", action="store_true", help="print the id and return")
        k.add_argument("--json", action="store_true")
    k = downloads.add_parser("cancel", help="stop a download and remove its partial file")
    k.add_argument("id", help="download id (or its start)")
    p.set_defaults(func=cmd_download)
    p = sub.add_parser("downloads", help="downloads: state, progress, speed")
    p.add_argument("--state", action="append", default=[], choices=sorted(DOWNLOAD_STATES))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_downloads)


def _dashboard_command(sub: Any) -> None:
    """`sq` commands: the StableQueue tab as a web page."""
    p = sub.add_parser("dashboard", help="the StableQueue tab as a web page (needs gradio)")
    p.add_argument(
        "--listen", default="127.0.0.1:7870",
        help="HOST:PORT to serve on (default 127.0.0.1:7870; 0.0.0.0 for other machines)",
    )  # fmt: skip
    p.set_defaults(func=cmd_dashboard)


def _node_commands(sub: Any) -> None:
    """`sq` commands: node agents and their model processes."""
    p = sub.add_parser("nodes", help="node agents: connected or not, resources")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_nodes)
    p = sub.add_parser("drain", help="let a node finish its jobs and take no new ones")
    p.add_argument("node")
    p.add_argument("--undo", action="store_true", help="take jobs again")
    p.set_defaults(func=cmd_drain)
    p = sub.add_parser("processes", help="model processes on the nodes")
    p.add_argument("--node", default="")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_processes)
    for name, text in (("start", "start a model on a node"), ("stop", "stop a model on a node"),
                       ("logs", "last output lines of a model's process")):  # fmt: skip
        p = sub.add_parser(name, help=text)
        p.add_argument("model", help="model key from the node's models.yml")
        p.add_argument("--node", default="", help="needed when several nodes have the model")
        if name == "logs":
            p.add_argument("--lines", type=int, default=200)
        p.set_defaults(func=cmd_process)


def _server_commands(sub: Any) -> None:
    """`sq` commands: backend servers."""
    p = sub.add_parser("servers", help="backend servers (Forge, ComfyUI, sd-server)")
    servers = p.add_subparsers(dest="servers_command", required=True)
    k = servers.add_parser("add", help="register a server")
    k.add_argument("alias")
    k.add_argument("--kind", choices=sorted(SERVER_KINDS), required=True)
    k.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:7860")
    k.add_argument("--username", default="")
    k.add_argument("--password", default="")
    k.add_argument("--token", default="", help="bearer token")
    k.add_argument("--max-concurrency", type=int, default=1)
    k.add_argument("--json", action="store_true")
    k = servers.add_parser("list", help="servers with their health")
    k.add_argument("--json", action="store_true")
    for name in ("show", "remove", "enable", "disable"):
        k = servers.add_parser(name, help=f"{name} a server")
        k.add_argument("alias")
        if name == "show":
            k.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_servers)


def _key_commands(sub: Any) -> None:
    """`sq` commands: API keys."""
    p = sub.add_parser("keys", help="API keys")
    keys = p.add_subparsers(dest="keys_command", required=True)
    k = keys.add_parser("create", help="create a key (shown once)")
    k.add_argument("name")
    k.add_argument("--scope", choices=("admin", "submit", "node"), default="submit")
    k.add_argument("--node", default="", help="a node key's node (else the name it first uses)")
    k.add_argument("--json", action="store_true")
    k = keys.add_parser("list", help="list keys (never their secrets)")
    k.add_argument("--all", action="store_true", help="include revoked keys")
    k.add_argument("--json", action="store_true")
    k = keys.add_parser("revoke", help="revoke a key")
    k.add_argument("id")
    p.set_defaults(func=cmd_keys)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    credentials = None
    if args.tls_ca:
        try:
            roots = Path(args.tls_ca).read_bytes()
        except OSError as e:
            print(f"sq: --tls-ca: cannot read {args.tls_ca}: {e.strerror}", file=sys.stderr)
            sys.exit(2)
        credentials = grpc.ssl_channel_credentials(root_certificates=roots)
    args.credentials = credentials
    try:
        with Client(args.addr, args.api_key, credentials=credentials, timeout=args.timeout) as sq:
            code = args.func(sq, args)
    except UsageError as e:
        print(f"sq {args.command}: {e}", file=sys.stderr)
        code = 2
    except StableQueueError as e:
        if e.code == grpc.StatusCode.UNAVAILABLE:
            print(
                f"sq: cannot reach the coordinator at {args.addr or 'SQ_ADDR'}: {e.message}",
                file=sys.stderr,
            )
        else:
            print(f"sq: {e.code.name}: {e.message}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # The reader went away (`sq jobs --json | head`): end quietly, as Unix tools do.
        # Python would report the pipe again while flushing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141  # 128 + SIGPIPE, what a shell reports for such a tool
    sys.exit(code)
