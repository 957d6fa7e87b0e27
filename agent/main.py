"""`sq-agent`: runs a node's models for the coordinator.

    sq-agent --coordinator HOST:PORT --key KEY --config models.yml [--name NODE]

It validates models.yml, starts preload models, then holds one session with the
coordinator (ProcessesService.AgentSession): registers the node and its models,
sends heartbeats and every process state change, and carries out the commands it
receives (start, stop, logs, run and cancel jobs). A lost connection is retried
with backoff and the node registers again. SIGHUP reloads models.yml (unchanged
models keep running); SIGTERM/SIGINT stop every model process before exiting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import psutil
from google.protobuf.timestamp_pb2 import Timestamp

from stablequeue.client import KEEPALIVE, addresses, serving_async
from stablequeue.v1 import models_pb2, models_pb2_grpc, processes_pb2, processes_pb2_grpc, queue_pb2
from stablequeue_agent.cli_job import CliFailed, check_settings, lora_dir_of, lora_files, run_cli
from stablequeue_agent.config import ConfigError, load_config
from stablequeue_agent.downloads import NodeDownloads, missing_files, model_file, needed_files
from stablequeue_agent.gpus import Gpus, load_nvml
from stablequeue_agent.output import readable
from stablequeue_agent.process import StartFailed, State
from stablequeue_agent.supervisor import Supervisor
from stablequeue_coordinator.backends.base import Attempt, ServerConfig
from stablequeue_coordinator.backends.sdcpp import SdCppBackend
from stablequeue_coordinator.downloads.fetch import DownloadFailed
from stablequeue_coordinator.errors import BackendRejected, BackendUnavailable
from stablequeue_coordinator.logs import configure_logging

log = logging.getLogger("sq-agent")
# How long a finished attempt's images and end are sent again at each new session.
RESEND_S = 60.0
JOB_PROGRESS_EVERY_S = 0.25
Code = grpc.StatusCode
TRANSIENT = {Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.INTERNAL, Code.UNKNOWN, Code.ABORTED}
VERSION = "0.1"
STATES = {
    State.STOPPED: processes_pb2.PROCESS_STATE_STOPPED,
    State.STARTING: processes_pb2.PROCESS_STATE_STARTING,
    State.READY: processes_pb2.PROCESS_STATE_READY,
    State.STOPPING: processes_pb2.PROCESS_STATE_STOPPING,
    State.FAILED: processes_pb2.PROCESS_STATE_FAILED,
}


class CliModel(Exception):
    """A start or stop asked of a model that runs one sd-cli process per job."""


class Agent:
    def __init__(self, args: argparse.Namespace, supervisor: Supervisor, gpus: Gpus) -> None:
        self.args = args
        self._active = addresses(args.coordinator)[0]  # of several: the active one
        self.supervisor = supervisor
        self.gpus = gpus
        models_dir = args.models_dir or supervisor.config.base_dir
        self.downloads = NodeDownloads(
            models_dir, self._send_download, self._files_arrived, read_model=self.read_model
        )
        self._outgoing: asyncio.Queue[processes_pb2.AgentMessage] | None = None
        # Job updates made while no session was open (the coordinator went away, a
        # standby is taking over): delivered first thing in the next session.
        self._unsent: list[processes_pb2.AgentMessage] = []
        # The images and ends of attempts finished lately, by attempt, with when: sent
        # again at the start of a session, as a coordinator that froze may have taken
        # them into its socket and never read them (the one that took over follows them).
        self._finished: dict[str, tuple[float, list[processes_pb2.AgentMessage]]] = {}
        self._results: dict[str, list[processes_pb2.AgentMessage]] = {}
        self._commands: set[asyncio.Task[None]] = set()
        # Runs by attempt (task id, else job id) -> (job id, the task running it).
        self._jobs: dict[str, tuple[str, asyncio.Task[None]]] = {}

    # ---- what the coordinator hears --------------------------------------------

    def _running_tasks(self) -> set[str]:
        """Attempts running here, finished lately, or with updates not delivered yet."""
        unsent = {m.job_update.task_id or m.job_update.job_id for m in self._unsent}
        return {*self._jobs, *self._finished, *unsent}

    def node_info(self) -> processes_pb2.NodeInfo:
        config = self.supervisor.config
        loras = self._loras()
        return processes_pb2.NodeInfo(
            name=self.args.name,
            hostname=socket.gethostname(),
            os=f"{platform.system()} {platform.release()}",
            cpu_count=psutil.cpu_count() or 0,
            memory_total_mb=psutil.virtual_memory().total // 2**20,
            agent_version=VERSION,
            heartbeat_interval=self.args.heartbeat,
            gpus=self.gpu_info(),
            models=[
                processes_pb2.NodeModel(
                    key=key,
                    name=m.name or key,
                    description=m.description,
                    exec_mode=m.exec_mode,
                    mode=m.mode,
                    vram_mb=m.vram_mb,
                    missing_files=missing_files(m, config.base_dir),
                    needed_files=needed_files(m, config.base_dir, self.downloads.models_dir),
                    model_file=model_file(m, key, config.base_dir),
                    loras=loras[key],
                )
                for key, m in config.models.items()
            ],
            running_tasks=sorted(self._running_tasks()),
        )

    def channel(self, options: list[tuple[str, Any]] | None = None) -> grpc.aio.Channel:
        """A channel to the coordinator (of several, the active one found last): TLS
        with --tls-ca (or --tls: system roots)."""
        return self._open(self._active, options)

    def _open(self, address: str, options: list[tuple[str, Any]] | None = None) -> Any:
        several = len(addresses(self.args.coordinator)) > 1
        options = [*(options or []), *(KEEPALIVE if several else [])]
        if self.args.tls_ca or self.args.tls:
            roots = self.args.tls_ca.read_bytes() if self.args.tls_ca else None
            credentials = grpc.ssl_channel_credentials(root_certificates=roots)
            return grpc.aio.secure_channel(address, credentials, options)
        return grpc.aio.insecure_channel(address, options)

    async def _find_active(self, stop: asyncio.Event) -> None:
        """Of several coordinators, the one whose health is SERVING (looked for until
        one is, or `stop`)."""
        listed = addresses(self.args.coordinator)
        if len(listed) == 1:
            return
        while not stop.is_set():
            for address in listed:
                async with self._open(address) as channel:
                    if await serving_async(channel):
                        self._active = address
                        return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):
                    await stop.wait()

    async def read_model(self, sha256: str, offset: int) -> AsyncIterator[bytes]:
        """A coordinator model file's bytes from `offset` (ModelsService.ReadModelFile).

        Raises:
            ConnectionError: the transfer was cut (resume it). DownloadFailed: refused.
        """
        metadata = (("authorization", f"Bearer {self.args.key}"),) if self.args.key else ()
        request = models_pb2.ReadModelFileRequest(sha256=sha256, offset=offset)
        options = [("grpc.max_receive_message_length", 64 << 20)]
        try:
            async with self.channel(options) as channel:
                stub = models_pb2_grpc.ModelsServiceStub(channel)
                async for chunk in stub.ReadModelFile(request, metadata=metadata):
                    yield chunk.data
        except grpc.aio.AioRpcError as e:
            if e.code() in TRANSIENT:
                raise ConnectionError(f"{e.code().name}: {e.details()}") from e
            raise DownloadFailed(f"the coordinator refused: {e.code().name}: {e.details()}") from e

    def _send_download(self, update: processes_pb2.DownloadUpdate) -> None:
        if self._outgoing is not None:
            self._outgoing.put_nowait(processes_pb2.AgentMessage(download=update))

    def _files_arrived(self, key: str) -> None:
        """Files were downloaded: the coordinator hears the node's new model list."""
        if self._outgoing is not None:
            self._outgoing.put_nowait(processes_pb2.AgentMessage(register=self.node_info()))

    def gpu_info(self) -> list[processes_pb2.GpuInfo]:
        return [
            processes_pb2.GpuInfo(index=g.index, name=g.name, vram_total_mb=g.total_mb,
                                  vram_free_mb=g.free_mb, utilization_percent=g.utilization)
            for g in self.gpus.read()
        ]  # fmt: skip

    def _loras(self) -> dict[str, list[str]]:
        """Each model's LoRA files."""
        config = self.supervisor.config
        return {
            key: lora_files(lora_dir_of(m, config.base_dir, self.downloads.models_dir))
            for key, m in config.models.items()
        }

    def reload(self) -> None:
        """Reads models.yml again (SIGHUP); a bad file changes nothing."""
        try:
            config = load_config(self.args.config)
        except ConfigError as e:
            log.error("%s not reloaded, the running configuration stays:\n%s", self.args.config, e)
            return
        added, changed, removed = self.supervisor.reload(config)
        log.info("reloaded %s: added %s, changed %s, removed %s", self.args.config,
                 added or "none", changed or "none", removed or "none")  # fmt: skip
        if self._outgoing is not None:
            self._outgoing.put_nowait(processes_pb2.AgentMessage(register=self.node_info()))
            for key in added:
                self.state_changed(key, State.STOPPED, "")

    def process_info(self, key: str) -> processes_pb2.ProcessInfo:
        process = self.supervisor.processes[key]
        return processes_pb2.ProcessInfo(
            model=key,
            node=self.args.name,
            state=STATES[process.state],
            pid=(process.pid or 0) if process.state not in (State.STOPPED, State.FAILED) else 0,
            port=process.port or 0,
            reason=process.detail,
            since=_timestamp(process.changed_at),
            jobs_in_flight=self.supervisor.in_flight[key],
        )

    def state_changed(self, key: str, state: State, detail: str) -> None:
        if self._outgoing is not None:
            self._outgoing.put_nowait(
                processes_pb2.AgentMessage(process_state=self.process_info(key))
            )

    # ---- the session -------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Keeps a session open until `stop`, reconnecting with backoff."""
        backoff = 0.5
        while not stop.is_set():
            try:
                await self._session(stop)
                backoff = 0.5
            except grpc.aio.AioRpcError as e:
                log.warning("coordinator session ended: %s %s", e.code().name, e.details())
                if e.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                    log.error("the coordinator refused the key; check --key (scope node)")
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff):
                    await stop.wait()
            backoff = min(backoff * 2, 30.0)

    async def _session(self, stop: asyncio.Event) -> None:
        await self._find_active(stop)
        outgoing: asyncio.Queue[processes_pb2.AgentMessage] = asyncio.Queue()
        outgoing.put_nowait(processes_pb2.AgentMessage(register=self.node_info()))
        for key in self.supervisor.processes:
            outgoing.put_nowait(processes_pb2.AgentMessage(process_state=self.process_info(key)))
        now = time.monotonic()
        self._finished = {k: v for k, v in self._finished.items() if now - v[0] < RESEND_S}
        unsent = {id(m) for m in self._unsent}
        for _, messages in self._finished.values():
            for message in messages:
                if id(message) not in unsent:
                    outgoing.put_nowait(message)
        for message in self._unsent:
            outgoing.put_nowait(message)
        self._unsent.clear()
        self._outgoing = outgoing
        metadata = (("authorization", f"Bearer {self.args.key}"),) if self.args.key else ()

        async def messages() -> AsyncIterator[processes_pb2.AgentMessage]:
            while True:
                yield await outgoing.get()

        async with self.channel() as channel:
            stub = processes_pb2_grpc.ProcessesServiceStub(channel)
            call = stub.AgentSession(messages(), metadata=metadata)
            beats = asyncio.create_task(self._heartbeats(outgoing))
            stopper = asyncio.create_task(stop.wait())
            try:
                log.info("connected to %s as node %s", self._active, self.args.name)
                reader = asyncio.create_task(self._commands_from(call, outgoing))
                await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if reader.done():
                    reader.result()
                else:
                    call.cancel()
                    reader.cancel()
            finally:
                self._outgoing = None
                beats.cancel()
                stopper.cancel()

    async def _heartbeats(self, outgoing: asyncio.Queue[processes_pb2.AgentMessage]) -> None:
        sent = self._loras()
        while True:
            # LoRA files added or removed on the node: the coordinator routes by them.
            now = await asyncio.to_thread(self._loras)
            if now != sent:
                outgoing.put_nowait(processes_pb2.AgentMessage(register=self.node_info()))
                sent = now
            beat = processes_pb2.Heartbeat(
                time=_now(),
                cpu_percent=psutil.cpu_percent(),
                memory_used_mb=psutil.virtual_memory().used // 2**20,
                gpus=self.gpu_info(),
            )
            outgoing.put_nowait(processes_pb2.AgentMessage(heartbeat=beat))
            await asyncio.sleep(self.args.heartbeat)

    async def _commands_from(
        self, call: object, outgoing: asyncio.Queue[processes_pb2.AgentMessage]
    ) -> None:
        async for command in call:  # type: ignore[attr-defined]
            task = asyncio.create_task(self._carry_out(command, outgoing))
            self._commands.add(task)
            task.add_done_callback(self._commands.discard)

    async def _carry_out(
        self,
        command: processes_pb2.CoordinatorCommand,
        outgoing: asyncio.Queue[processes_pb2.AgentMessage],
    ) -> None:
        result = processes_pb2.CommandResult(command_id=command.command_id, ok=True)
        kind = command.WhichOneof("body")
        try:
            if kind in ("start_model", "stop_model"):
                key = getattr(command, kind).model
                self._refuse_cli(key, "start" if kind == "start_model" else "stop")
            if kind == "start_model":
                key = command.start_model.model
                await self.downloads.ensure_files(key, self.supervisor.config)
                await self.supervisor.ensure_ready(key)
                result.process.CopyFrom(self.process_info(key))
            elif kind == "stop_model":
                key = command.stop_model.model
                await self.supervisor.processes[key].stop()
                result.process.CopyFrom(self.process_info(key))
            elif kind == "run_job":
                await self._run_job_task(command.run_job, outgoing)
                return  # its updates are the answer
            elif kind == "cancel_job":
                await self._cancel_job(command.cancel_job.job_id, command.cancel_job.task_id)
            elif kind == "download":
                self.downloads.start(command.download)
                return  # its DownloadUpdates are the answer
            elif kind == "cancel_download":
                await self.downloads.cancel(command.cancel_download.download_id)
            elif kind == "logs":
                tail = list(self.supervisor.processes[command.logs.model].tail)
                result.lines.extend(tail[-command.logs.lines :] if command.logs.lines else tail)
            else:
                result.ok, result.error = False, f"{kind} is not supported by this agent yet"
        except KeyError as e:
            result.ok, result.error = False, f"no model {e.args[0]!r} in this node's models.yml"
        except (StartFailed, DownloadFailed, CliModel) as e:
            result.ok, result.error = False, str(e)
        outgoing.put_nowait(processes_pb2.AgentMessage(command_result=result))

    def _refuse_cli(self, key: str, verb: str) -> None:
        """A cli model has no process between jobs: nothing to start or stop."""
        model = self.supervisor.config.models.get(key)
        if model is not None and model.exec_mode == "cli":
            raise CliModel(
                f"cannot {verb} {key!r}: it runs {model.command} once per job (exec_mode: cli), "
                "so there is no server to start or stop; submit a job for it instead"
            )

    async def _run_job_task(
        self,
        command: processes_pb2.RunJobCommand,
        outgoing: asyncio.Queue[processes_pb2.AgentMessage],
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        # A new attempt of a job still running here: the coordinator gave up on the old
        # one (this node went silent meanwhile). It ends before the new one starts.
        await self._cancel_job(command.job_id, "", keep=command.task_id)
        key = command.task_id or command.job_id
        self._jobs[key] = (command.job_id, task)
        try:
            await self._run_job(command, outgoing)
        except asyncio.CancelledError:
            if self._jobs.get(key, (None, None))[1] is not task:
                raise  # the agent is going away
            log.info("job %s (attempt %s) cancelled", command.job_id, command.task_id)
        finally:
            if self._jobs.get(key, (None, None))[1] is task:
                del self._jobs[key]

    async def _cancel_job(self, job_id: str, task_id: str = "", keep: str = "") -> None:
        """Ends the job's runs here (only attempt `task_id` when given; never `keep`);
        a job that is not running here is already over."""
        tasks = [
            task for key, (job, task) in list(self._jobs.items())
            if job == job_id and key != keep and (not task_id or key == task_id)
        ]  # fmt: skip
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(set(tasks), timeout=60)

    def _send_job_update(self, message: processes_pb2.AgentMessage) -> None:
        """To the coordinator of the open session; kept for the next one when none is
        open (progress without an image or an end is dropped then: stale by then)."""
        update = message.job_update
        if update.image or update.done or update.error:
            key = update.task_id or update.job_id
            self._results.setdefault(key, []).append(message)
            if update.done:
                self._finished[key] = (time.monotonic(), self._results.pop(key))
        if self._outgoing is not None:
            self._outgoing.put_nowait(message)
        elif update.image or update.done or update.error:
            self._unsent.append(message)

    async def _run_job(
        self,
        command: processes_pb2.RunJobCommand,
        outgoing: asyncio.Queue[processes_pb2.AgentMessage],
    ) -> None:
        """Runs one job on the model's local server, streaming progress and images."""

        def update(**fields: object) -> None:
            job_update = processes_pb2.AgentJobUpdate(
                job_id=command.job_id,
                task_id=command.task_id,
                **fields,  # type: ignore[arg-type]
            )
            self._send_job_update(processes_pb2.AgentMessage(job_update=job_update))

        key = command.model
        model = self.supervisor.config.models.get(key)
        if model is not None:
            try:
                await self._model_files(key, update)
            except DownloadFailed as e:
                self.supervisor.processes[key].fail(str(e))  # `sq processes` says why
                update(done=True, error=str(e))
                return
        if model is not None and model.exec_mode == "cli":
            await self._run_cli_job(command, key, update)
            return
        if model is not None:
            try:
                check_settings(model, queue_pb2.JobSpec.FromString(command.spec).params.extra_json)
            except CliFailed as e:
                update(done=True, error=str(e))
                return
        try:
            process = await self.supervisor.ensure_ready(key)
        except KeyError:
            update(done=True, error=f"no model {key!r} in this node's models.yml")
            return
        except StartFailed as e:
            update(done=True, error=str(e))
            return
        self.supervisor.job_started(key)
        update(step=0)  # the model is ready: generation starts
        spec = queue_pb2.JobSpec.FromString(command.spec)
        spec.params.model = ""  # the node's model was chosen by its key
        job = queue_pb2.Job(id=command.job_id, spec=spec)
        backend = SdCppBackend(
            ServerConfig(alias=f"{self.args.name}:{key}", kind="sdcpp", base_url=process.api)
        )
        attempt = Attempt(
            job,
            command.job_id,
            lambda p: update(step=p.step, total_steps=p.total_steps, preview_image=p.preview_image),
        )
        # sd-server's job API has no steps; its output does (one job at a time here).
        process.on_step = lambda s: update(
            step=s.done, total_steps=s.total, steps_per_second=s.per_second
        )
        try:
            images = await backend.run(attempt)
            for image in images:
                update(image=image.data)
            update(done=True)
        except (BackendRejected, BackendUnavailable) as e:
            # A model that died mid-job (its server gone: refused, reset, 404 for the
            # job) is worth another try; a refusal of a live server is final.
            died = await process.ended(within=1.0)
            retryable = isinstance(e, BackendUnavailable) or died
            why = f"{key} exited{process.exit_note()} during the job" if died else e.message
            update(done=True, error=readable(why), retryable=retryable)
        except asyncio.CancelledError:
            await asyncio.shield(self._end_generation(key, backend, attempt))
            raise
        finally:
            process.on_step = None
            await backend.close()
            self.supervisor.job_finished(key)

    async def _model_files(self, key: str, update: Callable[..., None]) -> None:
        """The model's files, downloaded first if missing; the job sees the bytes."""
        sent = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - sent[0] >= JOB_PROGRESS_EVERY_S or (total and done >= total):
                sent[0] = now
                update(download_done=done, download_total=total)

        await self.downloads.ensure_files(key, self.supervisor.config, progress)

    async def _end_generation(self, key: str, backend: SdCppBackend, attempt: Attempt) -> None:
        """Stops a cancelled job's work on the model's server: a queued job is dropped;
        one being generated can only be ended by stopping the server (sd-server has no
        interrupt), which frees the GPU for the next job."""
        try:
            if await backend.drop(attempt):
                return
        except (BackendRejected, BackendUnavailable) as e:
            log.warning("job %s: could not cancel it on %s: %s", attempt.job.id, key, e.message)
        log.info("job %s cancelled while generating: restarting %s to end it", attempt.job.id, key)
        await self.supervisor.interrupt(key)

    async def _run_cli_job(
        self, command: processes_pb2.RunJobCommand, key: str, update: Callable[..., None]
    ) -> None:
        spec = queue_pb2.JobSpec.FromString(command.spec)
        self.supervisor.job_started(key)
        update(step=0)
        try:
            images = await run_cli(
                key, self.supervisor.config.models[key], self.supervisor.config.base_dir,
                spec.params,
                lambda s: update(step=s.done, total_steps=s.total, steps_per_second=s.per_second),
                self.downloads.models_dir,
            )  # fmt: skip
            for data in images:
                update(image=data)
            update(done=True)
        except CliFailed as e:
            update(done=True, error=readable(str(e)), retryable=e.retryable)
        finally:
            self.supervisor.job_finished(key)


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC))
    return stamp


