from google.protobuf import timestamp_pb2 as _timestamp_pb2
from stablequeue.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_TYPE_UNSPECIFIED: _ClassVar[ModelType]
    MODEL_TYPE_CHECKPOINT: _ClassVar[ModelType]
    MODEL_TYPE_DIFFUSION_MODEL: _ClassVar[ModelType]
    MODEL_TYPE_LORA: _ClassVar[ModelType]
    MODEL_TYPE_VAE: _ClassVar[ModelType]
    MODEL_TYPE_TEXT_ENCODER: _ClassVar[ModelType]
    MODEL_TYPE_EMBEDDING: _ClassVar[ModelType]
    MODEL_TYPE_UPSCALER: _ClassVar[ModelType]
    MODEL_TYPE_CONTROLNET: _ClassVar[ModelType]
    MODEL_TYPE_OTHER: _ClassVar[ModelType]

class DownloadState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DOWNLOAD_STATE_UNSPECIFIED: _ClassVar[DownloadState]
    DOWNLOAD_STATE_QUEUED: _ClassVar[DownloadState]
    DOWNLOAD_STATE_DOWNLOADING: _ClassVar[DownloadState]
    DOWNLOAD_STATE_VERIFYING: _ClassVar[DownloadState]
    DOWNLOAD_STATE_COMPLETED: _ClassVar[DownloadState]
    DOWNLOAD_STATE_FAILED: _ClassVar[DownloadState]
    DOWNLOAD_STATE_CANCELLED: _ClassVar[DownloadState]
MODEL_TYPE_UNSPECIFIED: ModelType
MODEL_TYPE_CHECKPOINT: ModelType
MODEL_TYPE_DIFFUSION_MODEL: ModelType
MODEL_TYPE_LORA: ModelType
MODEL_TYPE_VAE: ModelType
MODEL_TYPE_TEXT_ENCODER: ModelType
MODEL_TYPE_EMBEDDING: ModelType
MODEL_TYPE_UPSCALER: ModelType
MODEL_TYPE_CONTROLNET: ModelType
MODEL_TYPE_OTHER: ModelType
DOWNLOAD_STATE_UNSPECIFIED: DownloadState
DOWNLOAD_STATE_QUEUED: DownloadState
DOWNLOAD_STATE_DOWNLOADING: DownloadState
DOWNLOAD_STATE_VERIFYING: DownloadState
DOWNLOAD_STATE_COMPLETED: DownloadState
DOWNLOAD_STATE_FAILED: DownloadState
DOWNLOAD_STATE_CANCELLED: DownloadState

