"""How `sq` shows jobs, keys and stats: rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stablequeue.app_kinds import APP_NAMES
from stablequeue.text import describe, stage_name, status_name
from stablequeue.text import enum_name as _enum_name
from stablequeue.v1 import queue_pb2

console = Console()
STATUS_STYLE = {
    "PENDING": "yellow",
    "PROCESSING": "cyan",
    "COMPLETED": "green",
    "FAILED": "red",
    "CANCELLED": "dim",
}


def to_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def print_json(value: Any) -> None:
    if isinstance(value, Message):
        value = to_dict(value)
    elif isinstance(value, list):
        value = [to_dict(v) if isinstance(v, Message) else v for v in value]
    print(json.dumps(value, indent=2, sort_keys=True))


def jobs_table(jobs: Iterable[queue_pb2.Job], title: str = "") -> Table:
    table = Table(title=title or None)
    table.add_column("ID", no_wrap=True, min_width=16)
    table.add_column("STATUS", no_wrap=True, min_width=10)
    table.add_column("PRI", no_wrap=True)
    table.add_column("SERVER", no_wrap=True)
    table.add_column("WHAT", overflow="ellipsis", no_wrap=True, max_width=24)
    table.add_column("REASON", overflow="fold", min_width=12)
    for job in jobs:
        status = status_name(job)
        shown = f"[{STATUS_STYLE[status]}]{status}[/]"
        if job.status == queue_pb2.JOB_STATUS_PROCESSING:
            shown += f" {stage_name(job)}"
            if job.progress.fraction:
                shown += f" {job.progress.fraction:.0%}"
        table.add_row(
            job.id,
            shown,
            str(job.spec.priority),
            job.server or job.spec.target_server or "-",
            describe(job),
            job.reason,
        )
    return table


def job_details(job: queue_pb2.Job) -> Table:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    data = to_dict(job)
    spec = data.pop("spec", {})
    table.add_row("id", job.id)
    table.add_row("status", status_name(job))
    table.add_row("stage", stage_name(job))
    for key in ("reason", "attempts", "server", "position"):
        if data.get(key):
            table.add_row(key, str(data[key]))
    table.add_row("priority", str(job.spec.priority))
    for key in ("submitted_by", "batch_id", "idempotency_key", "created_at", "started_at"):
        if data.get(key):
            table.add_row(key, str(data[key]))
    if data.get("finished_at"):
        table.add_row("finished_at", str(data["finished_at"]))
    params = spec.get("params") or {}
    for key, value in params.items():
        if value in ("", 0, [], None):
            continue
        if key == "init_images":
            value = f"{len(value)} image(s)"
        table.add_row(f"params.{key}", str(value))
    if "workflow_json" in spec:
        table.add_row("workflow", describe(job))
    for result in job.results:  # the seed each image was made with
        seed = str(result.seed) if result.seed >= 0 else "unknown"
        table.add_row("image", f"{result.filename or result.id} (seed {seed})")
    return table


def keys_table(keys: Iterable[queue_pb2.ApiKey]) -> Table:
    table = Table()
    for column in ("ID", "NAME", "SCOPE", "CREATED", "LAST USED", "REVOKED"):
        table.add_column(column)
    for key in keys:
        data = to_dict(key)
        table.add_row(
            key.id,
            key.name,
            queue_pb2.KeyScope.Name(key.scope).removeprefix("KEY_SCOPE_").lower(),
            data.get("created_at", ""),
            data.get("last_used_at", "-"),
            data.get("revoked_at", "-"),
        )
    return table


def stats_line(stats: queue_pb2.QueueStats) -> str:
    paused = " [bold red]PAUSED[/]" if stats.paused else ""
    if stats.pause_reason:
        paused = f" [bold red]HELD[/]: {escape(stats.pause_reason)}"
    return (
        f"pending {stats.pending}  processing {stats.processing}  completed {stats.completed}  "
        f"failed {stats.failed}  cancelled {stats.cancelled}{paused}"
    )


UP = 2  # SERVER_HEALTH_UP: the server answers, whether or not it tells its model


def servers_table(servers: Iterable[Any]) -> Table:
    table = Table()
    for column in ("ALIAS", "KIND", "URL", "HEALTH", "JOBS", "STATE", "LOADED MODEL"):
        table.add_column(column, overflow="fold")
    for server in servers:
        health = type(server).DESCRIPTOR.fields_by_name["health"].enum_type
        state = "enabled" if server.enabled else "disabled"
        if server.paused:
            state += ", paused"
        table.add_row(
            server.alias,
            APP_NAMES.get(server.kind, "?"),
            server.base_url,
            health.values_by_number[server.health].name.removeprefix("SERVER_HEALTH_").lower()
            + (f" ({server.health_reason})" if server.health_reason else ""),
            f"{server.running_jobs}/{server.max_concurrency}",
            state,
            server.loaded_model or ("unknown" if server.health == UP else "-"),
        )
    return table


def results_table(results: Iterable[queue_pb2.JobResult]) -> Table:
    table = Table()
    for column in ("ID", "JOB", "SIZE", "SEED", "CREATED", "FILE", "PROMPT"):
        table.add_column(column, overflow="fold")
    for result in results:
        data = to_dict(result)
        prompt = result.infotext.split("\n", 1)[0]
        table.add_row(
            result.id,
            result.job_id,
            f"{result.width}x{result.height}" if result.width else result.mime,
            str(result.seed) if result.seed >= 0 else "-",
            data.get("created_at", ""),
            result.filename,
            prompt[:60] + ("…" if len(prompt) > 60 else ""),
        )
    return table


def _type_name(model: Any) -> str:
    enum = type(model).DESCRIPTOR.fields_by_name["type"].enum_type
    return str(enum.values_by_number[model.type].name).removeprefix("MODEL_TYPE_").lower()


def mib(size: int) -> str:
    """A model's size in MiB; 0 is a size nobody reported, shown as unknown."""
    return f"{size / 1024**2:,.1f} MiB" if size > 0 else "unknown"


