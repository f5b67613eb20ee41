"""schemathesis drives every operation of /openapi.json against the app in-process.

Each operation gets generated valid input (positive) and input that breaks
its schema (negative). Every answer must be no 5xx, a documented status with
the documented content type, and match its response schema; negative input
must be refused with a 4xx, which proves the server is at least as strict as
the spec says. Examples are few and the Hypothesis deadline is off so the
whole file stays well under a minute.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from detectflow.server.app import openapi_document
from tests.server.support import API, TestClient, add_provider, frame_body, sqlite_only

SPEC = openapi_document()
SCHEMA = schemathesis.openapi.from_dict(SPEC)
# The WebSocket upgrade is not an HTTP exchange; test_openapi.py checks its messages.
OPERATIONS = [
    r.ok().label for r in SCHEMA.get_all_operations() if not r.ok().path.endswith("/ws/{client_id}")
]
POSITIVE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
_EXAMPLES_VAR = "DETECTFLOW_SCHEMATHESIS_EXAMPLES"
MAX_EXAMPLES = int(os.environ.get(_EXAMPLES_VAR, "12"))
"""Set the variable (e.g. 200) for a longer, randomized hunt; the default run is derandomized."""


def _operation(label: str) -> Any:
    method, path = label.split(" ", 1)
    return SCHEMA[path][method]


def _seed(client: TestClient) -> None:
    """Some rows, so list and detail answers have items to conform."""
    add_provider(client)
    for number in range(2):
        response = client.post(f"{API}/send-frame", json=frame_body("cam-1", number))
        assert response.status_code == 200, response.text


def _run(client: TestClient, label: str, mode: GenerationMode, checks: list[Any]) -> None:
    operation = _operation(label)
    admin = client.headers["Authorization"]

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=_EXAMPLES_VAR not in os.environ,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        # Mostly as admin, so the operation itself runs; a generated bad key
        # now and then checks the 401 answers too.
        kwargs = case.as_transport_kwargs(base_url="http://testserver")
        headers = dict(kwargs.pop("headers"))
        # In a negative case a missing key may be the only violation: send none then
        # (the client's default one included), and a 401 refuses it.
        keyless = "Authorization" not in headers and mode is GenerationMode.NEGATIVE
        if not headers.get("Authorization", "").endswith("x"):
            headers["Authorization"] = admin
        kwargs.pop("cookies", None)
        if isinstance(kwargs.get("data"), bytes | str):  # httpx calls raw bodies content
            kwargs["content"] = kwargs.pop("data")
        request = client.build_request(headers=headers, **kwargs)
        if keyless:
            del request.headers["Authorization"]
        response = client.send(request)
        case.validate_response(response, checks=checks)

    check()


@sqlite_only
@pytest.mark.parametrize("label", OPERATIONS)
def test_valid_input_gets_documented_answers(
    client_factory: Callable[..., TestClient], label: str
) -> None:
    with client_factory() as client:
        _seed(client)
        _run(client, label, GenerationMode.POSITIVE, POSITIVE_CHECKS)


def _has_input(label: str) -> bool:
    method, path = label.split(" ", 1)
    operation = SPEC["paths"][path][method.lower()]
    return bool(operation.get("parameters") or operation.get("requestBody"))


@sqlite_only
@pytest.mark.parametrize(
    "label",
    [
        label
        for label in OPERATIONS
        # Static file names are free-form; a detection id that breaks its schema (not a
        # UUID) may be the fixed name of another route, answering 200 by design.
        if _has_input(label) and not label.endswith(("/static/{path}", "/{detection_id}"))
    ],
)
def test_input_breaking_the_schema_is_refused_with_a_4xx(
    client_factory: Callable[..., TestClient], label: str
) -> None:
    with client_factory() as client:
        _run(
            client,
            label,
            GenerationMode.NEGATIVE,
            [*POSITIVE_CHECKS, negative_data_rejection],
        )


@sqlite_only
@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        (f"{API}/events?offset={2**70}", None, "query.offset"),
        (f"{API}/send-frame", {"camera_id": "c", "frame_data": None}, "body.frame_data"),
        (
            f"{API}/send-frame",
            {"camera_id": "c", "frame_data": "AA==", "timestamp": "0001-01-01T00:01:00+10:20"},
            "body.timestamp",
        ),
    ],
    ids=["huge-offset", "null-required-field", "timestamp-before-year-1-in-utc"],
)
def test_inputs_schemathesis_found_500s_for_are_422s(
    client: TestClient, url: str, body: Any, field: str
) -> None:
    response = client.request("POST" if body else "GET", url, json=body)
    assert response.status_code == 422, response.text
    assert field in [d["field"] for d in response.json()["error"]["details"]]
