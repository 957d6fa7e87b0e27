from google.protobuf import timestamp_pb2 as _timestamp_pb2
from stablequeue.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATUS_UNSPECIFIED: _ClassVar[JobStatus]
    JOB_STATUS_PENDING: _ClassVar[JobStatus]
    JOB_STATUS_PROCESSING: _ClassVar[JobStatus]
    JOB_STATUS_COMPLETED: _ClassVar[JobStatus]
    JOB_STATUS_FAILED: _ClassVar[JobStatus]
    JOB_STATUS_CANCELLED: _ClassVar[JobStatus]

class JobStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STAGE_UNSPECIFIED: _ClassVar[JobStage]
    JOB_STAGE_QUEUED: _ClassVar[JobStage]
    JOB_STAGE_WAITING_FOR_SERVER: _ClassVar[JobStage]
    JOB_STAGE_DOWNLOADING_MODEL: _ClassVar[JobStage]
    JOB_STAGE_STARTING_MODEL: _ClassVar[JobStage]
    JOB_STAGE_LOADING_MODEL: _ClassVar[JobStage]
    JOB_STAGE_GENERATING: _ClassVar[JobStage]
    JOB_STAGE_SAVING: _ClassVar[JobStage]
    JOB_STAGE_DONE: _ClassVar[JobStage]

class SeedMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEED_MODE_UNSPECIFIED: _ClassVar[SeedMode]
    SEED_MODE_FIXED: _ClassVar[SeedMode]
    SEED_MODE_INCREMENT: _ClassVar[SeedMode]
    SEED_MODE_RANDOM: _ClassVar[SeedMode]

class GenerationMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GENERATION_MODE_UNSPECIFIED: _ClassVar[GenerationMode]
    GENERATION_MODE_TXT2IMG: _ClassVar[GenerationMode]
    GENERATION_MODE_IMG2IMG: _ClassVar[GenerationMode]

