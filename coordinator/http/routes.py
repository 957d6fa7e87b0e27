"""The HTTP/JSON API's routes: each one is a gRPC method of ours, nothing more.

A route names its HTTP method, its path (path parameters are request fields, by their
proto names) and the RPC it calls. GET and DELETE take the other request fields as
query parameters (`page.page_size=20`, repeated fields by repeating the key); POST and
PATCH take them as a JSON body in protobuf's JSON mapping. Answers are the response
message in the same mapping; streams are server-sent events; image bytes are served
as the image itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from google.protobuf.descriptor import MethodDescriptor

from stablequeue.v1 import models_pb2, processes_pb2, queue_pb2

PREFIX = "/api/v1"


class Answer(Enum):
    JSON = "json"  # the response message
    EVENTS = "events"  # a server stream, as server-sent events
    RESULT_BYTES = "result-bytes"  # GetResult's chunks, joined, as the image
    PREVIEW_BYTES = "preview-bytes"  # GetModelPreview's data, as the image


@dataclass(frozen=True)
class Route:
    verb: str
    path: str  # below PREFIX, with {field} placeholders
    rpc: str  # "Service/Method"
    summary: str
    tag: str
    answer: Answer = Answer.JSON

    @property
    def method(self) -> MethodDescriptor:
        service, name = self.rpc.split("/")
        return SERVICES[service].methods_by_name[name]

    @property
    def grpc_name(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def has_body(self) -> bool:
        return self.verb in ("POST", "PATCH", "PUT")

    @property
    def full_path(self) -> str:
        return PREFIX + self.path

    @property
    def path_fields(self) -> list[str]:
        return [part[1:-1] for part in self.path.split("/") if part.startswith("{")]


SERVICES = {
    "QueueService": queue_pb2.DESCRIPTOR.services_by_name["QueueService"],
    "ModelsService": models_pb2.DESCRIPTOR.services_by_name["ModelsService"],
    "ProcessesService": processes_pb2.DESCRIPTOR.services_by_name["ProcessesService"],
}

Q, M, P = "QueueService", "ModelsService", "ProcessesService"
ROUTES: tuple[Route, ...] = (
    # Jobs
    Route("POST", "/jobs", f"{Q}/SubmitJob", "Queue one job", "jobs"),
    Route("POST", "/jobs/bulk", f"{Q}/SubmitJobs", "Queue several copies of a job", "jobs"),
    Route("GET", "/jobs", f"{Q}/ListJobs", "List jobs (filters, cursor pages)", "jobs"),
    Route("GET", "/jobs/{id}", f"{Q}/GetJob", "One job", "jobs"),
    Route("POST", "/jobs/{id}/cancel", f"{Q}/CancelJob", "Cancel a job", "jobs"),
    Route("POST", "/jobs/{id}/retry", f"{Q}/RetryJob", "Queue a finished job again", "jobs"),
    Route("DELETE", "/jobs/{id}", f"{Q}/DeleteJob", "Delete a finished job", "jobs"),
    Route("POST", "/jobs/{id}/move", f"{Q}/MoveJob", "Move a pending job", "jobs"),
    Route("POST", "/jobs/{id}/priority", f"{Q}/SetPriority", "Set a job's priority", "jobs"),
    Route(
        "GET",
        "/jobs/{id}/events",
        f"{Q}/WatchJob",
        "A job's changes, live",
        "jobs",
        Answer.EVENTS,
    ),
    # The queue as a whole
    Route("GET", "/queue/stats", f"{Q}/GetQueueStats", "Counts and pause state", "queue"),
    Route("POST", "/queue/pause", f"{Q}/PauseQueue", "Pause the queue or a server", "queue"),
    Route("POST", "/queue/resume", f"{Q}/ResumeQueue", "Resume the queue or a server", "queue"),
    Route(
        "GET",
        "/queue/events",
        f"{Q}/WatchQueue",
        "Every job change, live",
        "queue",
        Answer.EVENTS,
    ),
    # Results (images)
    Route("GET", "/results", f"{Q}/ListResults", "The gallery (filters, cursor pages)", "results"),
    Route(
        "GET",
        "/results/{id}/image",
        f"{Q}/GetResult",
        "A result's image bytes",
        "results",
        Answer.RESULT_BYTES,
    ),
    Route("DELETE", "/results/{id}", f"{Q}/DeleteResult", "Delete an image", "results"),
    # API keys
    Route("POST", "/keys", f"{Q}/CreateApiKey", "Create a key (its secret is shown once)", "keys"),
    Route("GET", "/keys", f"{Q}/ListApiKeys", "List keys (never their secrets)", "keys"),
    Route("DELETE", "/keys/{id}", f"{Q}/RevokeApiKey", "Revoke a key", "keys"),
    # Models
    Route("GET", "/models", f"{M}/ListModels", "The model library", "models"),
    Route("GET", "/models/search", f"{M}/SearchModels", "Search models by text", "models"),
    Route("GET", "/models/{id}", f"{M}/GetModel", "One model", "models"),
    Route(
        "GET",
        "/models/locate",
        f"{M}/LocateModel",
        "Where a model is (by id, hash or name)",
        "models",
    ),
    Route(
        "GET",
        "/models/{id}/preview",
        f"{M}/GetModelPreview",
        "A model's preview image",
        "models",
        Answer.PREVIEW_BYTES,
    ),
    Route(
        "POST",
        "/models/scan",
        f"{M}/ScanLibrary",
        "Scan the model folders (progress events)",
        "models",
        Answer.EVENTS,
    ),
    Route(
        "POST",
        "/models/{id}/refresh",
        f"{M}/RefreshMetadata",
        "Read a model's metadata again",
        "models",
    ),
    Route("DELETE", "/models/{id}", f"{M}/DeleteModel", "Delete a model's file", "models"),
    Route(
        "GET", "/models/resolve", f"{M}/ResolveModel", "The name a host uses for a model", "models"
    ),
    # Downloads
    Route("POST", "/downloads", f"{M}/StartDownload", "Download a model", "downloads"),
    Route("GET", "/downloads", f"{M}/ListDownloads", "Downloads", "downloads"),
    Route("GET", "/downloads/{id}", f"{M}/GetDownload", "One download", "downloads"),
    Route(
        "GET",
        "/downloads/{id}/events",
        f"{M}/WatchDownload",
        "A download's progress, live",
        "downloads",
        Answer.EVENTS,
    ),
    Route(
        "POST", "/downloads/{id}/cancel", f"{M}/CancelDownload", "Cancel a download", "downloads"
    ),
    # Servers
    Route("POST", "/servers", f"{P}/RegisterServer", "Add a server", "servers"),
    Route("GET", "/servers", f"{P}/ListServers", "Servers", "servers"),
    Route("GET", "/servers/{alias}", f"{P}/GetServer", "One server", "servers"),
    Route("PATCH", "/servers/{alias}", f"{P}/UpdateServer", "Change a server", "servers"),
    Route("DELETE", "/servers/{alias}", f"{P}/RemoveServer", "Remove a server", "servers"),
    Route(
        "POST",
        "/servers/{alias}/enabled",
        f"{P}/SetServerEnabled",
        "Enable or disable a server",
        "servers",
    ),
    Route("POST", "/servers/{alias}/check", f"{P}/CheckServer", "Probe a server now", "servers"),
    # Nodes and their model processes
    Route("GET", "/nodes", f"{P}/ListNodes", "Node agents", "nodes"),
    Route("POST", "/nodes/{node}/drain", f"{P}/DrainNode", "Drain or undrain a node", "nodes"),
    Route("GET", "/processes", f"{P}/ListProcesses", "Model processes on nodes", "nodes"),
    Route("POST", "/processes/start", f"{P}/StartProcess", "Start a model's server", "nodes"),
    Route("POST", "/processes/stop", f"{P}/StopProcess", "Stop a model's server", "nodes"),
    Route("GET", "/processes/logs", f"{P}/GetProcessLogs", "A model server's log", "nodes"),
)

# Calls made only by programs of ours, each with a client of its own: not on HTTP.
NOT_ON_HTTP = frozenset(
    {
        f"{P}/AgentSession",  # node agents: a bidirectional session
        f"{M}/SyncInventory",  # the Forge/ComfyUI extensions: a client stream
        f"{M}/ReadModelFile",  # node agents fetching library files
    }
)
