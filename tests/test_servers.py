"""Registering backend servers over gRPC: validation, secrets never returned, health."""

from __future__ import annotations

import socket

import grpc
import pytest

from stablequeue.v1 import common_pb2, processes_pb2
from tests.conftest import CoordinatorThread
from tests.helpers import wait_until


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_register_list_and_never_return_credentials(server: CoordinatorThread) -> None:
    with server.client() as sq:
        url = f"http://127.0.0.1:{closed_port()}"
        reply = sq.processes.RegisterServer(
            processes_pb2.RegisterServerRequest(
                alias="gpu-1",
                kind=common_pb2.APP_KIND_FORGE,
                base_url=url,
                username="me",
                password="hunter2",
                max_concurrency=2,
                labels={"room": "attic"},
            )
        )
        assert reply.server.has_credentials and reply.server.max_concurrency == 2
        listed = sq.processes.ListServers(processes_pb2.ListServersRequest())
        assert [s.alias for s in listed.servers] == ["gpu-1"]
        assert "hunter2" not in str(listed)

        # Nothing listens there: the probe marks it down with the reason.
        def down() -> bool:
            got = sq.processes.GetServer(processes_pb2.GetServerRequest(alias="gpu-1")).server
            return got.health == processes_pb2.SERVER_HEALTH_DOWN

        wait_until(down)
        assert sq.pause("gpu-1").paused_servers == ["gpu-1"]
        assert list(sq.resume("gpu-1").paused_servers) == []
        with pytest.raises(grpc.RpcError) as info:
            sq.processes.RegisterServer(
                processes_pb2.RegisterServerRequest(
                    alias="gpu-1", kind=common_pb2.APP_KIND_FORGE, base_url=url
                )
            )
        assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
        sq.processes.RemoveServer(processes_pb2.RemoveServerRequest(alias="gpu-1"))
        assert list(sq.processes.ListServers(processes_pb2.ListServersRequest()).servers) == []


def test_credentials_in_a_server_url_are_kept_apart_and_never_shown(
    server: CoordinatorThread, caplog: pytest.LogCaptureFixture
) -> None:
    """`--url http://me:pw@host` is taken as username/password: the URL stored, logged
    and returned carries none."""
    with server.client() as sq:
        port = closed_port()
        request = processes_pb2.RegisterServerRequest(
            alias="gpu-1", kind=common_pb2.APP_KIND_FORGE,
            base_url=f"http://me:hunter2@127.0.0.1:{port}/",
        )  # fmt: skip
        reply = sq.processes.RegisterServer(request)
        assert reply.server.base_url == f"http://127.0.0.1:{port}"
        assert reply.server.has_credentials
        got = sq.processes.GetServer(processes_pb2.GetServerRequest(alias="gpu-1")).server
        both = processes_pb2.RegisterServerRequest(
            alias="gpu-2", kind=common_pb2.APP_KIND_FORGE,
            base_url=f"http://me:hunter2@127.0.0.1:{port}", username="me", password="x",
        )  # fmt: skip
        with pytest.raises(grpc.RpcError) as refused:
            sq.processes.RegisterServer(both)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "base_url: credentials in the URL" in str(refused.value.details())
    for text in (str(reply), str(got), caplog.text):
        assert "hunter2" not in text


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"alias": "bad alias", "base_url": "http://x"}, "alias"),
        ({"alias": "a", "base_url": "ftp://x"}, "base_url"),
        ({"alias": "a", "base_url": "http://x", "max_concurrency": 500}, "max_concurrency"),
        ({"alias": "a", "base_url": "http://x", "password": "p"}, "password"),
        ({"alias": "a", "base_url": "http://x", "kind": common_pb2.APP_KIND_ANY}, "kind"),
    ],
)
def test_bad_server_fields_name_the_field(
    sqlite_server: CoordinatorThread, request_fields: dict[str, object], field: str
) -> None:
    with sqlite_server.client() as sq, pytest.raises(grpc.RpcError) as info:
        sq.processes.RegisterServer(
            processes_pb2.RegisterServerRequest(
                **{"kind": common_pb2.APP_KIND_FORGE, **request_fields}  # type: ignore[arg-type]
            )
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(f"{field}:")


def test_every_backend_kind_registers_reports_up_and_round_trips_the_contract(
    server: CoordinatorThread,
) -> None:
    """The kind registry is the one place a backend kind is spelled out: each kind in it
    has a fake in the tests, maps to its own contract enum value and back (also as the
    SDK and CLI name it), is accepted by RegisterServer, and its adapter probes the
    fake up."""
    import importlib

    from stablequeue.app_kinds import APP_NAMES, APPS
    from stablequeue_coordinator.backends.sdcpp_names import SAMPLE_METHODS, SCHEDULERS
    from stablequeue_coordinator.kinds import (
        APP_FROM_PB,
        KIND_FROM_PB,
        KIND_TO_PB,
        KINDS,
        KINDS_FOR_APP,
        SERVER_KINDS,
    )
    from tests.fakes.comfyui import KSAMPLER_SAMPLERS, KSAMPLER_SCHEDULERS, FakeComfyUI
    from tests.fakes.forge import FakeForge
    from tests.fakes.sdcpp import FakeSdServer

    fakes = {"forge": FakeForge, "comfyui": FakeComfyUI, "sdcpp": FakeSdServer}
    names = {
        "forge": (("Euler a", "Euler", "DPM++ 2M"), ("Automatic", "Uniform", "Karras")),
        "comfyui": (KSAMPLER_SAMPLERS, KSAMPLER_SCHEDULERS),
        "sdcpp": (SAMPLE_METHODS, SCHEDULERS),
    }
    assert set(fakes) == set(SERVER_KINDS), "a kind without a fake, or a fake without a kind"
    assert set(APPS) == {*SERVER_KINDS, "any"}, "the contract's AppKind and the registry differ"
    assert KINDS_FOR_APP["any"] == tuple(KINDS)
    for name, kind in KINDS.items():
        module, _, cls = kind.adapter.partition(":")
        assert isinstance(getattr(importlib.import_module(module), cls), type), name
        # A kind that is not registered (a node's model, from its agent's session) runs
        # a registrable kind's jobs and shows as that kind in the contract.
        if not kind.registrable:
            assert kind.runs in SERVER_KINDS and KIND_TO_PB[name] == SERVER_KINDS[kind.runs].app
            assert name in KINDS_FOR_APP[kind.runs]
    with server.client() as sq:
        for name, kind in SERVER_KINDS.items():
            assert APP_NAMES[kind.app] == KIND_FROM_PB[kind.app] == APP_FROM_PB[kind.app] == name
            fake = fakes[name]()
            try:
                request = processes_pb2.RegisterServerRequest(
                    alias=f"{name}-1", kind=kind.app, base_url=fake.url
                )
                sq.processes.RegisterServer(request)
                got = processes_pb2.GetServerRequest(alias=f"{name}-1")

                def up(got: processes_pb2.GetServerRequest = got, app: int = kind.app) -> bool:
                    found = sq.processes.GetServer(got).server
                    assert found.kind == app
                    return found.health == processes_pb2.SERVER_HEALTH_UP

                wait_until(up, 20)
                # The names it offers, as its own lists give them (for pickers).
                found = sq.processes.GetServer(got).server
                assert (tuple(found.samplers), tuple(found.schedulers)) == names[name]
            finally:
                fake.close()
