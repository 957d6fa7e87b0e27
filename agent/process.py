"""One supervised model server: stopped → starting → ready → stopping (+ failed).

One owner (this object) per model process. Start picks a free port when none is
configured, expands `${PORT}`/`${HOST}`/`${MODEL}` in the args (never a shell),
puts the child in its own process group, captures its output (a tail in memory
and a log file), and declares it ready only when its health check passes — or
fails at `startup_timeout`, or at once if the child exits. Stop sends SIGTERM to
the group, then SIGKILL after a grace period. A second start while starting
waits for the same start; a stop during start cancels it; stop is idempotent.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import logging.handlers
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from stablequeue_agent.config import PLACEHOLDER, ModelConfig, resolve_command
from stablequeue_agent.output import Sampling, Step, keep_tail
from stablequeue_agent.output import lines as output_lines
from stablequeue_coordinator.statemachine import Machine

log = logging.getLogger(__name__)
TAIL_LINES = 200
LOG_MAX_BYTES = 5 * 1024 * 1024
HEALTH_EVERY_S = 0.05


class State(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    FAILED = "failed"


# A repeat of STARTING carries the pid; a stop during a start ends STOPPED; a ready
# model that exits on its own is FAILED; a failed or stopped one may start again.
PROCESS: Machine[State] = Machine.of(
    "model process",
    {
        State.STOPPED: {State.STOPPED, State.STARTING, State.FAILED},
        State.STARTING: {State.STARTING, State.READY, State.FAILED, State.STOPPING,
                         State.STOPPED},
        State.READY: {State.STARTING, State.STOPPING, State.STOPPED, State.FAILED},
        State.STOPPING: {State.STOPPED, State.FAILED},
        State.FAILED: {State.FAILED, State.STARTING, State.STOPPING, State.STOPPED},
    },
)  # fmt: skip


class StartFailed(Exception):
    """The model could not be started; the message says why (with its last output)."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
        return False


