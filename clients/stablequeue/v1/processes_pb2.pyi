from google.protobuf import timestamp_pb2 as _timestamp_pb2
from stablequeue.v1 import models_pb2 as _models_pb2
from stablequeue.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ServerHealth(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SERVER_HEALTH_UNSPECIFIED: _ClassVar[ServerHealth]
    SERVER_HEALTH_UNKNOWN: _ClassVar[ServerHealth]
    SERVER_HEALTH_UP: _ClassVar[ServerHealth]
    SERVER_HEALTH_DOWN: _ClassVar[ServerHealth]

class ProcessState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROCESS_STATE_UNSPECIFIED: _ClassVar[ProcessState]
    PROCESS_STATE_STOPPED: _ClassVar[ProcessState]
    PROCESS_STATE_STARTING: _ClassVar[ProcessState]
    PROCESS_STATE_READY: _ClassVar[ProcessState]
    PROCESS_STATE_STOPPING: _ClassVar[ProcessState]
    PROCESS_STATE_FAILED: _ClassVar[ProcessState]
SERVER_HEALTH_UNSPECIFIED: ServerHealth
SERVER_HEALTH_UNKNOWN: ServerHealth
SERVER_HEALTH_UP: ServerHealth
SERVER_HEALTH_DOWN: ServerHealth
PROCESS_STATE_UNSPECIFIED: ProcessState
PROCESS_STATE_STOPPED: ProcessState
PROCESS_STATE_STARTING: ProcessState
PROCESS_STATE_READY: ProcessState
PROCESS_STATE_STOPPING: ProcessState
PROCESS_STATE_FAILED: ProcessState

class Server(_message.Message):
    __slots__ = ("alias", "kind", "base_url", "username", "has_credentials", "max_concurrency", "labels", "enabled", "paused", "health", "health_reason", "loaded_model", "running_jobs", "last_checked_at", "node", "samplers", "schedulers")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    HAS_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    HEALTH_REASON_FIELD_NUMBER: _ClassVar[int]
    LOADED_MODEL_FIELD_NUMBER: _ClassVar[int]
    RUNNING_JOBS_FIELD_NUMBER: _ClassVar[int]
    LAST_CHECKED_AT_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    SAMPLERS_FIELD_NUMBER: _ClassVar[int]
    SCHEDULERS_FIELD_NUMBER: _ClassVar[int]
    alias: str
    kind: _common_pb2.AppKind
    base_url: str
    username: str
    has_credentials: bool
    max_concurrency: int
    labels: _containers.ScalarMap[str, str]
    enabled: bool
    paused: bool
    health: ServerHealth
    health_reason: str
    loaded_model: str
    running_jobs: int
    last_checked_at: _timestamp_pb2.Timestamp
    node: str
    samplers: _containers.RepeatedScalarFieldContainer[str]
    schedulers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, alias: _Optional[str] = ..., kind: _Optional[_Union[_common_pb2.AppKind, str]] = ..., base_url: _Optional[str] = ..., username: _Optional[str] = ..., has_credentials: bool = ..., max_concurrency: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., enabled: bool = ..., paused: bool = ..., health: _Optional[_Union[ServerHealth, str]] = ..., health_reason: _Optional[str] = ..., loaded_model: _Optional[str] = ..., running_jobs: _Optional[int] = ..., last_checked_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., node: _Optional[str] = ..., samplers: _Optional[_Iterable[str]] = ..., schedulers: _Optional[_Iterable[str]] = ...) -> None: ...