class ReadModelFileRequest(_message.Message):
    __slots__ = ("sha256", "offset")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    offset: int
    def __init__(self, sha256: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class ModelFileChunk(_message.Message):
    __slots__ = ("data", "offset", "size", "name")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    offset: int
    size: int
    name: str
    def __init__(self, data: _Optional[bytes] = ..., offset: _Optional[int] = ..., size: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...

class ModelHashes(_message.Message):
    __slots__ = ("sha256", "autov2", "autov1", "autov3", "blake3")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    AUTOV2_FIELD_NUMBER: _ClassVar[int]
    AUTOV1_FIELD_NUMBER: _ClassVar[int]
    AUTOV3_FIELD_NUMBER: _ClassVar[int]
    BLAKE3_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    autov2: str
    autov1: str
    autov3: str
    blake3: str
    def __init__(self, sha256: _Optional[str] = ..., autov2: _Optional[str] = ..., autov1: _Optional[str] = ..., autov3: _Optional[str] = ..., blake3: _Optional[str] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("id", "hashes", "name", "type", "base_model", "size_bytes", "locations", "description", "trained_words", "tags", "civitai_model_id", "civitai_version_id", "version_name", "source_url", "has_preview", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOCATIONS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TRAINED_WORDS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CIVITAI_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    CIVITAI_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_URL_FIELD_NUMBER: _ClassVar[int]
    HAS_PREVIEW_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    hashes: ModelHashes
    name: str
    type: ModelType
    base_model: str
    size_bytes: int
    locations: _containers.RepeatedCompositeFieldContainer[_common_pb2.ModelLocation]
    description: str
    trained_words: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    civitai_model_id: int
    civitai_version_id: int
    version_name: str
    source_url: str
    has_preview: bool
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., hashes: _Optional[_Union[ModelHashes, _Mapping]] = ..., name: _Optional[str] = ..., type: _Optional[_Union[ModelType, str]] = ..., base_model: _Optional[str] = ..., size_bytes: _Optional[int] = ..., locations: _Optional[_Iterable[_Union[_common_pb2.ModelLocation, _Mapping]]] = ..., description: _Optional[str] = ..., trained_words: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[str]] = ..., civitai_model_id: _Optional[int] = ..., civitai_version_id: _Optional[int] = ..., version_name: _Optional[str] = ..., source_url: _Optional[str] = ..., has_preview: bool = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ScanLibraryRequest(_message.Message):
    __slots__ = ("roots", "force_rehash", "fetch_civitai")
    ROOTS_FIELD_NUMBER: _ClassVar[int]
    FORCE_REHASH_FIELD_NUMBER: _ClassVar[int]
    FETCH_CIVITAI_FIELD_NUMBER: _ClassVar[int]
    roots: _containers.RepeatedScalarFieldContainer[str]
    force_rehash: bool
    fetch_civitai: bool
    def __init__(self, roots: _Optional[_Iterable[str]] = ..., force_rehash: bool = ..., fetch_civitai: bool = ...) -> None: ...

class ScanProgress(_message.Message):
    __slots__ = ("files_found", "files_hashed", "files_cached", "bytes_hashed", "bytes_total", "current_path", "done", "errors")
    FILES_FOUND_FIELD_NUMBER: _ClassVar[int]
    FILES_HASHED_FIELD_NUMBER: _ClassVar[int]
    FILES_CACHED_FIELD_NUMBER: _ClassVar[int]
    BYTES_HASHED_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CURRENT_PATH_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    files_found: int
    files_hashed: int
    files_cached: int
    bytes_hashed: int
    bytes_total: int
    current_path: str
    done: bool
    errors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, files_found: _Optional[int] = ..., files_hashed: _Optional[int] = ..., files_cached: _Optional[int] = ..., bytes_hashed: _Optional[int] = ..., bytes_total: _Optional[int] = ..., current_path: _Optional[str] = ..., done: bool = ..., errors: _Optional[_Iterable[str]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("type", "base_model", "host", "page", "missing_metadata")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    MISSING_METADATA_FIELD_NUMBER: _ClassVar[int]
    type: ModelType
    base_model: str
    host: str
    page: _common_pb2.PageRequest
    missing_metadata: bool
    def __init__(self, type: _Optional[_Union[ModelType, str]] = ..., base_model: _Optional[str] = ..., host: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., missing_metadata: bool = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "next_page_token")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    next_page_token: str
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: Model
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ...) -> None: ...

class SearchModelsRequest(_message.Message):
    __slots__ = ("query", "type", "page")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    query: str
    type: ModelType
    page: _common_pb2.PageRequest
    def __init__(self, query: _Optional[str] = ..., type: _Optional[_Union[ModelType, str]] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class SearchModelsResponse(_message.Message):
    __slots__ = ("models", "next_page_token")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    next_page_token: str
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class LocateModelRequest(_message.Message):
    __slots__ = ("reference",)
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    reference: str
    def __init__(self, reference: _Optional[str] = ...) -> None: ...

class LocateModelResponse(_message.Message):
    __slots__ = ("model", "locations")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LOCATIONS_FIELD_NUMBER: _ClassVar[int]
    model: Model
    locations: _containers.RepeatedCompositeFieldContainer[_common_pb2.ModelLocation]
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ..., locations: _Optional[_Iterable[_Union[_common_pb2.ModelLocation, _Mapping]]] = ...) -> None: ...

class InventoryItem(_message.Message):
    __slots__ = ("header", "file")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    header: InventoryHeader
    file: InventoryFile
    def __init__(self, header: _Optional[_Union[InventoryHeader, _Mapping]] = ..., file: _Optional[_Union[InventoryFile, _Mapping]] = ...) -> None: ...

class InventoryHeader(_message.Message):
    __slots__ = ("host", "app", "incremental")
    HOST_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    INCREMENTAL_FIELD_NUMBER: _ClassVar[int]
    host: str
    app: _common_pb2.AppKind
    incremental: bool
    def __init__(self, host: _Optional[str] = ..., app: _Optional[_Union[_common_pb2.AppKind, str]] = ..., incremental: bool = ...) -> None: ...

class InventoryFile(_message.Message):
    __slots__ = ("path", "backend_name", "type", "size_bytes", "modified_at", "hashes", "removed")
    PATH_FIELD_NUMBER: _ClassVar[int]
    BACKEND_NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_AT_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    path: str
    backend_name: str
    type: ModelType
    size_bytes: int
    modified_at: _timestamp_pb2.Timestamp
    hashes: ModelHashes
    removed: bool
    def __init__(self, path: _Optional[str] = ..., backend_name: _Optional[str] = ..., type: _Optional[_Union[ModelType, str]] = ..., size_bytes: _Optional[int] = ..., modified_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., hashes: _Optional[_Union[ModelHashes, _Mapping]] = ..., removed: bool = ...) -> None: ...

class SyncInventoryResponse(_message.Message):
    __slots__ = ("files_received", "models_matched", "needs_hash")
    FILES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    MODELS_MATCHED_FIELD_NUMBER: _ClassVar[int]
    NEEDS_HASH_FIELD_NUMBER: _ClassVar[int]
    files_received: int
    models_matched: int
    needs_hash: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, files_received: _Optional[int] = ..., models_matched: _Optional[int] = ..., needs_hash: _Optional[_Iterable[str]] = ...) -> None: ...

class ResolveModelRequest(_message.Message):
    __slots__ = ("reference", "host")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    reference: str
    host: str
    def __init__(self, reference: _Optional[str] = ..., host: _Optional[str] = ...) -> None: ...

class ResolveModelResponse(_message.Message):
    __slots__ = ("model", "backend_name")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BACKEND_NAME_FIELD_NUMBER: _ClassVar[int]
    model: Model
    backend_name: str
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ..., backend_name: _Optional[str] = ...) -> None: ...

class RefreshMetadataRequest(_message.Message):
    __slots__ = ("id", "fetch_civitai")
    ID_FIELD_NUMBER: _ClassVar[int]
    FETCH_CIVITAI_FIELD_NUMBER: _ClassVar[int]
    id: str
    fetch_civitai: bool
    def __init__(self, id: _Optional[str] = ..., fetch_civitai: bool = ...) -> None: ...

class RefreshMetadataResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: Model
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ...) -> None: ...

