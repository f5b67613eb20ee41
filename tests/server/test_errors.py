"""Every failure is the error envelope with the right status, never a traceback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from detectflow.core.settings import Settings
from detectflow.server import create_app
from detectflow.store import Database
from tests.server.support import API, TestClient, assert_error, sqlite_only


@pytest.mark.parametrize(
    "path", ["/nope/deeper", "/nope", "/api/v1/nope", f"{API}/a/b/c", f"{API}/ws/a/b"]
)
@sqlite_only
def test_unknown_routes_are_404_envelopes(client: TestClient, path: str) -> None:
    error = assert_error(client.get(path), 404, "not_found")
    assert error["message"] == f"no route for GET {path}"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", f"{API}/live", "GET"),
        ("POST", f"{API}/events", "GET"),
        ("GET", f"{API}/send-frame", "POST"),
        ("PATCH", f"{API}/providers", "POST"),
        ("POST", f"{API}/provider/config", "PUT"),
        ("POST", "/api/v1/health", "GET"),
    ],
)
@sqlite_only
def test_wrong_methods_are_405_envelopes_naming_the_allowed_ones(
    client: TestClient, method: str, path: str, allowed: str
) -> None:
    response = client.request(method, path)
    error = assert_error(response, 405, "method_not_allowed")
    assert allowed in response.headers["allow"]
    assert allowed in error["message"]


def test_an_internal_error_is_a_logged_500_envelope_without_a_traceback(
    tmp_path: Path, secret_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A real fault: a database whose tables were never created.
    database = Database(f"sqlite:///{tmp_path / 'empty.db'}", secret_key=secret_key)
    app = create_app(Settings(data_dir=tmp_path), database=database)
    try:
        with TestClient(app) as client, caplog.at_level(logging.ERROR):
            response = client.get(f"{API}/events")
            ws_ok = client.get("/api/v1/health")
    finally:
        database.dispose()
    error = assert_error(response, 500, "internal_error")
    assert error["message"] == "internal server error"
    assert "sqlite" not in response.text.lower() and "table" not in response.text.lower()
    assert any("unhandled error in GET" in r.getMessage() for r in caplog.records)
    assert ws_ok.status_code in (200, 503)  # the app keeps serving after a 500
