"""The HTTP/JSON API through a real HTTP client: every route, auth and scopes,
validation errors that name the field, the OpenAPI document, CORS."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import PIL.Image
import pytest
from openapi_spec_validator import validate

from stablequeue_coordinator.auth.principal import Scope
from stablequeue_coordinator.http.routes import NOT_ON_HTTP, ROUTES, SERVICES
from tests.conftest import CoordinatorThread, make_settings
from tests.fakes.files import FileHost, random_bytes
from tests.fakes.forge import FakeForge
from tests.helpers import kill_all, subscriptions, wait_until
from tests.test_agent_session import start_agent
from tests.test_auth import new_key
from tests.test_library import model_tree  # noqa: F401  (a fixture)

SPEC = {"params": {"prompt": "a lighthouse", "steps": 3, "width": 64, "height": 64}}


class Api:
    """An httpx client on the console's address that records the routes it called."""

    def __init__(self, base: str, key: str | None = None) -> None:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=base + "/api/v1", headers=headers, timeout=30)
        self.called: set[tuple[str, str]] = set()

    def __call__(self, verb: str, path: str, body: Any = None, params: Any = None,
                 ok: int = 200, **fields: str) -> Any:  # fmt: skip
        self.called.add((verb, path))
        answer = self.http.request(verb, path.format(**fields), json=body, params=params)
        assert answer.status_code == ok, answer.text
        ctype = answer.headers["content-type"]
        return answer.json() if ctype.startswith("application/json") else answer

    def events(self, path: str, until: Any, params: Any = None, **fields: str) -> list[Any]:
        """Reads a route's server-sent events until `until(event)` is true."""
        self.called.add(("GET" if "scan" not in path else "POST", path))
        seen: list[Any] = []
        verb = "POST" if "scan" in path else "GET"
        with self.http.stream(verb, path.format(**fields), params=params) as answer:
            assert answer.status_code == 200, answer.read()
            assert answer.headers["content-type"].startswith("text/event-stream")
            for line in answer.iter_lines():
                if line.startswith("event: error"):
                    raise AssertionError(f"error event on {path}")
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))
                    if until(seen[-1]):
                        return seen
        return seen

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def forge() -> Iterator[FakeForge]:
    server = FakeForge(step_seconds=0.01)
    yield server
    server.close()


@pytest.fixture
def files() -> Iterator[FileHost]:
    server = FileHost()
    yield server
    server.close()


@pytest.fixture
def coordinator(tmp_path: Path, model_tree: Path) -> Iterator[CoordinatorThread]:  # noqa: F811
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'sq.db'}", model_roots=[model_tree], hash_workers=2
    )
    running = CoordinatorThread(settings)
    yield running
    running.close()


def test_every_route_answers_over_http(
    coordinator: CoordinatorThread, forge: FakeForge, files: FileHost, tmp_path: Path
) -> None:
    api = Api(coordinator.coordinator.http_url)
    agent = start_agent(tmp_path / "node", coordinator.address)
    try:
        _servers(api, forge)
        _jobs_and_results(api, coordinator.coordinator.results.root)
        _keys(api)
        _models(api)
        _downloads(api, files)
        _nodes(api)
        assert api("DELETE", "/servers/{alias}", alias="forge") == {}
    finally:
        api.close()
        kill_all(agent)
    assert api.called == {(r.verb, r.path) for r in ROUTES}


def _servers(api: Api, forge: FakeForge) -> None:
    body = {"alias": "forge", "kind": "APP_KIND_FORGE", "base_url": forge.url,
            "username": "sd", "password": "pw"}  # fmt: skip
    added = api("POST", "/servers", body)["server"]
    assert added["alias"] == "forge" and added["has_credentials"] is True
    assert "password" not in json.dumps(api("GET", "/servers"))
    assert api("GET", "/servers/{alias}", alias="forge")["server"]["kind"] == "APP_KIND_FORGE"
    changed = api("PATCH", "/servers/{alias}", {"max_concurrency": 2}, alias="forge")
    assert changed["server"]["max_concurrency"] == 2
    checked = api("POST", "/servers/{alias}/check", alias="forge")["server"]
    assert checked["health"] == "SERVER_HEALTH_UP", checked
    off = api("POST", "/servers/{alias}/enabled", {"enabled": False}, alias="forge")
    assert off["server"]["enabled"] is False
    api("POST", "/servers/{alias}/enabled", {"enabled": True}, alias="forge")