class DeleteModelRequest(_message.Message):
    __slots__ = ("id", "path")
    ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    id: str
    path: str
    def __init__(self, id: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class DeleteModelResponse(_message.Message):
    __slots__ = ("deleted_paths",)
    DELETED_PATHS_FIELD_NUMBER: _ClassVar[int]
    deleted_paths: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, deleted_paths: _Optional[_Iterable[str]] = ...) -> None: ...

class GetModelPreviewRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetModelPreviewResponse(_message.Message):
    __slots__ = ("data", "mime")
    DATA_FIELD_NUMBER: _ClassVar[int]
    MIME_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    mime: str
    def __init__(self, data: _Optional[bytes] = ..., mime: _Optional[str] = ...) -> None: ...

class HuggingFaceSource(_message.Message):
    __slots__ = ("repo", "files", "revision")
    REPO_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    repo: str
    files: _containers.RepeatedScalarFieldContainer[str]
    revision: str
    def __init__(self, repo: _Optional[str] = ..., files: _Optional[_Iterable[str]] = ..., revision: _Optional[str] = ...) -> None: ...

class UrlSource(_message.Message):
    __slots__ = ("url",)
    URL_FIELD_NUMBER: _ClassVar[int]
    url: str
    def __init__(self, url: _Optional[str] = ...) -> None: ...

