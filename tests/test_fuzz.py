"""Property-based fuzzing of every RPC, requests generated from the proto descriptors.

Strings with NUL characters, long strings, extreme and negative numbers, NaN and
infinities, unknown enum values, nested messages, lists and maps: whatever a call
gets, it may refuse it, but it never answers INTERNAL or UNKNOWN, and the
coordinator goes on serving. Runs on SQLite and PostgreSQL.

A bounded run is part of `make test`; `SQ_FUZZ_EXAMPLES=2000 make test` (or any
number) runs longer.

Left out: calls that act outside the coordinator by design — scanning folders,
starting downloads from URLs, reading model files, the agent's own session — and
the watch streams, which are read for at most one message.
"""

from __future__ import annotations

import os
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stablequeue import Client
from stablequeue.v1 import models_pb2, processes_pb2, queue_pb2

EXAMPLES = int(os.environ.get("SQ_FUZZ_EXAMPLES", "12"))
SERVICES = {
    "queue": queue_pb2.DESCRIPTOR.services_by_name["QueueService"],
    "models": models_pb2.DESCRIPTOR.services_by_name["ModelsService"],
    "processes": processes_pb2.DESCRIPTOR.services_by_name["ProcessesService"],
}
LEFT_OUT = {"ScanLibrary", "StartDownload", "ReadModelFile", "AgentSession", "DeleteModel"}
NOT_OURS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
INT_BOUNDS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_ENUM: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
TEXT = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", "\x00", "a\x00b", "../../etc/passwd", "http://[::1", "{", "[]", "-1"]),
    st.text(alphabet='x{["\\\x00é', min_size=200, max_size=3000),
    st.builds(lambda n: "{" * n + "}" * n, st.integers(0, 5000)),
)


def scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return TEXT
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.just(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40))
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        width = 32 if kind == FieldDescriptor.TYPE_FLOAT else 64
        return st.floats(width=width, allow_nan=True, allow_infinity=True)
    low, high = INT_BOUNDS[kind]
    return st.one_of(st.integers(low, high), st.sampled_from([low, high, 0, -1, 1][:5]))


def message(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Field values for one message (a dict for its constructor), some fields unset."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key, value = (
                field.message_type.fields_by_name["key"],
                field.message_type.fields_by_name["value"],
            )
            if value.message_type is not None:
                continue  # maps of messages: none in requests worth the time
            fields[field.name] = st.dictionaries(scalar(key), scalar(value), max_size=3)
            continue
        if field.message_type is not None:
            if depth >= 3:
                continue
            if field.message_type.full_name == "google.protobuf.Timestamp":
                one: st.SearchStrategy[Any] = st.fixed_dictionaries(
                    {}, optional={"seconds": st.integers(-(2**62), 2**62),
                                  "nanos": st.integers(-(2**31), 2**31 - 1)}
                )  # fmt: skip
            else:
                one = message(field.message_type, depth + 1)
        else:
            one = scalar(field)
        repeated = getattr(field, "is_repeated", None)
        if repeated is None:
            repeated = field.label == FieldDescriptor.LABEL_REPEATED
        fields[field.name] = st.lists(one, max_size=3) if repeated else one
    return st.fixed_dictionaries({}, optional=fields)


def build(descriptor: Descriptor, values: dict[str, Any]) -> Any:
    """The message for `values`; values protobuf itself refuses are left out (a client
    could not send them either)."""
    from google.protobuf import symbol_database

    cls = symbol_database.Default().GetSymbol(descriptor.full_name)
    made = cls()
    for name, value in values.items():
        field = descriptor.fields_by_name[name]
        try:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                getattr(made, name).update(value)
            elif field.message_type is not None:
                items = value if isinstance(value, list) else [value]
                for item in items:
                    target = (
                        getattr(made, name).add()
                        if isinstance(value, list)
                        else getattr(made, name)
                    )
                    target.CopyFrom(build(field.message_type, item))
                    if not isinstance(value, list):
                        target.SetInParent()
            elif isinstance(value, list):
                getattr(made, name).extend(value)
            else:
                setattr(made, name, value)
        except (ValueError, TypeError):
            continue
    return made


METHODS = [
    (service, method)
    for service, descriptor in SERVICES.items()
    for method in descriptor.methods
    if method.name not in LEFT_OUT
]


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[m.name for _, m in METHODS])
def test_no_request_makes_a_call_fail_inside(sq: Client, service: str, method: Any) -> None:
    @settings(
        max_examples=EXAMPLES, deadline=None, database=None,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(values=message(method.input_type))
    def one(values: dict[str, Any]) -> None:
        request = build(method.input_type, values)
        stub = getattr(sq, service)
        call = getattr(stub, method.name)
        try:
            # A watch sends nothing until something happens: a short deadline ends it.
            timeout = 0.3 if method.server_streaming else 10
            if method.client_streaming:
                reply = call(iter([request]), metadata=sq._metadata, timeout=timeout)
            else:
                reply = call(request, metadata=sq._metadata, timeout=timeout)
            if method.server_streaming:
                next(iter(reply), None)  # the first message (or the end, or the error)
                reply.cancel()
        except grpc.RpcError as e:
            code = e.code()
            if code not in (grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED):
                assert code not in NOT_OURS, f"{method.name}({request}) -> {code}: {e.details()}"

    one()
    assert sq.stats() is not None  # still serving
