"""Live displays for `sq watch` and `sq submit --wait`."""

from __future__ import annotations

from collections.abc import Iterable

from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from stablequeue.cli import render
from stablequeue.client import Client
from stablequeue.v1 import models_pb2, queue_pb2

LIVE_STATUSES = (queue_pb2.JOB_STATUS_PENDING, queue_pb2.JOB_STATUS_PROCESSING)


def follow_job(sq: Client, job_id: str, *, quiet: bool) -> queue_pb2.Job:
    """Shows one job's stage and step progress until it is final; returns its last state."""
    job = queue_pb2.Job()
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[steps]}"),
        TimeRemainingColumn(),
        console=render.console,
        disable=quiet,
        transient=False,
    )
    with progress:
        task = progress.add_task(job_id, total=1.0, steps="")
        for event in sq.watch_job(job_id):
            job = event.job
            steps = ""
            if job.progress.total_steps:
                steps = f"step {job.progress.step}/{job.progress.total_steps}"
            label = f"{job_id} {render.status_name(job).lower()}/{render.stage_name(job)}"
            progress.update(task, description=label, completed=job.progress.fraction, steps=steps)
        if job.status == queue_pb2.JOB_STATUS_COMPLETED:
            progress.update(task, completed=1.0)
    if not quiet and job.reason:
        render.console.print(f"{job_id}: {render.status_name(job)}: {job.reason}")
    return job


def follow_queue(sq: Client) -> None:
    """A live table of pending and processing jobs, redrawn on every change (Ctrl-C ends it)."""
    jobs: dict[str, queue_pb2.Job] = {}

    def table() -> object:
        ordered = sorted(
            jobs.values(),
            key=lambda j: (
                j.status != queue_pb2.JOB_STATUS_PROCESSING,
                -j.spec.priority,
                j.position,
            ),
        )
        return render.jobs_table(ordered, title=render.stats_line(stats))

    stats = sq.stats()
    with Live(table(), console=render.console, auto_refresh=False) as live:
        for event in sq.watch_queue(snapshot=True, omit_previews=True):
            if event.HasField("stats"):
                stats = event.stats
            else:
                job = event.job_event.job
                if (
                    job.status in LIVE_STATUSES
                    and event.job_event.type != queue_pb2.JOB_EVENT_TYPE_DELETED
                ):
                    jobs[job.id] = job
                else:
                    jobs.pop(job.id, None)
            live.update(table(), refresh=True)


def follow_scan(
    updates: Iterable[models_pb2.ScanProgress], *, quiet: bool
) -> models_pb2.ScanProgress:
    """A progress bar over the bytes a library scan hashes; returns the final summary."""
    final = models_pb2.ScanProgress()
    progress = _bytes_progress(quiet)
    with progress:
        task = progress.add_task("scanning", total=None)
        for update in updates:
            final = update
            label = f"hashed {update.files_hashed}, unchanged {update.files_cached}"
            progress.update(
                task, description=label, completed=update.bytes_hashed,
                total=update.bytes_total or None,
            )  # fmt: skip
    return final


def follow_download(updates: Iterable[models_pb2.Download], *, quiet: bool) -> models_pb2.Download:
    """A progress bar over a download's bytes; returns its last state."""
    final = models_pb2.Download()
    progress = _bytes_progress(quiet)
    with progress:
        task = progress.add_task("queued", total=None)
        for update in updates:
            final = update
            state = render.download_state(update)
            progress.update(
                task, description=f"{state} {update.source}"[:60], completed=update.bytes_done,
                total=update.bytes_total or None,
            )  # fmt: skip
    return final


def _bytes_progress(quiet: bool) -> Progress:
    """A bar over bytes with size, speed and time left."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=render.console,
        disable=quiet,
    )
