"""Requests that once answered INTERNAL (an unhandled exception, or a database refusing
what validation let through): each is INVALID_ARGUMENT naming its field now, on SQLite
and PostgreSQL, and the coordinator goes on serving."""

from __future__ import annotations

import base64
import json
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from stablequeue import Client, StableQueueError
from stablequeue.v1 import common_pb2, models_pb2, processes_pb2, queue_pb2


def token(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def server(**fields: Any) -> processes_pb2.RegisterServerRequest:
    base = {"alias": "gpu-1", "kind": common_pb2.APP_KIND_FORGE, "base_url": "http://127.0.0.1:9"}
    return processes_pb2.RegisterServerRequest(**{**base, **fields})


def inventory(**file: Any) -> Any:
    header = models_pb2.InventoryItem(header=models_pb2.InventoryHeader(host="gpu-1"))
    return iter([header, models_pb2.InventoryItem(file=models_pb2.InventoryFile(**file))])


CASES = [
    ("RegisterServer", "processes", server(base_url="http://[::1"), "base_url"),
    ("RegisterServer", "processes", server(username="u" * 201), "username"),
    ("RegisterServer", "processes", server(username="u", password="p" * 501), "password"),
    ("RegisterServer", "processes", server(bearer_token="t" * 2001), "bearer_token"),
    ("RegisterServer", "processes", server(base_url="http://h/" + "x" * 500), "base_url"),
    ("RegisterServer", "processes", server(alias="gpu\x00"), "alias"),
    ("ListJobs", "queue", queue_pb2.ListJobsRequest(page=common_pb2.PageRequest(
        page_token=token({"o": "q", "p": 0, "s": 2**70, "i": "x"}))), "page.page_token"),
    ("ListJobs", "queue", queue_pb2.ListJobsRequest(page=common_pb2.PageRequest(
        page_token=token({"o": "q", "p": 0, "s": 1, "i": {"a": 1}}))), "page.page_token"),
    ("ListResults", "queue", queue_pb2.ListResultsRequest(since=Timestamp(seconds=2**62)),
     "since"),
    ("SearchModels", "models", models_pb2.SearchModelsRequest(query="(" * 50_000), "query"),
    ("ScanLibrary", "models", models_pb2.ScanLibraryRequest(roots=["/tmp/\x00x"]), "roots[0]"),
    ("SubmitJob", "queue", queue_pb2.SubmitJobRequest(idempotency_key="k\x00"),
     "idempotency_key"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "service", "request_", "field"), CASES, ids=[f"{c[0]}-{c[3]}" for c in CASES]
)
def test_a_bad_request_names_its_field(
    sq: Client, method: str, service: str, request_: Any, field: str
) -> None:
    with pytest.raises(StableQueueError) as info:
        if method == "ScanLibrary":  # a server stream
            list(sq.stream(method, request_, service))
        else:
            sq.call(method, request_, service)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT, info.value
    assert info.value.message.startswith(field), info.value.message
    assert sq.stats() is not None  # still serving


def test_an_inventory_file_name_too_long_is_refused(sq: Client) -> None:
    with pytest.raises(StableQueueError) as info:
        sq.call("SyncInventory", inventory(path="/m/a.safetensors", backend_name="b" * 2001),
                "models")  # fmt: skip
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.message.startswith("file[0].backend_name")


def test_a_file_listed_twice_in_one_sync_is_one_location(sq: Client) -> None:
    """Seen in CI: an extension's sync listing one file twice (in two of its lists) hit
    the unique key of the locations (INTERNAL)."""
    header = models_pb2.InventoryItem(header=models_pb2.InventoryHeader(host="gpu-1"))
    twice = models_pb2.InventoryItem(file=models_pb2.InventoryFile(path="/m/a.safetensors"))
    sq.call("SyncInventory", iter([header, twice, twice]), "models")
    where = sq.call("LocateModel", models_pb2.LocateModelRequest(reference="a"), "models")
    assert [loc.path for loc in where.locations] == ["/m/a.safetensors"]
