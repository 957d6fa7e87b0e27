from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AppKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    APP_KIND_UNSPECIFIED: _ClassVar[AppKind]
    APP_KIND_FORGE: _ClassVar[AppKind]
    APP_KIND_COMFYUI: _ClassVar[AppKind]
    APP_KIND_SDCPP: _ClassVar[AppKind]
    APP_KIND_ANY: _ClassVar[AppKind]
APP_KIND_UNSPECIFIED: AppKind
APP_KIND_FORGE: AppKind
APP_KIND_COMFYUI: AppKind
APP_KIND_SDCPP: AppKind
APP_KIND_ANY: AppKind

class ModelLocation(_message.Message):
    __slots__ = ("host", "path", "backend_name", "app", "seen_at", "verified")
    HOST_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    BACKEND_NAME_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    host: str
    path: str
    backend_name: str
    app: AppKind
    seen_at: _timestamp_pb2.Timestamp
    verified: bool
    def __init__(self, host: _Optional[str] = ..., path: _Optional[str] = ..., backend_name: _Optional[str] = ..., app: _Optional[_Union[AppKind, str]] = ..., seen_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., verified: bool = ...) -> None: ...

class PageRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...