class JobOrder(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_ORDER_UNSPECIFIED: _ClassVar[JobOrder]
    JOB_ORDER_QUEUE: _ClassVar[JobOrder]
    JOB_ORDER_NEWEST: _ClassVar[JobOrder]

class MovePlacement(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MOVE_PLACEMENT_UNSPECIFIED: _ClassVar[MovePlacement]
    MOVE_PLACEMENT_FRONT: _ClassVar[MovePlacement]
    MOVE_PLACEMENT_BACK: _ClassVar[MovePlacement]
    MOVE_PLACEMENT_BEFORE: _ClassVar[MovePlacement]
    MOVE_PLACEMENT_AFTER: _ClassVar[MovePlacement]

class JobEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_EVENT_TYPE_UNSPECIFIED: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_SNAPSHOT: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_SUBMITTED: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_STATUS: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_PROGRESS: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_MOVED: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_DELETED: _ClassVar[JobEventType]

class KeyScope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_SCOPE_UNSPECIFIED: _ClassVar[KeyScope]
    KEY_SCOPE_ADMIN: _ClassVar[KeyScope]
    KEY_SCOPE_SUBMIT: _ClassVar[KeyScope]
    KEY_SCOPE_NODE: _ClassVar[KeyScope]
JOB_STATUS_UNSPECIFIED: JobStatus
JOB_STATUS_PENDING: JobStatus
JOB_STATUS_PROCESSING: JobStatus
JOB_STATUS_COMPLETED: JobStatus
JOB_STATUS_FAILED: JobStatus
JOB_STATUS_CANCELLED: JobStatus
JOB_STAGE_UNSPECIFIED: JobStage
JOB_STAGE_QUEUED: JobStage
JOB_STAGE_WAITING_FOR_SERVER: JobStage
JOB_STAGE_DOWNLOADING_MODEL: JobStage
JOB_STAGE_STARTING_MODEL: JobStage
JOB_STAGE_LOADING_MODEL: JobStage
JOB_STAGE_GENERATING: JobStage
JOB_STAGE_SAVING: JobStage
JOB_STAGE_DONE: JobStage
SEED_MODE_UNSPECIFIED: SeedMode
SEED_MODE_FIXED: SeedMode
SEED_MODE_INCREMENT: SeedMode
SEED_MODE_RANDOM: SeedMode
GENERATION_MODE_UNSPECIFIED: GenerationMode
GENERATION_MODE_TXT2IMG: GenerationMode
GENERATION_MODE_IMG2IMG: GenerationMode
JOB_ORDER_UNSPECIFIED: JobOrder
JOB_ORDER_QUEUE: JobOrder
JOB_ORDER_NEWEST: JobOrder
MOVE_PLACEMENT_UNSPECIFIED: MovePlacement
MOVE_PLACEMENT_FRONT: MovePlacement
MOVE_PLACEMENT_BACK: MovePlacement
MOVE_PLACEMENT_BEFORE: MovePlacement
MOVE_PLACEMENT_AFTER: MovePlacement
JOB_EVENT_TYPE_UNSPECIFIED: JobEventType
JOB_EVENT_TYPE_SNAPSHOT: JobEventType
JOB_EVENT_TYPE_SUBMITTED: JobEventType
JOB_EVENT_TYPE_STATUS: JobEventType
JOB_EVENT_TYPE_PROGRESS: JobEventType
JOB_EVENT_TYPE_MOVED: JobEventType
JOB_EVENT_TYPE_DELETED: JobEventType
KEY_SCOPE_UNSPECIFIED: KeyScope
KEY_SCOPE_ADMIN: KeyScope
KEY_SCOPE_SUBMIT: KeyScope
KEY_SCOPE_NODE: KeyScope

class LoraRef(_message.Message):
    __slots__ = ("name", "weight")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    weight: float
    def __init__(self, name: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class GenerationParams(_message.Message):
    __slots__ = ("mode", "prompt", "negative_prompt", "seed", "steps", "cfg_scale", "width", "height", "sampler", "scheduler", "batch_size", "iterations", "denoising_strength", "init_images", "loras", "model", "extra_json")
    MODE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CFG_SCALE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SAMPLER_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    DENOISING_STRENGTH_FIELD_NUMBER: _ClassVar[int]
    INIT_IMAGES_FIELD_NUMBER: _ClassVar[int]
    LORAS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    mode: GenerationMode
    prompt: str
    negative_prompt: str
    seed: int
    steps: int
    cfg_scale: float
    width: int
    height: int
    sampler: str
    scheduler: str
    batch_size: int
    iterations: int
    denoising_strength: float
    init_images: _containers.RepeatedScalarFieldContainer[bytes]
    loras: _containers.RepeatedCompositeFieldContainer[LoraRef]
    model: str
    extra_json: str
    def __init__(self, mode: _Optional[_Union[GenerationMode, str]] = ..., prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., seed: _Optional[int] = ..., steps: _Optional[int] = ..., cfg_scale: _Optional[float] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., sampler: _Optional[str] = ..., scheduler: _Optional[str] = ..., batch_size: _Optional[int] = ..., iterations: _Optional[int] = ..., denoising_strength: _Optional[float] = ..., init_images: _Optional[_Iterable[bytes]] = ..., loras: _Optional[_Iterable[_Union[LoraRef, _Mapping]]] = ..., model: _Optional[str] = ..., extra_json: _Optional[str] = ...) -> None: ...

class JobSpec(_message.Message):
    __slots__ = ("app", "params", "workflow_json", "target_server", "priority", "label", "models", "comfy_ui_workflow")
    APP_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_JSON_FIELD_NUMBER: _ClassVar[int]
    TARGET_SERVER_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    COMFY_UI_WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    app: _common_pb2.AppKind
    params: GenerationParams
    workflow_json: str
    target_server: str
    priority: int
    label: str
    models: _containers.RepeatedCompositeFieldContainer[RequiredModel]
    comfy_ui_workflow: str
    def __init__(self, app: _Optional[_Union[_common_pb2.AppKind, str]] = ..., params: _Optional[_Union[GenerationParams, _Mapping]] = ..., workflow_json: _Optional[str] = ..., target_server: _Optional[str] = ..., priority: _Optional[int] = ..., label: _Optional[str] = ..., models: _Optional[_Iterable[_Union[RequiredModel, _Mapping]]] = ..., comfy_ui_workflow: _Optional[str] = ...) -> None: ...

class RequiredModel(_message.Message):
    __slots__ = ("folder", "name", "sha256")
    FOLDER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    folder: str
    name: str
    sha256: str
    def __init__(self, folder: _Optional[str] = ..., name: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class JobProgress(_message.Message):
    __slots__ = ("step", "total_steps", "fraction", "eta_seconds", "preview_image", "preview_mime")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_IMAGE_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_MIME_FIELD_NUMBER: _ClassVar[int]
    step: int
    total_steps: int
    fraction: float
    eta_seconds: float
    preview_image: bytes
    preview_mime: str
    def __init__(self, step: _Optional[int] = ..., total_steps: _Optional[int] = ..., fraction: _Optional[float] = ..., eta_seconds: _Optional[float] = ..., preview_image: _Optional[bytes] = ..., preview_mime: _Optional[str] = ...) -> None: ...

class JobResult(_message.Message):
    __slots__ = ("id", "filename", "mime", "width", "height", "seed", "size_bytes", "infotext", "created_at", "job_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    MIME_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    INFOTEXT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    filename: str
    mime: str
    width: int
    height: int
    seed: int
    size_bytes: int
    infotext: str
    created_at: _timestamp_pb2.Timestamp
    job_id: str
    def __init__(self, id: _Optional[str] = ..., filename: _Optional[str] = ..., mime: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., seed: _Optional[int] = ..., size_bytes: _Optional[int] = ..., infotext: _Optional[str] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., job_id: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "spec", "status", "stage", "reason", "position", "attempts", "server", "submitted_by", "idempotency_key", "batch_id", "batch_index", "created_at", "updated_at", "started_at", "finished_at", "progress", "results", "init_image_count", "model_sha256")
    ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_BY_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_INDEX_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    INIT_IMAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    id: str
    spec: JobSpec
    status: JobStatus
    stage: JobStage
    reason: str
    position: int
    attempts: int
    server: str
    submitted_by: str
    idempotency_key: str
    batch_id: str
    batch_index: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    progress: JobProgress
    results: _containers.RepeatedCompositeFieldContainer[JobResult]
    init_image_count: int
    model_sha256: str
    def __init__(self, id: _Optional[str] = ..., spec: _Optional[_Union[JobSpec, _Mapping]] = ..., status: _Optional[_Union[JobStatus, str]] = ..., stage: _Optional[_Union[JobStage, str]] = ..., reason: _Optional[str] = ..., position: _Optional[int] = ..., attempts: _Optional[int] = ..., server: _Optional[str] = ..., submitted_by: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., batch_id: _Optional[str] = ..., batch_index: _Optional[int] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., progress: _Optional[_Union[JobProgress, _Mapping]] = ..., results: _Optional[_Iterable[_Union[JobResult, _Mapping]]] = ..., init_image_count: _Optional[int] = ..., model_sha256: _Optional[str] = ...) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ("spec", "idempotency_key")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    spec: JobSpec
    idempotency_key: str
    def __init__(self, spec: _Optional[_Union[JobSpec, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class SubmitJobResponse(_message.Message):
    __slots__ = ("job", "created")
    JOB_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    job: Job
    created: bool
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., created: bool = ...) -> None: ...

class SubmitJobsRequest(_message.Message):
    __slots__ = ("spec", "count", "seed_mode", "idempotency_key")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SEED_MODE_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    spec: JobSpec
    count: int
    seed_mode: SeedMode
    idempotency_key: str
    def __init__(self, spec: _Optional[_Union[JobSpec, _Mapping]] = ..., count: _Optional[int] = ..., seed_mode: _Optional[_Union[SeedMode, str]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class SubmitJobsResponse(_message.Message):
    __slots__ = ("jobs", "created")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    created: bool
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., created: bool = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("statuses", "app", "server", "submitted_by", "batch_id", "order", "page")
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_BY_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    statuses: _containers.RepeatedScalarFieldContainer[JobStatus]
    app: _common_pb2.AppKind
    server: str
    submitted_by: str
    batch_id: str
    order: JobOrder
    page: _common_pb2.PageRequest
    def __init__(self, statuses: _Optional[_Iterable[_Union[JobStatus, str]]] = ..., app: _Optional[_Union[_common_pb2.AppKind, str]] = ..., server: _Optional[str] = ..., submitted_by: _Optional[str] = ..., batch_id: _Optional[str] = ..., order: _Optional[_Union[JobOrder, str]] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class RetryJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RetryJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class DeleteJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteJobResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MoveJobRequest(_message.Message):
    __slots__ = ("id", "placement", "anchor_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    placement: MovePlacement
    anchor_id: str
    def __init__(self, id: _Optional[str] = ..., placement: _Optional[_Union[MovePlacement, str]] = ..., anchor_id: _Optional[str] = ...) -> None: ...

class MoveJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class SetPriorityRequest(_message.Message):
    __slots__ = ("id", "priority")
    ID_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    id: str
    priority: int
    def __init__(self, id: _Optional[str] = ..., priority: _Optional[int] = ...) -> None: ...

class SetPriorityResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class PauseQueueRequest(_message.Message):
    __slots__ = ("server",)
    SERVER_FIELD_NUMBER: _ClassVar[int]
    server: str
    def __init__(self, server: _Optional[str] = ...) -> None: ...

class PauseQueueResponse(_message.Message):
    __slots__ = ("stats",)
    STATS_FIELD_NUMBER: _ClassVar[int]
    stats: QueueStats
    def __init__(self, stats: _Optional[_Union[QueueStats, _Mapping]] = ...) -> None: ...

class ResumeQueueRequest(_message.Message):
    __slots__ = ("server",)
    SERVER_FIELD_NUMBER: _ClassVar[int]
    server: str
    def __init__(self, server: _Optional[str] = ...) -> None: ...

class ResumeQueueResponse(_message.Message):
    __slots__ = ("stats",)
    STATS_FIELD_NUMBER: _ClassVar[int]
    stats: QueueStats
    def __init__(self, stats: _Optional[_Union[QueueStats, _Mapping]] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("type", "job", "time")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    type: JobEventType
    job: Job
    time: _timestamp_pb2.Timestamp
    def __init__(self, type: _Optional[_Union[JobEventType, str]] = ..., job: _Optional[_Union[Job, _Mapping]] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WatchQueueRequest(_message.Message):
    __slots__ = ("snapshot", "omit_previews")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    OMIT_PREVIEWS_FIELD_NUMBER: _ClassVar[int]
    snapshot: bool
    omit_previews: bool
    def __init__(self, snapshot: bool = ..., omit_previews: bool = ...) -> None: ...

class QueueEvent(_message.Message):
    __slots__ = ("job_event", "stats")
    JOB_EVENT_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    job_event: JobEvent
    stats: QueueStats
    def __init__(self, job_event: _Optional[_Union[JobEvent, _Mapping]] = ..., stats: _Optional[_Union[QueueStats, _Mapping]] = ...) -> None: ...

class GetQueueStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class QueueStats(_message.Message):
    __slots__ = ("pending", "processing", "completed", "failed", "cancelled", "paused", "paused_servers", "pause_reason")
    PENDING_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    PAUSED_SERVERS_FIELD_NUMBER: _ClassVar[int]
    PAUSE_REASON_FIELD_NUMBER: _ClassVar[int]
    pending: int
    processing: int
    completed: int
    failed: int
    cancelled: int
    paused: bool
    paused_servers: _containers.RepeatedScalarFieldContainer[str]
    pause_reason: str
    def __init__(self, pending: _Optional[int] = ..., processing: _Optional[int] = ..., completed: _Optional[int] = ..., failed: _Optional[int] = ..., cancelled: _Optional[int] = ..., paused: bool = ..., paused_servers: _Optional[_Iterable[str]] = ..., pause_reason: _Optional[str] = ...) -> None: ...

class GetQueueStatsResponse(_message.Message):
    __slots__ = ("stats",)
    STATS_FIELD_NUMBER: _ClassVar[int]
    stats: QueueStats
    def __init__(self, stats: _Optional[_Union[QueueStats, _Mapping]] = ...) -> None: ...

class ListResultsRequest(_message.Message):
    __slots__ = ("job_id", "page", "model", "text", "since", "until")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    page: _common_pb2.PageRequest
    model: str
    text: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    def __init__(self, job_id: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., model: _Optional[str] = ..., text: _Optional[str] = ..., since: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListResultsResponse(_message.Message):
    __slots__ = ("results", "next_page_token")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[JobResult]
    next_page_token: str
    def __init__(self, results: _Optional[_Iterable[_Union[JobResult, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetResultRequest(_message.Message):
    __slots__ = ("id", "max_edge")
    ID_FIELD_NUMBER: _ClassVar[int]
    MAX_EDGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    max_edge: int
    def __init__(self, id: _Optional[str] = ..., max_edge: _Optional[int] = ...) -> None: ...

class ResultChunk(_message.Message):
    __slots__ = ("result", "data", "mime")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    MIME_FIELD_NUMBER: _ClassVar[int]
    result: JobResult
    data: bytes
    mime: str
    def __init__(self, result: _Optional[_Union[JobResult, _Mapping]] = ..., data: _Optional[bytes] = ..., mime: _Optional[str] = ...) -> None: ...

class DeleteResultRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteResultResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ApiKey(_message.Message):
    __slots__ = ("id", "name", "scope", "created_at", "last_used_at", "revoked_at", "node")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    scope: KeyScope
    created_at: _timestamp_pb2.Timestamp
    last_used_at: _timestamp_pb2.Timestamp
    revoked_at: _timestamp_pb2.Timestamp
    node: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., scope: _Optional[_Union[KeyScope, str]] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., last_used_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., revoked_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., node: _Optional[str] = ...) -> None: ...

class CreateApiKeyRequest(_message.Message):
    __slots__ = ("name", "scope", "node")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    name: str
    scope: KeyScope
    node: str
    def __init__(self, name: _Optional[str] = ..., scope: _Optional[_Union[KeyScope, str]] = ..., node: _Optional[str] = ...) -> None: ...

class CreateApiKeyResponse(_message.Message):
    __slots__ = ("key", "secret")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    key: ApiKey
    secret: str
    def __init__(self, key: _Optional[_Union[ApiKey, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class ListApiKeysRequest(_message.Message):
    __slots__ = ("include_revoked",)
    INCLUDE_REVOKED_FIELD_NUMBER: _ClassVar[int]
    include_revoked: bool
    def __init__(self, include_revoked: bool = ...) -> None: ...

class ListApiKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[ApiKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[ApiKey, _Mapping]]] = ...) -> None: ...

class RevokeApiKeyRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RevokeApiKeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: ApiKey
    def __init__(self, key: _Optional[_Union[ApiKey, _Mapping]] = ...) -> None: ...
