"""A model on a node as a backend: the job goes to the node's agent, which runs it on
its local server and streams progress and images back over its session."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from stablequeue_coordinator.backends.base import Attempt, Image, Probe, ServerConfig
from stablequeue_coordinator.backends.sdcpp import OWN_TEXT
from stablequeue_coordinator.downloads.fetch import DownloadFailed
from stablequeue_coordinator.errors import (
    BackendRejected,
    BackendUnavailable,
    FailedPrecondition,
    NotFound,
)
from stablequeue_coordinator.nodes.service import NODE_SCHEME, NodeService

if TYPE_CHECKING:
    from stablequeue_coordinator.downloads.service import DownloadService
from stablequeue.v1 import models_pb2, processes_pb2, queue_pb2
from stablequeue_coordinator.outputs import png
from stablequeue_coordinator.outputs.store import mime_of
from stablequeue_coordinator.queue.states import JobStage

log = logging.getLogger(__name__)
CANCEL_WAIT_S = 30.0  # a cancel that stops the model's server waits for its grace
# After a take-over: how long a node whose attempt was under way may take to come back
# (its agent notices the old coordinator is gone within seconds, then reconnects).
RECOVER_WAIT_S = 30.0


class NodeBackend:
    def __init__(
        self,
        config: ServerConfig,
        timeout: float = 0.0,  # (a node's job runs as long as its agent reports progress)
        *,
        nodes: NodeService,
        downloads: DownloadService | None = None,
    ) -> None:
        self._nodes = nodes
        self._downloads = downloads
        self.node, _, self.model = config.base_url.removeprefix(NODE_SCHEME).rpartition(":")

    async def probe(self) -> Probe:
        node = self._nodes.nodes.get(self.node)
        if node is None or not node.connected:
            return Probe(False, f"node {self.node} is offline")
        return Probe(True, "", self.model)

    async def run(self, attempt: Attempt) -> list[Image]:
        node = self._nodes.nodes.get(self.node)
        process = node.processes.get(self.model) if node is not None else None
        starting = process is None or process.state != processes_pb2.PROCESS_STATE_READY
        model = next((m for m in node.info.models if m.key == self.model), None) if node else None
        for path in model.needed_files if model is not None else []:
            await self._deliver(attempt, path)
        if model is not None and model.missing_files:
            await attempt.stage(JobStage.DOWNLOADING_MODEL,
                                f"downloading {self.model}'s files on {self.node}")  # fmt: skip
        elif starting:
            await attempt.stage(JobStage.STARTING_MODEL, f"starting {self.model} on {self.node}")
        attempt.check_ours()
        updates = self._nodes.run_job(
            self.node, self.model, attempt.job.id, attempt.job.spec.SerializeToString(),
            attempt.task_id,
        )  # fmt: skip
        return await self._follow(attempt, updates, starting)

    async def _follow(
        self,
        attempt: Attempt,
        updates: AsyncIterator[processes_pb2.AgentJobUpdate],
        starting: bool,
    ) -> list[Image]:
        """The attempt's images, from the node's updates (progress relayed on the way)."""
        images: list[Image] = []
        seed = attempt.job.spec.params.seed if attempt.job.spec.HasField("params") else -1
        try:
            async for update in updates:
                if update.error:
                    failure = BackendUnavailable if update.retryable else BackendRejected
                    raise failure(f"node {self.node}: {update.error}")
                if update.download_total:  # the model's files are being fetched first
                    await self._downloading(attempt, update)
                    continue
                if starting:  # the first update means the model is up and working
                    starting = False
                    await attempt.stage(JobStage.GENERATING)
                if update.image:
                    n = len(images)  # sd.cpp writes the seed it picked for -1 in the image
                    used = seed + n if seed >= 0 else png.seed_in(update.image)
                    images.append(Image(update.image, mime_of(update.image), used,
                                        keep_text_as=OWN_TEXT))  # fmt: skip
                elif update.total_steps or update.preview_image:
                    left = update.total_steps - update.step
                    eta = left / update.steps_per_second if update.steps_per_second else -1.0
                    progress = queue_pb2.JobProgress(
                        step=update.step, total_steps=update.total_steps, eta_seconds=eta,
                        fraction=update.step / update.total_steps if update.total_steps else 0.0,
                        preview_image=update.preview_image,
                    )  # fmt: skip
                    result = attempt.on_progress(progress)
                    if asyncio.iscoroutine(result):
                        await result
        except (FailedPrecondition, NotFound) as e:
            raise BackendUnavailable(str(e)) from e
        return images

    async def _deliver(self, attempt: Attempt, path: str) -> None:
        """Sends a file the node's model needs (from the library) before the job runs;
        jobs waiting for the same file share the one download.

        Raises:
            BackendRejected: no source for it, or the download failed.
        """
        if self._downloads is None:
            raise BackendRejected(f"node {self.node} lacks {path}")
        try:
            download_id = await self._downloads.for_node_file(self.node, path)
        except DownloadFailed as e:
            raise BackendRejected(f"node {self.node} lacks {path}: {e}") from e
        await attempt.stage(JobStage.DOWNLOADING_MODEL, f"sending {path} to {self.node}")
        final = None
        async for final in self._downloads.watch(download_id):
            if final.bytes_total:
                progress = queue_pb2.JobProgress(
                    fraction=final.bytes_done / final.bytes_total, eta_seconds=final.eta_seconds
                )
                result = attempt.on_progress(progress)
                if asyncio.iscoroutine(result):
                    await result
        if final is None or final.state != models_pb2.DOWNLOAD_STATE_COMPLETED:
            why = final.error if final is not None and final.error else "it was cancelled"
            reason = f"sending {path} to node {self.node} failed: {why}"
            self._downloads.node_file_failed(self.node, path, reason)
            raise BackendRejected(reason)

    async def _downloading(self, attempt: Attempt, update: processes_pb2.AgentJobUpdate) -> None:
        done, total = update.download_done, update.download_total
        if done >= total:  # all there: the model starts next
            await attempt.stage(JobStage.STARTING_MODEL, f"starting {self.model} on {self.node}")
            return
        detail = f"downloading {self.model}'s files on {self.node} ({total / 2**20:,.0f} MiB)"
        await attempt.stage(JobStage.DOWNLOADING_MODEL, detail)
        progress = queue_pb2.JobProgress(fraction=done / total, eta_seconds=-1.0)
        result = attempt.on_progress(progress)
        if asyncio.iscoroutine(result):
            await result

    async def cancel(self, attempt: Attempt) -> None:
        """Has the agent end the job's work (it drops it, or restarts the model's server)."""
        node = self._nodes.get(self.node)
        if not node.connected:
            return  # an offline node's jobs are over for it already
        command = processes_pb2.CoordinatorCommand(
            cancel_job=processes_pb2.CancelJobCommand(
                job_id=attempt.job.id, task_id=attempt.task_id
            )
        )
        await self._nodes.command(node, command, wait_s=CANCEL_WAIT_S)

    async def recover(self, attempt: Attempt) -> list[Image] | None:
        """The attempt a previous coordinator sent to the node, followed to its end when
        the node comes back with it (None: it did not; the job is run again)."""
        updates = await self._nodes.follow_job(
            self.node, attempt.job.id, attempt.task_id, RECOVER_WAIT_S
        )
        if updates is None:
            return None
        log.info("job %s: following attempt %s on %s", attempt.job.id, attempt.task_id, self.node)
        return await self._follow(attempt, updates, starting=False)

    async def close(self) -> None:
        return None