class ModelProcess:
    """Args:
    key: the model's key in models.yml.
    config: its settings.
    base_dir: where relative commands resolve (the config's folder).
    log_dir: where its output is written (`<key>.log`, rotated once at 5 MiB).
    on_state: called with (key, state, detail) on every transition.
    """

    def __init__(
        self,
        key: str,
        config: ModelConfig,
        base_dir: Path,
        log_dir: Path,
        on_state: Callable[[str, State, str], None] | None = None,
        grace: float = 5.0,
    ) -> None:
        self.key = key
        self.config = config
        self._base_dir = base_dir
        self._log_path = log_dir / f"{key}.log"
        self._on_state = on_state
        self._grace = grace
        self.state = State.STOPPED
        self.detail = ""
        self.port: int | None = None
        self.started_at = 0.0
        self.changed_at = time.time()  # wall clock of the last state change
        self.proc: asyncio.subprocess.Process | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        # Called with each progress redraw the model prints while a job runs (one job
        # at a time on a node's model), to report its steps.
        self.on_step: Callable[[Step], None] | None = None
        self._starting: asyncio.Task[None] | None = None
        self._pump: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def api(self) -> str:
        return self._expand(self.config.api) if self.config.api else f"http://127.0.0.1:{self.port}"

    def _set(self, state: State, detail: str = "") -> None:
        """The one place the state changes: checked against `PROCESS`, then reported."""
        if not PROCESS.check(self.key, self.state, state, detail):
            return
        self.state, self.detail = state, detail
        self.changed_at = time.time()
        log.info("model %s: %s %s", self.key, state, detail)
        if self._on_state is not None:
            self._on_state(self.key, state, detail)

    def fail(self, reason: str) -> None:
        """Marks a model that is not running as FAILED (it could not be prepared)."""
        if self.state in (State.STOPPED, State.FAILED):
            self._set(State.FAILED, reason)

    def _expand(self, text: str) -> str:
        values = {"PORT": str(self.port or ""), "HOST": "127.0.0.1", "MODEL": self.key}
        return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)

    # ---- starting ---------------------------------------------------------

    async def start(self) -> None:
        """Starts the model and waits until it is ready.

        Raises:
            StartFailed: it could not start; the model is left FAILED with the reason.
        """
        if self.state is State.READY and self.proc is not None and self.proc.returncode is None:
            return
        if self._starting is None or self._starting.done():
            self._starting = asyncio.create_task(self._start(), name=f"start-{self.key}")
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        self._set(State.STARTING)
        try:
            await self._spawn()
            # Reported again with its pid, so the child is on record before it is ready.
            self._set(State.STARTING, f"process {self.pid} started; waiting for it to be ready")
            async with asyncio.timeout(self.config.startup_timeout):
                await self._until_healthy()
        except TimeoutError:
            await self._kill()
            reason = f"not ready after {self.config.startup_timeout:g} s"
            self._set(State.FAILED, reason + self._last_lines())
            raise StartFailed(self.detail) from None
        except StartFailed as e:
            await self._kill()
            self._set(State.FAILED, str(e))
            raise
        except asyncio.CancelledError:  # a stop during start
            await self._kill()
            raise
        self.started_at = time.monotonic()
        self._set(State.READY, self.api)
        self._watch = asyncio.create_task(self._watch_exit(self.proc))

    async def _watch_exit(self, proc: asyncio.subprocess.Process) -> None:
        """A ready model that exits on its own has crashed."""
        code = await proc.wait()
        if self.proc is proc and self.state is State.READY:
            await self._drain()
            self._set(State.FAILED, f"exited with code {code}" + self._last_lines())

    async def _spawn(self) -> None:
        command = resolve_command(self.config.command, self._base_dir)
        if command is None:
            raise StartFailed(f"{self.config.command!r} not found or not executable")
        if self.config.port is not None:
            if port_in_use(self.config.port):
                raise StartFailed(f"port {self.config.port} is already in use")
            self.port = self.config.port
        else:
            self.port = free_port()
        args = [self._expand(a) for a in self.config.args]
        self.tail.clear()
        self.proc = await asyncio.create_subprocess_exec(
            command,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop reaches its children
            cwd=self._base_dir,
            env={**os.environ, **self.config.env},
        )
        self._pump = asyncio.create_task(self._read_output(self.proc))

    async def _until_healthy(self) -> None:
        assert self.proc is not None
        async with httpx.AsyncClient(timeout=1.0) as client:
            while True:
                if self.proc.returncode is not None:
                    raise StartFailed(
                        f"exited with code {self.proc.returncode} while starting"
                        + self._last_lines()
                    )
                if await self._healthy(client):
                    return
                await asyncio.sleep(HEALTH_EVERY_S)

    async def _healthy(self, client: httpx.AsyncClient) -> bool:
        if self.config.health_path:
            try:
                response = await client.get(self.api.rstrip("/") + self.config.health_path)
            except httpx.HTTPError:
                return False
            return response.status_code < 500
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def _read_output(self, proc: asyncio.subprocess.Process) -> None:
        """Keeps the last lines in memory and writes every line to the rotating log, as
        they come: progress redraws (split at `\r`) too, one tail line per bar."""
        assert proc.stdout is not None
        output = self._output_log()
        sampling = Sampling()
        async for line in output_lines(proc.stdout):
            keep_tail(self.tail, line)
            output.info(line)
            step = sampling.step(line)
            if step is not None and self.on_step is not None:
                self.on_step(step)

    def _output_log(self) -> logging.Logger:
        """A logger writing only this model's output to `<key>.log` (one backup kept)."""
        logger = logging.getLogger(f"sq.agent.output.{self.key}")
        if not logger.handlers:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(
                self._log_path, maxBytes=LOG_MAX_BYTES, backupCount=1, encoding="utf-8"
            )
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False
        return logger

    async def ended(self, within: float) -> bool:
        """True when the process has exited (waiting up to `within` s for the exit of
        one whose connection just broke to be seen)."""
        proc = self.proc
        if proc is None:
            return True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await asyncio.shield(proc.wait())
        return proc.returncode is not None

    def exit_note(self) -> str:
        """ " with code N" / " by signal N" once the process has ended, else ""."""
        code = None if self.proc is None else self.proc.returncode
        if code is None:
            return ""
        return f" by signal {-code}" if code < 0 else f" with code {code}"

    def _last_lines(self, count: int = 5) -> str:
        lines = list(self.tail)[-count:]
        return ("; last output: " + " | ".join(lines)) if lines else ""

    # ---- stopping ---------------------------------------------------------

    async def stop(self) -> None:
        """Stops the model (cancelling a start in progress); does nothing if stopped."""
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, StartFailed):
                await self._starting
        if self.proc is None or self.proc.returncode is not None:
            await self._drain()
            if self.state is not State.FAILED:
                self._set(State.STOPPED)
            return
        self._set(State.STOPPING)
        await self._kill()
        self._set(State.STOPPED)

    async def _kill(self) -> None:
        """SIGTERM to the process group, SIGKILL after the grace period; reaps the child."""
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            self._signal(proc, signal.SIGTERM)
            try:
                async with asyncio.timeout(self._grace):
                    await proc.wait()
            except TimeoutError:
                log.warning("model %s ignored SIGTERM for %g s: SIGKILL", self.key, self._grace)
                self._signal(proc, signal.SIGKILL)
                await proc.wait()
        else:
            self._signal(proc, signal.SIGKILL)  # children it may have left in its group
        await self._drain()

    @staticmethod
    def _signal(proc: asyncio.subprocess.Process, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    async def _drain(self) -> None:
        if self._pump is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self._pump
            self._pump = None