def _timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sq-agent", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--coordinator", default=os.environ.get("SQ_ADDR", "127.0.0.1:50051"),
        help="HOST:PORT of the coordinator; an active one and standbys: comma-separated",
    )  # fmt: skip
    parser.add_argument("--key", default=os.environ.get("SQ_API_KEY", ""), help="a node key")
    parser.add_argument("--config", type=Path, required=True, help="models.yml")
    parser.add_argument("--name", default=socket.gethostname(), help="node name")
    parser.add_argument("--work-dir", type=Path, default=Path("sq-agent"), help="logs, state")
    parser.add_argument(
        "--models-dir", type=Path, default=None,
        help="where `sq download --node` puts files (default: the folder of models.yml)",
    )  # fmt: skip
    parser.add_argument("--tls", action="store_true", help="connect with TLS (system roots)")
    parser.add_argument(
        "--tls-ca", type=Path, default=None, help="connect with TLS, trusting this PEM certificate"
    )
    parser.add_argument("--heartbeat", type=float, default=5.0, help="seconds between beats")
    parser.add_argument(
        "--vram-mb", type=int, default=0,
        help="VRAM of a GPU NVML cannot read (AMD, Intel, Apple), for VRAM-based eviction",
    )  # fmt: skip
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    config = load_config(args.config)
    holder: list[Agent] = []
    supervisor = Supervisor(
        config,
        args.work_dir,
        free_vram_mb=lambda: gpus.free_vram_mb(),
        on_state=lambda k, s, d: holder[0].state_changed(k, s, d),
        prepare=lambda key: holder[0].downloads.ensure_files(key, supervisor.config),
    )
    nvml = None if args.vram_mb else load_nvml()
    gpus = Gpus(nvml, args.vram_mb, supervisor.reserved_vram_mb)
    agent = Agent(args, supervisor, gpus)
    holder.append(agent)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, agent.reload)
    await supervisor.start()
    try:
        await agent.run(stop)
    finally:
        await supervisor.close()  # the agent going away stops its children
        await agent.downloads.close()
        gpus.close()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging(args.log_level)
    try:
        asyncio.run(serve(args))
    except ConfigError as e:
        print(f"sq-agent: {args.config}:\n{e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
