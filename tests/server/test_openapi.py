"""/openapi.json: complete (every route, nothing else), valid, and true to the server."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from typing import Any

import jsonschema_rs
import pytest
from starlette.responses import PlainTextResponse

from detectflow.core.settings import Settings
from detectflow.server import create_app
from detectflow.server.app import ENDPOINTS, openapi_document
from detectflow.server.app import routes as app_routes
from detectflow.server.endpoints import Operation, PathParam, http
from detectflow.store import Database
from detectflow.store.keys import Scope
from detectflow.store.memory import MemoryBus
from tests.server.support import API, TestClient, add_provider, frame_body, sqlite_only

SPEC = openapi_document()


def test_every_served_route_is_described_and_nothing_else() -> None:
    described = {path for path, ops in SPEC["paths"].items() for _ in ops}
    assert described == {endpoint.path for endpoint in ENDPOINTS}
    assert [endpoint.route for endpoint in ENDPOINTS] == app_routes


def test_an_endpoint_cannot_name_a_path_parameter_it_does_not_declare() -> None:
    async def extra(request: Any) -> PlainTextResponse:
        return PlainTextResponse("")

    op = Operation("GET", "extra", "Extra.", Scope.READ, {200: None}, extra)
    with pytest.raises(ValueError, match="path parameters"):
        http("/api/v1/extra/{n}", op)
    assert http("/api/v1/extra/{n}", op, params=[PathParam("n")]).path == "/api/v1/extra/{n}"


def test_the_document_is_valid_openapi_3_1_and_every_ref_resolves() -> None:
    from schemathesis.specs.openapi.definitions import OPENAPI_31  # the official meta-schema

    jsonschema_rs.validator_for(OPENAPI_31).validate(json.loads(json.dumps(SPEC)))
    refs = {m for m in _walk(SPEC) if isinstance(m, str) and m.startswith("#/components/")}
    for ref in refs:
        node: Any = SPEC
        for part in ref[2:].split("/"):
            node = node[part]
    ids = [op.operation_id for endpoint in ENDPOINTS for op in endpoint.operations]
    assert len(ids) == len(set(ids))


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _schema(name_or_schema: Any) -> Any:
    """A validator for a component (or any schema) with the spec's refs resolvable."""
    schema = {"$ref": f"#/components/schemas/{name_or_schema}"}
    if not isinstance(name_or_schema, str):
        schema = name_or_schema
    return jsonschema_rs.Draft202012Validator({**schema, "components": SPEC["components"]})


def _params(path: str, method: str = "get") -> dict[str, dict[str, Any]]:
    """The query parameters of one operation, by name."""
    parameters = SPEC["paths"][path][method].get("parameters", [])
    return {p["name"]: p["schema"] for p in parameters if p["in"] == "query"}


@sqlite_only
def test_served_document_follows_the_auth_mode(
    client_factory: Callable[..., TestClient], settings: Settings, database: Database
) -> None:
    with client_factory() as client:
        served = client.get("/openapi.json").json()
    assert served == json.loads(json.dumps(openapi_document(reads_open=True)))
    live = served["paths"][f"{API}/live"]["get"]
    assert {} in live["security"] and live["x-required-scope"] == "read"
    create = served["paths"][f"{API}/providers"]["post"]
    assert create["security"] == [{"apiKey": []}]

    strict = dataclasses.replace(settings, auth_mode="required")
    with TestClient(create_app(strict, database=database, bus=MemoryBus())) as client:
        document = client.get("/openapi.json").json()  # open: no key needed
    assert document["paths"][f"{API}/live"]["get"]["security"] == [{"apiKey": []}]


def _bounded_query_params() -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path, ops in SPEC["paths"].items():
        if "get" not in ops:
            continue
        for name, schema in _params(path).items():
            if "maximum" in schema or "minimum" in schema:
                found.append((path, name, schema))
    return found


_EXAMPLE_IDS = {
    "detection_id": "3f2a6a4e-8c1b-4a55-9f0e-1234567890ab",
    "object_id": "3f2a6a4e-8c1b-4a55-9f0e-1234567890ab",
}


def _concrete(path: str) -> str:
    return re.sub(r"{([^}]+)}", lambda m: _EXAMPLE_IDS.get(m[1], "x-1"), path)


@sqlite_only
@pytest.mark.parametrize(
    ("path", "name", "schema"),
    _bounded_query_params(),
    ids=[f"{p}?{n}" for p, n, _ in _bounded_query_params()],
)
def test_query_bounds_in_the_spec_are_the_servers(
    client: TestClient, path: str, name: str, schema: dict[str, Any]
) -> None:
    step = 1 if schema["type"] == "integer" else 0.001
    url = _concrete(path)
    for edge in ("minimum", "maximum"):
        if edge not in schema:
            continue
        inside = schema[edge]
        outside = inside - step if edge == "minimum" else inside + step
        assert client.get(url, params={name: inside}).status_code != 422, (name, inside)
        refused = client.get(url, params={name: outside})
        assert refused.status_code == 422, (name, outside)
        assert refused.json()["error"]["details"][0]["field"] == f"query.{name}"


