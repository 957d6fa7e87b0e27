"""One state-machine pattern for jobs (status and stage), downloads, a node's model
processes and server health: a table per enum, one function per holder that moves;
an illegal move is a bug that is logged loudly and changes nothing."""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path

import pytest

from stablequeue_agent.config import ModelConfig
from stablequeue_agent.process import PROCESS, ModelProcess, State
from stablequeue_coordinator.common import utcnow
from stablequeue_coordinator.downloads.service import DOWNLOAD, DownloadState
from stablequeue_coordinator.errors import FailedPrecondition
from stablequeue_coordinator.queue.states import (
    JOB_STAGE,
    JOB_STATUS,
    STAGES_OF,
    JobStage,
    JobStatus,
    move_stage,
    transition,
)
from stablequeue_coordinator.servers.service import (
    HEALTH,
    Health,
    HealthState,
    ServerService,
)
from stablequeue_coordinator.statemachine import Machine
from stablequeue_coordinator.store.tables import JobRow

MACHINES: list[tuple[Machine, type[StrEnum]]] = [  # type: ignore[type-arg]
    (JOB_STATUS, JobStatus),
    (JOB_STAGE, JobStage),
    (DOWNLOAD, DownloadState),
    (PROCESS, State),
    (HEALTH, HealthState),
]


def bug_logged(caplog: pytest.LogCaptureFixture) -> bool:
    return any(r.levelno == logging.ERROR and "BUG:" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("machine", "enum"), MACHINES, ids=[m.what for m, _ in MACHINES])
def test_every_machine_lists_the_moves_of_every_state(machine: Machine, enum: type) -> None:  # type: ignore[type-arg]
    assert set(machine.allowed) == set(enum)
    for old, moves in machine.allowed.items():
        assert moves <= set(enum), old


def test_a_table_that_forgets_a_state_is_refused() -> None:
    with pytest.raises(ValueError, match="no moves listed"):
        Machine.of("health", {HealthState.UP: {HealthState.DOWN}})


def test_the_ends_are_final() -> None:
    assert JOB_STATUS.terminal == {JobStatus.COMPLETED}
    assert DOWNLOAD.terminal == {
        DownloadState.COMPLETED, DownloadState.FAILED, DownloadState.CANCELLED,
    }  # fmt: skip
    # Every status's stages can be reached from the stages of the statuses before it.
    for status, moves in JOB_STATUS.allowed.items():
        for stage in STAGES_OF[status]:
            for new_status in moves:
                assert STAGES_OF[new_status] <= JOB_STAGE.allowed[stage]


def job(status: JobStatus, stage: JobStage, attempts: int = 0) -> JobRow:
    now = utcnow()
    return JobRow(
        id="j1", status=status.value, stage=stage.value, app="forge", position=1,
        attempts=attempts, submitted_by="t", spec=b"", created_at=now, updated_at=now,
    )  # fmt: skip


def test_a_job_stage_its_status_cannot_have_is_a_logged_bug_and_changes_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    row = job(JobStatus.PENDING, JobStage.QUEUED)
    assert move_stage(row, JobStage.GENERATING, "") is False
    assert (row.stage, bug_logged(caplog)) == (JobStage.QUEUED.value, True)
    caplog.clear()
    assert move_stage(row, JobStage.WAITING_FOR_SERVER, "no server is up") is True
    assert (row.stage, row.reason) == (JobStage.WAITING_FOR_SERVER.value, "no server is up")
    assert move_stage(row, JobStage.WAITING_FOR_SERVER, "no server is up") is False  # no change
    assert not bug_logged(caplog)
    done = job(JobStatus.COMPLETED, JobStage.DONE)
    assert move_stage(done, JobStage.SAVING, "") is False
    assert done.stage == JobStage.DONE.value and bug_logged(caplog)


def test_a_transition_with_a_stage_of_another_status_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    row = job(JobStatus.PENDING, JobStage.QUEUED)
    with pytest.raises(FailedPrecondition):
        transition(row, JobStatus.PROCESSING, stage=JobStage.DONE, reason="")
    assert (row.status, row.stage, bug_logged(caplog)) == ("pending", "queued", True)
    # An illegal status move (a race a user can cause) is refused to the caller.
    done = job(JobStatus.COMPLETED, JobStage.DONE)
    with pytest.raises(FailedPrecondition, match="cannot become pending"):
        transition(done, JobStatus.PENDING, stage=JobStage.QUEUED, reason="")


def test_a_retry_starts_the_attempts_over_and_a_requeue_keeps_them() -> None:
    running = job(JobStatus.PROCESSING, JobStage.GENERATING, attempts=2)
    transition(running, JobStatus.PENDING, stage=JobStage.QUEUED, reason="transient")
    assert running.attempts == 2
    failed = job(JobStatus.FAILED, JobStage.DONE, attempts=3)
    transition(failed, JobStatus.PENDING, stage=JobStage.QUEUED, reason="retried")
    assert failed.attempts == 0


def test_a_model_process_refuses_an_illegal_move_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[str, State, str]] = []
    process = ModelProcess(
        "sd15", ModelConfig(command="sd-server"), tmp_path, tmp_path,
        on_state=lambda *change: seen.append(change),
    )  # fmt: skip
    process._set(State.READY, "http://127.0.0.1:1")  # STOPPED -> READY skips the start
    assert (process.state, seen, bug_logged(caplog)) == (State.STOPPED, [], True)
    caplog.clear()
    process._set(State.STARTING)
    assert process.state is State.STARTING and seen == [("sd15", State.STARTING, "")]
    process._set(State.STOPPING)
    process._set(State.READY)  # a stopping process never becomes ready
    assert process.state is State.STOPPING and bug_logged(caplog)


def test_server_health_never_goes_back_to_unknown(caplog: pytest.LogCaptureFixture) -> None:
    changes: list[str] = []
    servers = ServerService(None, lambda config: None, 60.0)  # type: ignore[arg-type]
    servers.on_change(lambda: changes.append("changed"))
    servers._set_health("a", Health(HealthState.UP, "", "sd15", utcnow()))
    servers._set_health("a", Health(HealthState.UNKNOWN))
    assert servers._health["a"].state is HealthState.UP and bug_logged(caplog)
    assert changes == ["changed"]