def _jobs_and_results(api: Api, outputs: Path) -> None:
    assert api("POST", "/queue/pause")["stats"]["paused"] is True
    first = api("POST", "/jobs", {"spec": SPEC, "idempotency_key": "one"})["job"]
    assert first["status"] == "JOB_STATUS_PENDING"
    again = api("POST", "/jobs", {"spec": SPEC, "idempotency_key": "one"})
    assert again["job"]["id"] == first["id"] and again["created"] is False
    batch = api("POST", "/jobs/bulk", {"spec": SPEC, "count": 2})["jobs"]
    assert len(batch) == 2
    pending = api("GET", "/jobs", params={"statuses": "JOB_STATUS_PENDING"})["jobs"]
    assert [j["id"] for j in pending] == [first["id"], *(j["id"] for j in batch)]
    api("POST", "/jobs/{id}/move", {"placement": "MOVE_PLACEMENT_FRONT"}, id=batch[1]["id"])
    page = api("GET", "/jobs", params={"statuses": "JOB_STATUS_PENDING", "page.page_size": 1})
    assert [j["id"] for j in page["jobs"]] == [batch[1]["id"]] and page["next_page_token"]
    raised = api("POST", "/jobs/{id}/priority", {"priority": 5}, id=first["id"])["job"]
    assert raised["spec"]["priority"] == 5
    assert api("POST", "/jobs/{id}/cancel", id=batch[0]["id"])["job"]["status"] == (
        "JOB_STATUS_CANCELLED"
    )
    retried = api("POST", "/jobs/{id}/retry", id=batch[0]["id"])["job"]
    assert retried["status"] == "JOB_STATUS_PENDING"
    api("POST", "/jobs/{id}/cancel", id=batch[0]["id"])
    assert api("DELETE", "/jobs/{id}", id=batch[0]["id"]) == {}
    api("GET", "/jobs/{id}", ok=404, id=batch[0]["id"])
    assert api("GET", "/queue/stats")["stats"]["pending"] == "2"

    snapshot = api.events(
        "/queue/events", lambda e: True, params={"snapshot": "true", "omit_previews": "true"}
    )
    assert snapshot[0]["job_event"]["type"] == "JOB_EVENT_TYPE_SNAPSHOT"
    assert api("POST", "/queue/resume")["stats"]["paused"] is False
    events = api.events(
        "/jobs/{id}/events", lambda e: e["job"]["status"] == "JOB_STATUS_COMPLETED",
        id=first["id"],
    )  # fmt: skip
    assert events[-1]["job"]["status"] == "JOB_STATUS_COMPLETED"
    done = api("GET", "/jobs/{id}", id=first["id"])["job"]
    (result,) = done["results"]
    assert "a lighthouse" in result["infotext"]

    listed = api("GET", "/results", params={"job_id": first["id"]})["results"]
    assert [r["id"] for r in listed] == [result["id"]]
    image = api("GET", "/results/{id}/image", id=result["id"])
    assert image.headers["content-type"] == result["mime"] == "image/png"
    assert image.content.startswith(b"\x89PNG") and len(image.content) == int(result["size_bytes"])
    # A gallery thumbnail: a WebP scaled to fit, made once and kept, gone with the image.
    small = api("GET", "/results/{id}/image", params={"max_edge": 32}, id=result["id"])
    assert small.headers["content-type"] == "image/webp"
    with PIL.Image.open(io.BytesIO(small.content)) as thumbnail:
        assert thumbnail.format == "WEBP" and max(thumbnail.size) == 32
    (kept,) = (outputs / ".thumbnails").glob(f"{result['id']}-32.webp")
    again = api("GET", "/results/{id}/image", params={"max_edge": 32}, id=result["id"])
    assert again.content == small.content == kept.read_bytes()
    error = api("GET", "/results/{id}/image", params={"max_edge": 5}, ok=400, id=result["id"])
    assert error["error"]["field"] == "max_edge"
    assert api("DELETE", "/results/{id}", id=result["id"]) == {}
    assert not kept.exists()
    api("GET", "/results/{id}/image", ok=404, id=result["id"])