@sqlite_only
def test_every_declared_query_parameter_is_accepted_and_others_are_not(
    client: TestClient,
) -> None:
    for path, ops in SPEC["paths"].items():
        if "get" not in ops or "/ws/" in path or "/static/" in path or not path.startswith("/api"):
            continue
        params = {n: s.get("default", _example(s)) for n, s in _params(path).items()}
        params = {n: str(v).lower() if isinstance(v, bool) else v for n, v in params.items()}
        url = _concrete(path)
        assert client.get(url, params=params).status_code != 422, path
        assert client.get(url, params={"undeclared": "1"}).status_code == 422, path


def _example(schema: dict[str, Any]) -> Any:
    if "example" in schema:
        return schema["example"]
    if "enum" in schema:
        return schema["enum"][-1]
    formats = [schema.get("format"), *(s.get("format") for s in schema.get("anyOf", []))]
    if "date-time" in formats:
        return "2025-11-05T12:34:56Z"
    return "x"


@sqlite_only
def test_bodies_declared_closed_are_closed_on_the_server(client: TestClient) -> None:
    for path, ops in SPEC["paths"].items():
        for method, op in ops.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body is None:
                continue
            response = client.request(method, _concrete(path), json={"undeclared": 1})
            assert response.status_code in (404, 422), (method, path, response.text)
            if response.status_code == 422:
                fields = [d["field"] for d in response.json()["error"]["details"]]
                assert "body.undeclared" in fields, (method, path, fields)


@sqlite_only
def test_real_answers_match_their_response_schemas(client: TestClient) -> None:
    """The answers schemathesis rarely reaches with random input: real rows, real ids."""
    provider = add_provider(client)
    sent = client.post(f"{API}/send-frame", json=frame_body("cam-1", 1)).json()["data"]
    detection = sent["detections"][0]
    queued = client.post(f"{API}/send-frame?mode=queue", json=frame_body("cam-1", 2))
    answers = {
        ("post", "/send-frame", 202): queued,
        ("get", "/{detection_id}", 200): client.get(f"{API}/{detection['id']}"),
        ("get", "/providers/{provider_id}", 200): client.get(f"{API}/providers/{provider['id']}"),
        ("get", "/provider/config", 200): client.get(f"{API}/provider/config"),
        ("get", "/live", 200): client.get(f"{API}/live"),
        ("get", "/recent", 200): client.get(f"{API}/recent"),
        ("post", "/test-provider", 200): client.post(f"{API}/test-provider", json={}),
        ("get", "/summary", 200): client.get(f"{API}/summary"),
    }
    assert sent["success"] is True and detection["confidence"] > 0
    _schema(_ok_schema("post", "/send-frame", 200)).validate({"data": sent})
    for (method, path, status), response in answers.items():
        assert response.status_code == status, (path, response.text)
        _schema(_ok_schema(method, path, status)).validate(response.json())


def _ok_schema(method: str, path: str, status: int) -> Any:
    op = SPEC["paths"][f"{API}{path}"][method]
    return op["responses"][str(status)]["content"]["application/json"]["schema"]


@sqlite_only
def test_websocket_messages_match_the_documented_messages(
    client: TestClient, bus: MemoryBus
) -> None:
    messages = SPEC["paths"][f"{API}/ws/{{client_id}}"]["get"]["x-websocket-messages"]
    sent_schema, reply_schema = _schema(messages["client"]), _schema(messages["server"])
    requests = [
        {"type": "subscribe", "camera_id": "cam-1", "event_types": ["x"], "min_confidence": 0.1},
        {"type": "ping"},
        {"type": "get_stats"},
        {"type": "unsubscribe", "camera_id": "cam-1"},
        {"type": "subscribe"},
    ]
    with client.websocket_connect(f"{API}/ws/client-1") as ws:
        replies = []
        for request in requests:
            sent_schema.validate(request)
            ws.send_json(request)
            replies.append(ws.receive_json())
        ws.send_json({"type": "nonsense"})
        replies.append(ws.receive_json())
        client.post(f"{API}/send-frame", json=frame_body("cam-1", 3))  # no provider: 409
        add_provider(client)
        client.post(f"{API}/send-frame", json=frame_body("cam-1", 4))
        replies.append(ws.receive_json())
    kinds = [r["type"] for r in replies]
    assert kinds == [
        "subscription",
        "pong",
        "stats",
        "unsubscription",
        "subscription",
        "error",
        "detection",
    ]
    for reply in replies:
        reply_schema.validate(reply)