class LibrarySource(_message.Message):
    __slots__ = ("reference",)
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    reference: str
    def __init__(self, reference: _Optional[str] = ...) -> None: ...

class CivitaiSource(_message.Message):
    __slots__ = ("reference",)
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    reference: str
    def __init__(self, reference: _Optional[str] = ...) -> None: ...

class StartDownloadRequest(_message.Message):
    __slots__ = ("huggingface", "url", "civitai", "library", "dest", "sha256", "node")
    HUGGINGFACE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    CIVITAI_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    DEST_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    huggingface: HuggingFaceSource
    url: UrlSource
    civitai: CivitaiSource
    library: LibrarySource
    dest: str
    sha256: str
    node: str
    def __init__(self, huggingface: _Optional[_Union[HuggingFaceSource, _Mapping]] = ..., url: _Optional[_Union[UrlSource, _Mapping]] = ..., civitai: _Optional[_Union[CivitaiSource, _Mapping]] = ..., library: _Optional[_Union[LibrarySource, _Mapping]] = ..., dest: _Optional[str] = ..., sha256: _Optional[str] = ..., node: _Optional[str] = ...) -> None: ...

class Download(_message.Message):
    __slots__ = ("id", "state", "source", "dest_path", "bytes_done", "bytes_total", "bytes_per_second", "eta_seconds", "error", "model_id", "created_at", "updated_at", "node")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DEST_PATH_FIELD_NUMBER: _ClassVar[int]
    BYTES_DONE_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    BYTES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: DownloadState
    source: str
    dest_path: str
    bytes_done: int
    bytes_total: int
    bytes_per_second: float
    eta_seconds: float
    error: str
    model_id: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    node: str
    def __init__(self, id: _Optional[str] = ..., state: _Optional[_Union[DownloadState, str]] = ..., source: _Optional[str] = ..., dest_path: _Optional[str] = ..., bytes_done: _Optional[int] = ..., bytes_total: _Optional[int] = ..., bytes_per_second: _Optional[float] = ..., eta_seconds: _Optional[float] = ..., error: _Optional[str] = ..., model_id: _Optional[str] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., node: _Optional[str] = ...) -> None: ...

class StartDownloadResponse(_message.Message):
    __slots__ = ("download",)
    DOWNLOAD_FIELD_NUMBER: _ClassVar[int]
    download: Download
    def __init__(self, download: _Optional[_Union[Download, _Mapping]] = ...) -> None: ...

class ListDownloadsRequest(_message.Message):
    __slots__ = ("states",)
    STATES_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[DownloadState]
    def __init__(self, states: _Optional[_Iterable[_Union[DownloadState, str]]] = ...) -> None: ...

class ListDownloadsResponse(_message.Message):
    __slots__ = ("downloads",)
    DOWNLOADS_FIELD_NUMBER: _ClassVar[int]
    downloads: _containers.RepeatedCompositeFieldContainer[Download]
    def __init__(self, downloads: _Optional[_Iterable[_Union[Download, _Mapping]]] = ...) -> None: ...

class GetDownloadRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetDownloadResponse(_message.Message):
    __slots__ = ("download",)
    DOWNLOAD_FIELD_NUMBER: _ClassVar[int]
    download: Download
    def __init__(self, download: _Optional[_Union[Download, _Mapping]] = ...) -> None: ...

class WatchDownloadRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CancelDownloadRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CancelDownloadResponse(_message.Message):
    __slots__ = ("download",)
    DOWNLOAD_FIELD_NUMBER: _ClassVar[int]
    download: Download
    def __init__(self, download: _Optional[_Union[Download, _Mapping]] = ...) -> None: ...
