"""Helpers every part of the coordinator uses: time as stored, protobuf timestamps and
enum checks."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.timestamp_pb2 import Timestamp

from stablequeue_coordinator.errors import InvalidArgument

EPOCH = datetime(1970, 1, 1)


def utcnow() -> datetime:
    """Naive UTC, the form stored in every timestamp column."""
    return datetime.now(UTC).replace(tzinfo=None)


def timestamp(value: datetime | None) -> Timestamp | None:
    """A stored naive-UTC datetime as a protobuf Timestamp (None stays unset).

    Plain arithmetic: `Timestamp.FromDatetime` showed up in the submit profile.
    """
    if value is None:
        return None
    delta = value - EPOCH
    return Timestamp(seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000)


def check_enum(field: str, wrapper: EnumTypeWrapper, value: int, *, allow_zero: bool) -> None:
    """Rejects enum numbers the contract does not define (proto3 enums are open)."""
    if value not in wrapper.values() or (value == 0 and not allow_zero):
        names = ", ".join(n for n, _ in wrapper.items() if not n.endswith("UNSPECIFIED"))
        raise InvalidArgument(field, f"unknown value {value}; expected one of {names}")
