"""The OpenAPI 3.1 document of the HTTP API, built from the routes and the protobuf
descriptors (so it cannot drift from what the gateway accepts and answers)."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from stablequeue_coordinator.common import repeated
from stablequeue_coordinator.http import routes as api
from stablequeue_coordinator.http.convert import INTEGERS, NUMBERS, is_map

F = FieldDescriptor
LONG = {F.TYPE_INT64, F.TYPE_UINT64, F.TYPE_SINT64, F.TYPE_FIXED64, F.TYPE_SFIXED64}
ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "status", "message"],
            "properties": {
                "code": {"type": "string", "description": "gRPC status name"},
                "status": {"type": "integer", "description": "the HTTP status"},
                "message": {"type": "string"},
                "field": {"type": "string", "description": "the request field at fault"},
            },
        }
    },
}
ERRORS = {
    "400": "invalid request (the field is named)",
    "401": "no key, or an unknown or revoked one",
    "403": "the key's scope may not do this, or the object is another caller's",
    "404": "no such object",
    "503": "this coordinator is a standby or starting",
}
TIMESTAMP = "google.protobuf.Timestamp"


def schema_name(descriptor: Descriptor) -> str:
    return descriptor.full_name.removeprefix("stablequeue.v1.").replace(".", "_")


def _ref(descriptor: Descriptor) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{schema_name(descriptor)}"}


def _scalar(field: FieldDescriptor, schemas: dict[str, Any]) -> dict[str, Any]:
    if field.enum_type is not None:
        return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
    if field.message_type is not None:
        if field.message_type.full_name == TIMESTAMP:
            return {"type": "string", "format": "date-time"}
        _add(field.message_type, schemas)
        return _ref(field.message_type)
    if field.type in LONG:  # protobuf's JSON mapping: 64-bit integers as strings
        return {"type": ["string", "integer"], "format": "int64"}
    if field.type in INTEGERS:
        return {"type": "integer", "format": "int32"}
    if field.type in NUMBERS:
        return {"type": "number"}
    if field.type == F.TYPE_BOOL:
        return {"type": "boolean"}
    if field.type == F.TYPE_BYTES:
        return {"type": "string", "format": "byte", "contentEncoding": "base64"}
    return {"type": "string"}


def _field(field: FieldDescriptor, schemas: dict[str, Any]) -> dict[str, Any]:
    if is_map(field):
        value = field.message_type.fields_by_name["value"]
        return {"type": "object", "additionalProperties": _scalar(value, schemas)}
    if repeated(field):
        return {"type": "array", "items": _scalar(field, schemas)}
    return _scalar(field, schemas)


def _add(descriptor: Descriptor, schemas: dict[str, Any]) -> None:
    name = schema_name(descriptor)
    if name in schemas:
        return
    schemas[name] = {}  # recursion guard
    schemas[name] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {f.name: _field(f, schemas) for f in descriptor.fields},
    }
    oneofs = [o for o in descriptor.oneofs if not o.name.startswith("_")]
    if oneofs:
        schemas[name]["description"] = "; ".join(
            "at most one of " + ", ".join(f.name for f in o.fields) for o in oneofs
        )


def _parameters(route: api.Route, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    request = route.method.input_type
    for name in route.path_fields:
        field = request.fields_by_name[name]
        params.append(
            {"name": name, "in": "path", "required": True, "schema": _scalar(field, schemas)}
        )
    if route.has_body:
        return params
    for field in request.fields:
        if field.name in route.path_fields:
            continue
        sub = field.message_type
        if sub is not None and sub.full_name != TIMESTAMP and not repeated(field):
            for inner in sub.fields:  # a nested message's fields as a.b (PageRequest)
                params.append(
                    {"name": f"{field.name}.{inner.name}", "in": "query",
                     "schema": _field(inner, schemas)}
                )  # fmt: skip
            continue
        params.append(
            {
                "name": field.name,
                "in": "query",
                "schema": _field(field, schemas),
                **({"explode": True, "style": "form"} if repeated(field) else {}),
            }
        )
    return params


def _responses(route: api.Route, schemas: dict[str, Any]) -> dict[str, Any]:
    output = route.method.output_type
    if route.answer is api.Answer.EVENTS:
        _add(output, schemas)
        ok = {
            "description": f"server-sent events: each `data:` line is a {schema_name(output)} "
            "as JSON; an `error` event carries an error object if the stream fails",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    elif route.answer in (api.Answer.RESULT_BYTES, api.Answer.PREVIEW_BYTES):
        ok = {
            "description": "the image",
            "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
        }
    else:
        _add(output, schemas)
        ok = {"description": "OK", "content": {"application/json": {"schema": _ref(output)}}}
    out: dict[str, Any] = {"200": ok}
    for status, text in ERRORS.items():
        out[status] = {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    return out


def openapi_document() -> dict[str, Any]:
    schemas: dict[str, Any] = {"Error": ERROR}
    paths: dict[str, Any] = {}
    for route in api.ROUTES:
        request = route.method.input_type
        operation: dict[str, Any] = {
            "operationId": route.method.name,
            "summary": route.summary,
            "description": f"gRPC `{route.grpc_name}`.",
            "tags": [route.tag],
            "parameters": _parameters(route, schemas),
            "responses": _responses(route, schemas),
        }
        if route.has_body:
            _add(request, schemas)
            operation["requestBody"] = {
                "required": False,
                "content": {"application/json": {"schema": _ref(request)}},
            }
        paths.setdefault(route.full_path, {})[route.verb.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "StableQueue coordinator",
            "version": "1",
            "description": (
                "The coordinator's gRPC services over HTTP/JSON (protobuf's JSON mapping, "
                "proto field names). Send `Authorization: Bearer <key>`; callers on the "
                "coordinator's own machine need none unless it runs with --require-auth."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
