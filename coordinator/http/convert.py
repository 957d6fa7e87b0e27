"""JSON and query strings to request messages, with errors that name the field."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from stablequeue_coordinator.common import repeated
from stablequeue_coordinator.errors import InvalidArgument

F = FieldDescriptor
INTEGERS = {
    F.TYPE_INT32, F.TYPE_INT64, F.TYPE_UINT32, F.TYPE_UINT64, F.TYPE_SINT32, F.TYPE_SINT64,
    F.TYPE_FIXED32, F.TYPE_FIXED64, F.TYPE_SFIXED32, F.TYPE_SFIXED64,
}  # fmt: skip
NUMBERS = {F.TYPE_DOUBLE, F.TYPE_FLOAT}
WELL_KNOWN = {"google.protobuf.Timestamp": "an RFC 3339 time (2026-01-31T12:00:00Z)"}


def is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def expected(field: FieldDescriptor) -> str:
    """What a field's JSON value must be, in words."""
    if field.enum_type is not None:
        names = [v.name for v in field.enum_type.values if v.number != 0]
        return "one of " + ", ".join(names)
    if field.message_type is not None:
        return WELL_KNOWN.get(field.message_type.full_name, "an object")
    if field.type in INTEGERS:
        return "an integer"
    if field.type in NUMBERS:
        return "a number"
    if field.type == F.TYPE_BOOL:
        return "true or false"
    if field.type == F.TYPE_BYTES:
        return "base64 text"
    return "a string"


def field_of(descriptor: Descriptor, key: str) -> FieldDescriptor | None:
    field = descriptor.fields_by_name.get(key)
    if field is None:
        field = next((f for f in descriptor.fields if f.json_name == key), None)
    return field


def parse(data: Any, message: Message, path: str = "") -> Message:
    """Fills `message` from a JSON value in protobuf's JSON mapping.

    Raises:
        InvalidArgument: naming the first field (as `spec.params.steps`) that is unknown
            or holds the wrong kind of value.
    """
    try:
        return json_format.ParseDict(data, message)
    except json_format.ParseError:
        raise _first_bad(data, message.DESCRIPTOR, path) from None


def _first_bad(data: Any, descriptor: Descriptor, path: str) -> InvalidArgument:
    if not isinstance(data, dict):
        return InvalidArgument(path or "body", "must be a JSON object")
    cls = json_format.message_factory.GetMessageClass(descriptor)  # type: ignore[attr-defined]
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        field = field_of(descriptor, key)
        if field is None:
            return InvalidArgument(where, f"is not a field of {descriptor.name}")
        try:
            json_format.ParseDict({key: value}, cls())
        except json_format.ParseError:
            return _bad_value(field, value, where)
    return InvalidArgument(path or "body", "is not valid")


def _bad_value(field: FieldDescriptor, value: Any, where: str) -> InvalidArgument:
    """Why `value` does not fit `field`, by the innermost field at fault."""
    sub = field.message_type
    if is_map(field):
        return InvalidArgument(where, "must be an object of string values")
    if repeated(field) and not isinstance(value, list):
        return InvalidArgument(where, "must be a list")
    if sub is not None and sub.full_name not in WELL_KNOWN:
        items = enumerate(value) if repeated(field) else [(None, value)]
        for i, item in items:
            inner = where if i is None else f"{where}[{i}]"
            try:
                parse(item, json_format.message_factory.GetMessageClass(sub)(), inner)  # type: ignore[attr-defined]
            except InvalidArgument as e:
                return e
    if repeated(field):
        return InvalidArgument(where, f"must be a list of {_plural(expected(field))}")
    return InvalidArgument(where, f"must be {expected(field)}")


def _plural(what: str) -> str:
    return what.removeprefix("an ").removeprefix("a ") + ("" if what.startswith("one of") else "s")


def from_query(pairs: list[tuple[str, str]], descriptor: Descriptor) -> dict[str, Any]:
    """Query parameters as a JSON value for `parse`: `a.b=1` sets a nested field,
    a repeated field takes its key several times, booleans are true/false/1/0.

    Raises:
        InvalidArgument: an unknown key, or a value the field cannot take.
    """
    out: dict[str, Any] = {}
    for key, value in pairs:
        target, current = out, descriptor
        parts = key.split(".")
        for i, part in enumerate(parts):
            field = field_of(current, part)
            where = ".".join(parts[: i + 1])
            if field is None:
                raise InvalidArgument(where, f"is not a field of {current.name}")
            last = i == len(parts) - 1
            if not last:
                if field.message_type is None or repeated(field):
                    raise InvalidArgument(where, "has no fields to set in a query")
                target = target.setdefault(field.name, {})
                current = field.message_type
                continue
            if field.message_type is not None and field.message_type.full_name not in WELL_KNOWN:
                raise InvalidArgument(where, "is an object: set its fields as " + where + ".<name>")
            item: Any = value
            if field.type == F.TYPE_BOOL:
                if value.lower() not in ("true", "false", "1", "0"):
                    raise InvalidArgument(where, "must be true or false")
                item = value.lower() in ("true", "1")
            if repeated(field):
                target.setdefault(field.name, []).append(item)
            else:
                target[field.name] = item
    return out


def to_json(message: Message) -> dict[str, Any]:
    """A message in protobuf's JSON mapping with the proto field names (as the
    requests take them), every field present (zeros included), enums by name."""
    return json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