def _keys(api: Api) -> None:
    created = api("POST", "/keys", {"name": "script", "scope": "KEY_SCOPE_SUBMIT"})
    assert created["secret"].startswith("sq_") and created["key"]["name"] == "script"
    listed = api("GET", "/keys")
    assert created["secret"] not in json.dumps(listed)
    assert [k["id"] for k in listed["keys"]] == [created["key"]["id"]]
    revoked = api("DELETE", "/keys/{id}", id=created["key"]["id"])["key"]
    assert revoked["revoked_at"]
    assert api("GET", "/keys")["keys"] == []
    with_revoked = api("GET", "/keys", params={"include_revoked": "true"})["keys"]
    assert len(with_revoked) == 1


def _models(api: Api) -> None:
    progress = api.events("/models/scan", lambda e: False)
    assert progress and progress[-1]["done"] is True, progress[-1:]
    loras = api("GET", "/models", params={"type": "MODEL_TYPE_LORA"})["models"]
    lora = next(m for m in loras if m["name"] == "Detail Tweaker")
    assert lora["has_preview"] is True
    found = api("GET", "/models/search", params={"query": "tweaker"})["models"]
    assert [m["id"] for m in found] == [lora["id"]]
    assert api("GET", "/models/{id}", id=lora["id"])["model"]["hashes"] == lora["hashes"]
    where = api("GET", "/models/locate", params={"reference": lora["hashes"]["sha256"]})
    assert where["locations"][0]["path"].endswith("detail_tweaker.safetensors")
    preview = api("GET", "/models/{id}/preview", id=lora["id"])
    assert preview.headers["content-type"] == "image/png"
    assert preview.content.startswith(b"\x89PNG")
    assert api("POST", "/models/{id}/refresh", {}, id=lora["id"])["model"]["id"] == lora["id"]
    host = where["locations"][0]["host"]
    resolved = api(
        "GET", "/models/resolve", params={"reference": lora["hashes"]["sha256"], "host": host}
    )
    assert resolved["model"]["id"] == lora["id"]
    base = api("GET", "/models/search", params={"query": "SDXL Base"})["models"][0]
    copies = api("GET", "/models/locate", params={"reference": base["hashes"]["sha256"]})[
        "locations"
    ]
    copy = next(c for c in copies if "copy_of_base" in c["path"])
    api("DELETE", "/models/{id}", params={"path": copy["path"]}, id=base["id"])
    assert not Path(copy["path"]).exists()


def _downloads(api: Api, files: FileHost) -> None:
    sha = files.add("tiny.safetensors", random_bytes(300_000, seed=3))
    body = {"url": {"url": f"{files.url}/files/tiny.safetensors"}, "dest": "Lora", "sha256": sha}
    begun = api("POST", "/downloads", body)["download"]
    progress = api.events(
        "/downloads/{id}/events", lambda e: e["state"] == "DOWNLOAD_STATE_COMPLETED",
        id=begun["id"],
    )  # fmt: skip
    assert progress[-1]["state"] == "DOWNLOAD_STATE_COMPLETED"
    got = api("GET", "/downloads/{id}", id=begun["id"])["download"]
    assert got["model_id"] and got["dest_path"].endswith("tiny.safetensors")
    files.delay = 0.05  # slow enough to cancel mid-way
    slow_sha = files.add("slow.safetensors", random_bytes(3_000_000, seed=4))
    slow = api("POST", "/downloads", {**body, "url": {"url": f"{files.url}/files/slow.safetensors"},
                                      "sha256": slow_sha})["download"]  # fmt: skip
    cancelled = api("POST", "/downloads/{id}/cancel", id=slow["id"])["download"]
    assert cancelled["state"] == "DOWNLOAD_STATE_CANCELLED"
    states = {d["id"]: d["state"] for d in api("GET", "/downloads")["downloads"]}
    assert states == {
        begun["id"]: "DOWNLOAD_STATE_COMPLETED",
        slow["id"]: "DOWNLOAD_STATE_CANCELLED",
    }


