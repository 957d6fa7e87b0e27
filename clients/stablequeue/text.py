"""How jobs read as short text, shared by `sq` and the dashboards (no extra dependencies)."""

from __future__ import annotations

import json
from typing import Any

from stablequeue.v1 import queue_pb2


def status_name(job: queue_pb2.Job) -> str:
    return queue_pb2.JobStatus.Name(job.status).removeprefix("JOB_STATUS_")


def stage_name(job: queue_pb2.Job) -> str:
    return queue_pb2.JobStage.Name(job.stage).removeprefix("JOB_STAGE_").lower()


def enum_name(message: Any, field: str, prefix: str) -> str:
    """A message's enum field as a lowercase word (`SERVER_HEALTH_UP` -> `up`)."""
    enum = type(message).DESCRIPTOR.fields_by_name[field].enum_type
    return str(enum.values_by_number[getattr(message, field)].name).removeprefix(prefix).lower()


def describe(job: queue_pb2.Job, width: int = 60) -> str:
    """What the job asks for, in one short line."""
    spec = job.spec
    if spec.HasField("params"):
        text = spec.params.prompt.replace("\n", " ")
        return text if len(text) <= width else text[: width - 3] + "..."
    try:
        nodes = len(json.loads(spec.workflow_json))
    except ValueError:
        nodes = 0
    return f"ComfyUI workflow ({nodes} nodes)"