def models_table(models: Iterable[Any]) -> Table:
    table = Table()
    for column in ("NAME", "TYPE", "BASE", "AUTOV2", "SIZE", "WHERE"):
        table.add_column(column, overflow="fold")
    for model in models:
        hosts = sorted({loc.host for loc in model.locations})
        table.add_row(
            model.name, _type_name(model), model.base_model or "-",
            model.hashes.autov2 or "unverified", mib(model.size_bytes), ", ".join(hosts) or "-",
        )  # fmt: skip
    return table


def model_details(model: Any) -> Table:
    table = Table(show_header=False)
    hashes = model.hashes
    rows = [
        ("name", model.name), ("type", _type_name(model)), ("base model", model.base_model),
        ("sha256", hashes.sha256), ("autov2", hashes.autov2), ("autov1", hashes.autov1),
        ("autov3", hashes.autov3), ("blake3", hashes.blake3),
        ("size", f"{model.size_bytes:,} bytes" if model.size_bytes else "unknown"),
        ("version", model.version_name),
        ("trained words", ", ".join(model.trained_words)), ("tags", ", ".join(model.tags)),
        ("source", model.source_url), ("description", model.description[:300]),
        ("preview", "yes" if model.has_preview else "no"),
    ]  # fmt: skip
    for key, value in rows:
        if value:
            table.add_row(key, str(value))
    if not hashes.sha256:
        table.add_row("sha256", "unknown: no source has hashed this file yet")
    for loc in model.locations:
        mark = "" if loc.verified else ", unverified"
        table.add_row("location", f"{loc.host}: {loc.path} (as {loc.backend_name}{mark})")
    return table


def locations_table(locations: Iterable[Any]) -> Table:
    table = Table()
    for column in ("HOST", "PATH", "BACKEND NAME", "CONTENT"):
        table.add_column(column, overflow="fold")
    for loc in locations:
        content = "hashed" if loc.verified else "unverified"
        table.add_row(loc.host, loc.path, loc.backend_name, content)
    return table


def scan_summary(final: Any) -> str:
    lines = [
        f"{final.files_found} files: {final.files_hashed} hashed, "
        f"{final.files_cached} unchanged ({final.bytes_hashed / 1024**2:,.1f} MiB read)"
    ]
    lines += [f"[red]error[/]: {error}" for error in final.errors]
    return "\n".join(lines)


def nodes_table(nodes: Iterable[Any]) -> Table:
    table = Table()
    for column in ("NODE", "STATE", "LAST HEARTBEAT", "CPU", "MEMORY", "GPUS", "MODELS"):
        table.add_column(column, overflow="fold")
    for node in nodes:
        data = to_dict(node)
        usage = node.usage
        memory = f"{node.info.memory_total_mb:,} MB"
        if usage.memory_used_mb:
            memory = f"{usage.memory_used_mb:,} / {memory}"
        gpus = usage.gpus or node.info.gpus
        table.add_row(
            node.info.name,
            ("online" if node.connected else "[red]offline[/]")
            + (", draining" if node.draining else ""),
            data.get("last_heartbeat_at", "-"),
            f"{usage.cpu_percent:.0f}% of {node.info.cpu_count}",
            memory,
            "\n".join(
                f"{g.name}: {g.vram_free_mb:,} of {g.vram_total_mb:,} MB free"
                + (f", {g.utilization_percent}% busy" if g.utilization_percent > 0 else "")
                for g in gpus
            )
            or "-",
            ", ".join(m.key for m in node.info.models),
        )
    return table


def duration(seconds: float) -> str:
    """`42s`, `5m03s`, `2h05m`, `3d04h`."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def processes_table(processes: Iterable[Any], now: float) -> Table:
    """`now`: Unix time, for the uptime of ready processes."""
    table = Table()
    for column in ("NODE", "MODEL", "STATE", "PID", "PORT", "UPTIME", "JOBS", "DETAIL"):
        table.add_column(column, overflow="fold")
    for p in processes:
        state = _enum_name(p, "state", "PROCESS_STATE_")
        up = duration(now - p.since.ToNanoseconds() / 1e9) if state == "ready" else "-"
        table.add_row(
            p.node, p.model, state, str(p.pid or "-"), str(p.port or "-"), up,
            str(p.jobs_in_flight), p.reason,
        )  # fmt: skip
    return table


def download_state(download: Any) -> str:
    return _enum_name(download, "state", "DOWNLOAD_STATE_")


def downloads_table(downloads: Iterable[Any]) -> Table:
    table = Table()
    table.add_column("ID", no_wrap=True, min_width=12)
    for column in ("STATE", "SOURCE", "WHERE", "PROGRESS", "SPEED", "DETAIL"):
        table.add_column(column, overflow="fold")
    for d in downloads:
        state = download_state(d)
        size = f"{d.bytes_done / 2**20:,.1f} / {d.bytes_total / 2**20:,.1f} MiB"
        if d.bytes_total:
            size += f" ({100 * d.bytes_done / d.bytes_total:.0f}%)"
        speed = f"{d.bytes_per_second / 2**20:,.1f} MiB/s" if d.bytes_per_second else "-"
        where = (f"{d.node}: " if d.node else "") + (d.dest_path or "-")
        table.add_row(d.id[:12], state, d.source, where, size, speed, d.error)
    return table