def _nodes(api: Api) -> None:
    wait_until(lambda: any(n["connected"] for n in api("GET", "/nodes")["nodes"]), timeout=30)
    drained = api("POST", "/nodes/{node}/drain", {"drain": True}, node="gpu-a")["node"]
    assert drained["draining"] is True
    api("POST", "/nodes/{node}/drain", {"drain": False}, node="gpu-a")
    started = api("POST", "/processes/start", {"node": "gpu-a", "model": "sd"})["process"]
    assert started["state"] == "PROCESS_STATE_READY"
    listed = api("GET", "/processes", params={"node": "gpu-a"})["processes"]
    assert [p["model"] for p in listed] == ["sd"]
    logs = api("GET", "/processes/logs", params={"node": "gpu-a", "model": "sd", "lines": 50})
    assert any("loading model" in line for line in logs["lines"])
    stopped = api("POST", "/processes/stop", {"node": "gpu-a", "model": "sd"})["process"]
    assert stopped["state"] == "PROCESS_STATE_STOPPED"


def test_every_rpc_is_a_route_or_kept_for_our_own_programs() -> None:
    rpcs = {f"{name}/{m.name}" for name, s in SERVICES.items() for m in s.methods}
    routed = {r.rpc for r in ROUTES}
    assert routed | NOT_ON_HTTP == rpcs and not routed & NOT_ON_HTTP