class RegisterServerRequest(_message.Message):
    __slots__ = ("alias", "kind", "base_url", "username", "password", "bearer_token", "max_concurrency", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    BEARER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    alias: str
    kind: _common_pb2.AppKind
    base_url: str
    username: str
    password: str
    bearer_token: str
    max_concurrency: int
    labels: _containers.ScalarMap[str, str]
    def __init__(self, alias: _Optional[str] = ..., kind: _Optional[_Union[_common_pb2.AppKind, str]] = ..., base_url: _Optional[str] = ..., username: _Optional[str] = ..., password: _Optional[str] = ..., bearer_token: _Optional[str] = ..., max_concurrency: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RegisterServerResponse(_message.Message):
    __slots__ = ("server",)
    SERVER_FIELD_NUMBER: _ClassVar[int]
    server: Server
    def __init__(self, server: _Optional[_Union[Server, _Mapping]] = ...) -> None: ...

class UpdateServerRequest(_message.Message):
    __slots__ = ("alias", "base_url", "username", "password", "bearer_token", "max_concurrency", "labels", "replace_labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    BEARER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    REPLACE_LABELS_FIELD_NUMBER: _ClassVar[int]
    alias: str
    base_url: str
    username: str
    password: str
    bearer_token: str
    max_concurrency: int
    labels: _containers.ScalarMap[str, str]
    replace_labels: bool
    def __init__(self, alias: _Optional[str] = ..., base_url: _Optional[str] = ..., username: _Optional[str] = ..., password: _Optional[str] = ..., bearer_token: _Optional[str] = ..., max_concurrency: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., replace_labels: bool = ...) -> None: ...

class UpdateServerResponse(_message.Message):
    __slots__ = ("server",)
    SERVER_FIELD_NUMBER: _ClassVar[int]
    server: Server
    def __init__(self, server: _Optional[_Union[Server, _Mapping]] = ...) -> None: ...

class RemoveServerRequest(_message.Message):
    __slots__ = ("alias",)
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    alias: str
    def __init__(self, alias: _Optional[str] = ...) -> None: ...

class RemoveServerResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListServersRequest(_message.Message):
    __slots__ = ("kind",)
    KIND_FIELD_NUMBER: _ClassVar[int]
    kind: _common_pb2.AppKind
    def __init__(self, kind: _Optional[_Union[_common_pb2.AppKind, str]] = ...) -> None: ...

class ListServersResponse(_message.Message):
    __slots__ = ("servers",)
    SERVERS_FIELD_NUMBER: _ClassVar[int]
    servers: _containers.RepeatedCompositeFieldContainer[Server]
    def __init__(self, servers: _Optional[_Iterable[_Union[Server, _Mapping]]] = ...) -> None: ...

class GetServerRequest(_message.Message):
    __slots__ = ("alias",)
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    alias: str
    def __init__(self, alias: _Optional[str] = ...) -> None: ...

class GetServerResponse(_message.Message):
    __slots__ = ("server",)
    SERVER_FIELD_NUMBER: _ClassVar[int]
    server: Server
    def __init__(self, server: _Optional[_Union[Server, _Mapping]] = ...) -> None: ...

class SetServerEnabledRequest(_message.Message):
    __slots__ = ("alias", "enabled")
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    alias: str
    enabled: bool
    def __init__(self, alias: _Optional[str] = ..., enabled: bool = ...) -> None: ...

class SetServerEnabledResponse(_message.Message):
    __slots__ = ("server",)
    SERVER_FIELD_NUMBER: _ClassVar[int]
    server: Server
    def __init__(self, server: _Optional[_Union[Server, _Mapping]] = ...) -> None: ...

class CheckServerRequest(_message.Message):
    __slots__ = ("alias",)
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    alias: str
    def __init__(self, alias: _Optional[str] = ...) -> None: ...

class CheckServerResponse(_message.Message):
    __slots__ = ("server",)
    SERVER_FIELD_NUMBER: _ClassVar[int]
    server: Server
    def __init__(self, server: _Optional[_Union[Server, _Mapping]] = ...) -> None: ...

class GpuInfo(_message.Message):
    __slots__ = ("name", "vram_total_mb", "vram_free_mb", "utilization_percent", "index")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VRAM_TOTAL_MB_FIELD_NUMBER: _ClassVar[int]
    VRAM_FREE_MB_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_PERCENT_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    name: str
    vram_total_mb: int
    vram_free_mb: int
    utilization_percent: int
    index: int
    def __init__(self, name: _Optional[str] = ..., vram_total_mb: _Optional[int] = ..., vram_free_mb: _Optional[int] = ..., utilization_percent: _Optional[int] = ..., index: _Optional[int] = ...) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("name", "hostname", "os", "cpu_count", "memory_total_mb", "gpus", "agent_version", "models", "heartbeat_interval", "running_tasks")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    CPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_MB_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    RUNNING_TASKS_FIELD_NUMBER: _ClassVar[int]
    name: str
    hostname: str
    os: str
    cpu_count: int
    memory_total_mb: int
    gpus: _containers.RepeatedCompositeFieldContainer[GpuInfo]
    agent_version: str
    models: _containers.RepeatedCompositeFieldContainer[NodeModel]
    heartbeat_interval: float
    running_tasks: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., hostname: _Optional[str] = ..., os: _Optional[str] = ..., cpu_count: _Optional[int] = ..., memory_total_mb: _Optional[int] = ..., gpus: _Optional[_Iterable[_Union[GpuInfo, _Mapping]]] = ..., agent_version: _Optional[str] = ..., models: _Optional[_Iterable[_Union[NodeModel, _Mapping]]] = ..., heartbeat_interval: _Optional[float] = ..., running_tasks: _Optional[_Iterable[str]] = ...) -> None: ...

class NodeModel(_message.Message):
    __slots__ = ("key", "name", "description", "exec_mode", "mode", "vram_mb", "missing_files", "needed_files", "model_file", "loras")
    KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    EXEC_MODE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    VRAM_MB_FIELD_NUMBER: _ClassVar[int]
    MISSING_FILES_FIELD_NUMBER: _ClassVar[int]
    NEEDED_FILES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FILE_FIELD_NUMBER: _ClassVar[int]
    LORAS_FIELD_NUMBER: _ClassVar[int]
    key: str
    name: str
    description: str
    exec_mode: str
    mode: str
    vram_mb: int
    missing_files: _containers.RepeatedScalarFieldContainer[str]
    needed_files: _containers.RepeatedScalarFieldContainer[str]
    model_file: str
    loras: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., exec_mode: _Optional[str] = ..., mode: _Optional[str] = ..., vram_mb: _Optional[int] = ..., missing_files: _Optional[_Iterable[str]] = ..., needed_files: _Optional[_Iterable[str]] = ..., model_file: _Optional[str] = ..., loras: _Optional[_Iterable[str]] = ...) -> None: ...

class ProcessInfo(_message.Message):
    __slots__ = ("model", "node", "state", "pid", "port", "reason", "since", "jobs_in_flight")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    JOBS_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    model: str
    node: str
    state: ProcessState
    pid: int
    port: int
    reason: str
    since: _timestamp_pb2.Timestamp
    jobs_in_flight: int
    def __init__(self, model: _Optional[str] = ..., node: _Optional[str] = ..., state: _Optional[_Union[ProcessState, str]] = ..., pid: _Optional[int] = ..., port: _Optional[int] = ..., reason: _Optional[str] = ..., since: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., jobs_in_flight: _Optional[int] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("info", "connected", "last_heartbeat_at", "processes", "draining", "usage")
    INFO_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_AT_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    info: NodeInfo
    connected: bool
    last_heartbeat_at: _timestamp_pb2.Timestamp
    processes: _containers.RepeatedCompositeFieldContainer[ProcessInfo]
    draining: bool
    usage: Heartbeat
    def __init__(self, info: _Optional[_Union[NodeInfo, _Mapping]] = ..., connected: bool = ..., last_heartbeat_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., processes: _Optional[_Iterable[_Union[ProcessInfo, _Mapping]]] = ..., draining: bool = ..., usage: _Optional[_Union[Heartbeat, _Mapping]] = ...) -> None: ...

class DrainNodeRequest(_message.Message):
    __slots__ = ("node", "drain")
    NODE_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    node: str
    drain: bool
    def __init__(self, node: _Optional[str] = ..., drain: bool = ...) -> None: ...

class DrainNodeResponse(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: Node
    def __init__(self, node: _Optional[_Union[Node, _Mapping]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("time", "cpu_percent", "memory_used_mb", "gpus")
    TIME_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_MB_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    cpu_percent: float
    memory_used_mb: int
    gpus: _containers.RepeatedCompositeFieldContainer[GpuInfo]
    def __init__(self, time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., cpu_percent: _Optional[float] = ..., memory_used_mb: _Optional[int] = ..., gpus: _Optional[_Iterable[_Union[GpuInfo, _Mapping]]] = ...) -> None: ...

class AgentMessage(_message.Message):
    __slots__ = ("register", "heartbeat", "process_state", "command_result", "job_update", "download")
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    PROCESS_STATE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_RESULT_FIELD_NUMBER: _ClassVar[int]
    JOB_UPDATE_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_FIELD_NUMBER: _ClassVar[int]
    register: NodeInfo
    heartbeat: Heartbeat
    process_state: ProcessInfo
    command_result: CommandResult
    job_update: AgentJobUpdate
    download: DownloadUpdate
    def __init__(self, register: _Optional[_Union[NodeInfo, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., process_state: _Optional[_Union[ProcessInfo, _Mapping]] = ..., command_result: _Optional[_Union[CommandResult, _Mapping]] = ..., job_update: _Optional[_Union[AgentJobUpdate, _Mapping]] = ..., download: _Optional[_Union[DownloadUpdate, _Mapping]] = ...) -> None: ...

class CommandResult(_message.Message):
    __slots__ = ("command_id", "ok", "error", "process", "lines")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    ok: bool
    error: str
    process: ProcessInfo
    lines: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, command_id: _Optional[str] = ..., ok: bool = ..., error: _Optional[str] = ..., process: _Optional[_Union[ProcessInfo, _Mapping]] = ..., lines: _Optional[_Iterable[str]] = ...) -> None: ...

class AgentJobUpdate(_message.Message):
    __slots__ = ("job_id", "step", "total_steps", "preview_image", "image", "done", "error", "download_done", "download_total", "steps_per_second", "retryable", "task_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_IMAGE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_DONE_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_TOTAL_FIELD_NUMBER: _ClassVar[int]
    STEPS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    step: int
    total_steps: int
    preview_image: bytes
    image: bytes
    done: bool
    error: str
    download_done: int
    download_total: int
    steps_per_second: float
    retryable: bool
    task_id: str
    def __init__(self, job_id: _Optional[str] = ..., step: _Optional[int] = ..., total_steps: _Optional[int] = ..., preview_image: _Optional[bytes] = ..., image: _Optional[bytes] = ..., done: bool = ..., error: _Optional[str] = ..., download_done: _Optional[int] = ..., download_total: _Optional[int] = ..., steps_per_second: _Optional[float] = ..., retryable: bool = ..., task_id: _Optional[str] = ...) -> None: ...

class CoordinatorCommand(_message.Message):
    __slots__ = ("command_id", "start_model", "stop_model", "run_job", "download", "logs", "cancel_job", "cancel_download")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    START_MODEL_FIELD_NUMBER: _ClassVar[int]
    STOP_MODEL_FIELD_NUMBER: _ClassVar[int]
    RUN_JOB_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    CANCEL_JOB_FIELD_NUMBER: _ClassVar[int]
    CANCEL_DOWNLOAD_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    start_model: StartModelCommand
    stop_model: StopModelCommand
    run_job: RunJobCommand
    download: DownloadCommand
    logs: LogsCommand
    cancel_job: CancelJobCommand
    cancel_download: CancelDownloadCommand
    def __init__(self, command_id: _Optional[str] = ..., start_model: _Optional[_Union[StartModelCommand, _Mapping]] = ..., stop_model: _Optional[_Union[StopModelCommand, _Mapping]] = ..., run_job: _Optional[_Union[RunJobCommand, _Mapping]] = ..., download: _Optional[_Union[DownloadCommand, _Mapping]] = ..., logs: _Optional[_Union[LogsCommand, _Mapping]] = ..., cancel_job: _Optional[_Union[CancelJobCommand, _Mapping]] = ..., cancel_download: _Optional[_Union[CancelDownloadCommand, _Mapping]] = ...) -> None: ...

class CancelDownloadCommand(_message.Message):
    __slots__ = ("download_id",)
    DOWNLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    download_id: str
    def __init__(self, download_id: _Optional[str] = ...) -> None: ...

class CancelJobCommand(_message.Message):
    __slots__ = ("job_id", "task_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    task_id: str
    def __init__(self, job_id: _Optional[str] = ..., task_id: _Optional[str] = ...) -> None: ...

class LogsCommand(_message.Message):
    __slots__ = ("model", "lines")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    model: str
    lines: int
    def __init__(self, model: _Optional[str] = ..., lines: _Optional[int] = ...) -> None: ...

class StartModelCommand(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class StopModelCommand(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class RunJobCommand(_message.Message):
    __slots__ = ("job_id", "model", "spec", "task_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    model: str
    spec: bytes
    task_id: str
    def __init__(self, job_id: _Optional[str] = ..., model: _Optional[str] = ..., spec: _Optional[bytes] = ..., task_id: _Optional[str] = ...) -> None: ...

class DownloadCommand(_message.Message):
    __slots__ = ("download_id", "repo", "files", "url", "dest", "sha256", "revision", "civitai", "library_sha256", "library_name", "library_size")
    DOWNLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    REPO_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    DEST_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CIVITAI_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_SHA256_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_NAME_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_SIZE_FIELD_NUMBER: _ClassVar[int]
    download_id: str
    repo: str
    files: _containers.RepeatedScalarFieldContainer[str]
    url: str
    dest: str
    sha256: str
    revision: str
    civitai: str
    library_sha256: str
    library_name: str
    library_size: int
    def __init__(self, download_id: _Optional[str] = ..., repo: _Optional[str] = ..., files: _Optional[_Iterable[str]] = ..., url: _Optional[str] = ..., dest: _Optional[str] = ..., sha256: _Optional[str] = ..., revision: _Optional[str] = ..., civitai: _Optional[str] = ..., library_sha256: _Optional[str] = ..., library_name: _Optional[str] = ..., library_size: _Optional[int] = ...) -> None: ...

class DownloadUpdate(_message.Message):
    __slots__ = ("download_id", "state", "bytes_done", "bytes_total", "error", "files", "source", "model")
    DOWNLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    BYTES_DONE_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    download_id: str
    state: _models_pb2.DownloadState
    bytes_done: int
    bytes_total: int
    error: str
    files: _containers.RepeatedCompositeFieldContainer[DownloadedFile]
    source: str
    model: str
    def __init__(self, download_id: _Optional[str] = ..., state: _Optional[_Union[_models_pb2.DownloadState, str]] = ..., bytes_done: _Optional[int] = ..., bytes_total: _Optional[int] = ..., error: _Optional[str] = ..., files: _Optional[_Iterable[_Union[DownloadedFile, _Mapping]]] = ..., source: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class DownloadedFile(_message.Message):
    __slots__ = ("path", "sha256", "size", "autov1", "autov3", "blake3")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    AUTOV1_FIELD_NUMBER: _ClassVar[int]
    AUTOV3_FIELD_NUMBER: _ClassVar[int]
    BLAKE3_FIELD_NUMBER: _ClassVar[int]
    path: str
    sha256: str
    size: int
    autov1: str
    autov3: str
    blake3: str
    def __init__(self, path: _Optional[str] = ..., sha256: _Optional[str] = ..., size: _Optional[int] = ..., autov1: _Optional[str] = ..., autov3: _Optional[str] = ..., blake3: _Optional[str] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ...) -> None: ...

class ListProcessesRequest(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: str
    def __init__(self, node: _Optional[str] = ...) -> None: ...

class ListProcessesResponse(_message.Message):
    __slots__ = ("processes",)
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    processes: _containers.RepeatedCompositeFieldContainer[ProcessInfo]
    def __init__(self, processes: _Optional[_Iterable[_Union[ProcessInfo, _Mapping]]] = ...) -> None: ...

class StartProcessRequest(_message.Message):
    __slots__ = ("node", "model")
    NODE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    node: str
    model: str
    def __init__(self, node: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class StartProcessResponse(_message.Message):
    __slots__ = ("process",)
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    process: ProcessInfo
    def __init__(self, process: _Optional[_Union[ProcessInfo, _Mapping]] = ...) -> None: ...

class StopProcessRequest(_message.Message):
    __slots__ = ("node", "model")
    NODE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    node: str
    model: str
    def __init__(self, node: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class StopProcessResponse(_message.Message):
    __slots__ = ("process",)
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    process: ProcessInfo
    def __init__(self, process: _Optional[_Union[ProcessInfo, _Mapping]] = ...) -> None: ...

class GetProcessLogsRequest(_message.Message):
    __slots__ = ("node", "model", "lines")
    NODE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    node: str
    model: str
    lines: int
    def __init__(self, node: _Optional[str] = ..., model: _Optional[str] = ..., lines: _Optional[int] = ...) -> None: ...

class GetProcessLogsResponse(_message.Message):
    __slots__ = ("lines",)
    LINES_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, lines: _Optional[_Iterable[str]] = ...) -> None: ...