def test_the_openapi_document_is_valid_and_covers_every_route(
    sqlite_server: CoordinatorThread,
) -> None:
    document = httpx.get(sqlite_server.coordinator.http_url + "/api/v1/openapi.json").json()
    validate(document)
    operations = {(verb.upper(), path) for path, item in document["paths"].items() for verb in item}
    assert operations == {(r.verb, r.full_path) for r in ROUTES}
    submit = document["paths"]["/api/v1/jobs"]["post"]
    body = submit["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body.endswith("/SubmitJobRequest")
    params = document["components"]["schemas"]["GenerationParams"]["properties"]
    assert params["steps"] == {"type": "integer", "format": "int32"}
    assert params["seed"]["format"] == "int64"  # a string in JSON, as protobuf maps it
    listing = {p["name"] for p in document["paths"]["/api/v1/jobs"]["get"]["parameters"]}
    assert {"statuses", "page.page_size", "page.page_token", "server"} <= listing


def test_errors_name_the_field(sqlite_server: CoordinatorThread) -> None:
    base = sqlite_server.coordinator.http_url + "/api/v1"
    cases = [
        ({"spec": {"params": {"prompt": "x", "steps": "many"}}}, "spec.params.steps",
         "must be an integer"),
        ({"spec": {"params": {"prompt": "x", "stepz": 3}}}, "spec.params.stepz",
         "is not a field of GenerationParams"),
        ({"spec": {"app": "APP_KIND_PAINT"}}, "spec.app", "one of APP_KIND_FORGE"),
        ({"spec": {"params": {"loras": [{"name": "a"}, {"weight": "heavy"}]}}},
         "spec.params.loras[1].weight", "must be a number"),
        ({"spec": {"params": {"prompt": "x", "steps": -3}}}, "spec.params.steps", ""),
        ({"spec": {"params": {"prompt": "x", "width": 70}}}, "spec.params.width", ""),
    ]  # fmt: skip
    for body, field, words in cases:
        answer = httpx.post(base + "/jobs", json=body)
        assert answer.status_code == 400, (body, answer.text)
        error = answer.json()["error"]
        assert (error["code"], error["field"]) == ("INVALID_ARGUMENT", field), error
        assert words in error["message"]
    not_json = httpx.post(base + "/jobs", content=b"{nope")
    assert not_json.status_code == 400 and not_json.json()["error"]["field"] == "body"
    not_object = httpx.post(base + "/jobs", json=[1, 2])
    assert not_object.json()["error"]["message"] == "body: must be a JSON object"
    query = httpx.get(base + "/jobs", params={"page.page_size": "ten"})
    assert query.status_code == 400 and query.json()["error"]["field"] == "page.page_size"
    unknown = httpx.get(base + "/jobs", params={"colour": "red"})
    assert unknown.json()["error"]["field"] == "colour"
    flag = httpx.get(base + "/keys", params={"include_revoked": "maybe"})
    assert flag.json()["error"] == {
        "code": "INVALID_ARGUMENT", "status": 400, "field": "include_revoked",
        "message": "include_revoked: must be true or false",
    }  # fmt: skip
    missing = httpx.get(base + "/jobs/0123456789abcdef")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
    nowhere = httpx.get(base + "/nothing/here")
    assert nowhere.status_code == 404 and "openapi.json" in nowhere.json()["error"]["message"]
    wrong_verb = httpx.put(base + "/jobs")
    assert wrong_verb.status_code == 405


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[CoordinatorThread]:
    running = CoordinatorThread(
        make_settings(tmp_path, f"sqlite:///{tmp_path / 'sq.db'}", require_auth=True)
    )
    yield running
    running.close()


def test_keys_and_scopes_over_http(locked: CoordinatorThread) -> None:
    base = locked.coordinator.http_url + "/api/v1"
    anonymous = httpx.get(base + "/jobs")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    assert "API key is required" in anonymous.json()["error"]["message"]
    forged = httpx.get(base + "/jobs", headers={"authorization": "Bearer sq_forged"})
    assert forged.status_code == 401
    basic = httpx.get(base + "/jobs", headers={"authorization": "Basic abc"})
    assert basic.status_code == 400 and basic.json()["error"]["field"] == "authorization"
    streamed = httpx.get(base + "/queue/events")  # refused before any event stream opens
    assert streamed.status_code == 401

    alice_id, alice = new_key(locked, Scope.SUBMIT, "alice")
    _, bob = new_key(locked, Scope.SUBMIT, "bob")
    _, admin = new_key(locked, Scope.ADMIN, "root")
    as_alice = Api(locked.coordinator.http_url, alice)
    as_bob = Api(locked.coordinator.http_url, bob)
    as_admin = Api(locked.coordinator.http_url, admin)
    try:
        job = as_alice("POST", "/jobs", {"spec": SPEC})["job"]
        assert job["submitted_by"] == alice_id
        # Bob's key does not see or touch alice's job; an admin does.
        as_bob("GET", "/jobs/{id}", ok=404, id=job["id"])
        as_bob("POST", "/jobs/{id}/cancel", ok=404, id=job["id"])
        assert as_bob("GET", "/jobs")["jobs"] == []
        error = as_bob("GET", "/jobs", params={"submitted_by": alice_id}, ok=403)["error"]
        assert error["code"] == "PERMISSION_DENIED"
        # A submit key may not manage keys, servers or the queue.
        for verb, path in [("POST", "/keys"), ("GET", "/servers"), ("POST", "/queue/pause"),
                           ("POST", "/models/scan")]:  # fmt: skip
            refused = as_alice.http.request(verb, path, json={})
            assert refused.status_code == 403, (path, refused.text)
            assert "needs admin" in refused.json()["error"]["message"]
        assert as_admin("POST", "/jobs/{id}/cancel", id=job["id"])["job"]["status"] == (
            "JOB_STATUS_CANCELLED"
        )
        # A revoked key stops working at once.
        keys = as_admin("GET", "/keys")["keys"]
        bob_id = next(k["id"] for k in keys if k["name"] == "bob")
        as_admin("DELETE", "/keys/{id}", id=bob_id)
        assert as_bob.http.get("/jobs").status_code == 401
    finally:
        for client in (as_alice, as_bob, as_admin):
            client.close()


def _outside_address() -> str | None:
    """This machine's address on a network interface (not loopback), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: it only picks a route
        except OSError:
            return None
        address = str(s.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_a_caller_from_another_machine_needs_a_key(tmp_path: Path) -> None:
    outside = _outside_address()
    if outside is None:
        pytest.skip("this machine has no network address other than loopback")
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'sq.db'}").model_copy(
        update={"http_listen": "0.0.0.0:0"}
    )
    running = CoordinatorThread(settings)
    try:
        port = running.coordinator.gateway.port  # type: ignore[union-attr]
        far = httpx.get(f"http://{outside}:{port}/api/v1/queue/stats")
        assert far.status_code == 401, far.text
        near = httpx.get(f"http://127.0.0.1:{port}/api/v1/queue/stats")
        assert near.status_code == 200
        _, key = new_key(running, Scope.SUBMIT)
        keyed = httpx.get(
            f"http://{outside}:{port}/api/v1/queue/stats",
            headers={"authorization": f"Bearer {key}"},
        )
        assert keyed.status_code == 200
        console = httpx.get(f"http://{outside}:{port}/")  # the page itself asks for the key
        assert console.status_code == 200 and "text/html" in console.headers["content-type"]
    finally:
        running.close()


def test_cors_is_off_unless_origins_are_configured(tmp_path: Path) -> None:
    preflight = {
        "origin": "https://studio.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
    }
    closed = CoordinatorThread(make_settings(tmp_path / "a", f"sqlite:///{tmp_path / 'a.db'}"))
    try:
        url = closed.coordinator.http_url + "/api/v1/jobs"
        answer = httpx.options(url, headers=preflight)
        assert "access-control-allow-origin" not in answer.headers
        plain = httpx.get(url, headers={"origin": "https://studio.example"})
        assert "access-control-allow-origin" not in plain.headers
    finally:
        closed.close()
    opened = CoordinatorThread(
        make_settings(
            tmp_path / "b", f"sqlite:///{tmp_path / 'b.db'}",
            http_cors_origins=["https://studio.example"],
        )
    )  # fmt: skip
    try:
        url = opened.coordinator.http_url + "/api/v1/jobs"
        answer = httpx.options(url, headers=preflight)
        assert answer.headers["access-control-allow-origin"] == "https://studio.example"
        other = httpx.options(url, headers={**preflight, "origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
    finally:
        opened.close()


def test_the_http_address_in_use_stops_the_start_with_a_clear_error(
    sqlite_server: CoordinatorThread, tmp_path: Path
) -> None:
    taken = sqlite_server.coordinator.http_url.rpartition(":")[2]
    settings = make_settings(tmp_path / "b", f"sqlite:///{tmp_path / 'b.db'}").model_copy(
        update={"http_listen": f"127.0.0.1:{taken}"}
    )
    with pytest.raises(RuntimeError, match=f"could not listen on 127.0.0.1:{taken} for HTTP"):
        CoordinatorThread(settings)
    # The data folder and database were let go: the same settings work on a free port.
    CoordinatorThread(settings.model_copy(update={"http_listen": "127.0.0.1:0"})).close()


def test_an_event_stream_the_caller_leaves_ends_its_watch(sqlite_server: CoordinatorThread) -> None:
    """A browser tab closed on the queue page must not leave a watcher behind."""
    bus = sqlite_server.coordinator.bus
    url = sqlite_server.coordinator.http_url + "/api/v1/queue/events"
    with httpx.Client(timeout=30) as http:
        for _ in range(3):
            with http.stream("GET", url) as answer:
                assert answer.status_code == 200
                wait_until(lambda: len(sqlite_server.run(subscriptions(bus))) == 1)
            wait_until(lambda: not sqlite_server.run(subscriptions(bus)))
