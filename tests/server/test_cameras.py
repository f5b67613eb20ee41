"""Camera routes: CRUD, paging, scopes, 409 on a taken id, 422 naming the field, and the
URL's password in no answer."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from detectflow.store import Database
from tests.server.support import TestClient, add_provider, assert_error, sqlite_only

CAMERAS = "/api/v1/cameras"
PASSWORD = "Sup3r-s3cret-pw"
URL = f"rtsp://admin:{PASSWORD}@10.0.0.5:554/stream1"
SHOWN = "rtsp://admin:***@10.0.0.5:554/stream1"
ZONES = {"dock": {"polygon": [[0.6, 0.0], [1.0, 0.0], [1.0, 1.0], [0.6, 1.0]]}}


def add(client: TestClient, camera_id: str = "cam-1", **fields: Any) -> dict[str, Any]:
    response = client.post(CAMERAS, json={"id": camera_id, **fields})
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"{CAMERAS}/{camera_id}"
    data: dict[str, Any] = response.json()["data"]
    return data


def test_create_get_list_update_delete(client: TestClient, database: Database) -> None:
    created = add(client, url=URL, name="Door", fps=2.5, options={"zones": ZONES})
    assert created["display_url"] == SHOWN
    assert (created["name"], created["fps"], created["enabled"]) == ("Door", 2.5, True)
    assert created["provider"] is None and created["last_error"] is None
    assert client.get(f"{CAMERAS}/cam-1").json()["data"] == created
    stored = database.get_camera("cam-1")
    assert stored is not None and stored.url == URL  # the reader gets the real URL

    add(client, "cam-2")
    listed = client.get(CAMERAS, params={"limit": 1, "offset": 1}).json()
    assert [c["id"] for c in listed["data"]] == ["cam-2"]
    assert listed["meta"] == {"page": 2, "pageSize": 1, "total": 2, "totalPages": 2}

    updated = client.put(f"{CAMERAS}/cam-1", json={"fps": 1, "enabled": False, "url": None})
    assert updated.status_code == 200, updated.text
    data = updated.json()["data"]
    assert (data["fps"], data["enabled"], data["display_url"], data["name"]) == (
        1.0,
        False,
        None,
        "Door",
    )
    assert data["options"] == {"zones": ZONES}
    only_enabled = client.get(CAMERAS, params={"enabled": "true"}).json()["data"]
    assert [c["id"] for c in only_enabled] == ["cam-2"]

    deleted = client.delete(f"{CAMERAS}/cam-1")
    assert deleted.status_code == 204 and deleted.content == b""
    assert_error(client.get(f"{CAMERAS}/cam-1"), 404, "not_found")
    assert_error(client.delete(f"{CAMERAS}/cam-1"), 404, "not_found")
    assert_error(client.put(f"{CAMERAS}/cam-1", json={"fps": 2}), 404, "not_found")


def test_a_taken_id_is_409(client: TestClient) -> None:
    add(client)
    error = assert_error(client.post(CAMERAS, json={"id": "cam-1"}), 409, "camera_exists")
    assert error["details"] == {"field": "body.id"}


def test_a_camera_may_name_an_existing_provider_only(client: TestClient) -> None:
    provider = add_provider(client)
    assert add(client, provider=provider["id"])["provider"] == provider["id"]
    error = assert_error(client.post(CAMERAS, json={"id": "c2", "provider": "nope"}), 422)
    assert error["details"][0]["field"] == "body.provider"
    cleared = client.put(f"{CAMERAS}/cam-1", json={"provider": None})
    assert cleared.json()["data"]["provider"] is None


@sqlite_only
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"id": "has space"}, "body.id"),
        ({"id": "x" * 129}, "body.id"),
        ({"id": "status"}, "body.id"),
        ({}, "body.id"),
        ({"id": "c", "url": "ftp://host/x"}, "body.url"),
        ({"id": "c", "url": "rtsp:///nohost"}, "body.url"),
        ({"id": "c", "url": "rtsp://a b"}, "body.url"),
        ({"id": "c", "url": SHOWN}, "body.url"),
        ({"id": "c", "url": "http://cam/v.mjpg?password=***"}, "body.url"),
        ({"id": "c", "fps": 0}, "body.fps"),
        ({"id": "c", "fps": 61}, "body.fps"),
        ({"id": "c", "fps": "5"}, "body.fps"),
        ({"id": "c", "enabled": 1}, "body.enabled"),
        ({"id": "c", "options": []}, "body.options"),
        (
            {"id": "c", "options": {"zones": {"dock": {"polygon": [[0, 0]]}}}},
            "body.options.zones.dock.polygon",
        ),
        ({"id": "c", "options": {"lines": {"gate": {"from": [0, 0]}}}}, "body.options.lines.gate"),
        (
            {"id": "c", "options": {"filters": {"person": {"min_scor": 1}}}},
            "body.options.filters.person",
        ),
        ({"id": "c", "options": {"loop": None}}, "body.options.loop"),
        ({"id": "c", "options": {"password": "x"}}, "body.options.password"),
        ({"id": "c", "created_at": "x"}, "body.created_at"),
    ],
)
def test_bad_input_is_422_naming_the_field(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    error = assert_error(client.post(CAMERAS, json=body), 422, "validation_error")
    fields = [d["field"] for d in error["details"]]
    assert any(f.startswith(field) for f in fields), fields
    assert client.get(CAMERAS).json()["data"] == []


@sqlite_only
def test_an_update_names_a_field_and_never_the_id(client: TestClient) -> None:
    add(client)
    assert_error(client.put(f"{CAMERAS}/cam-1", json={}), 422, "validation_error")
    error = assert_error(client.put(f"{CAMERAS}/cam-1", json={"id": "cam-9"}), 422)
    assert error["details"] == [{"field": "body.id", "message": "unknown field"}]
    assert_error(client.put(f"{CAMERAS}/cam-1", json={"fps": -1}), 422)
    assert_error(client.get(f"{CAMERAS}/{'x' * 129}"), 422)
    assert_error(client.get(CAMERAS, params={"enabled": "maybe"}), 422)
    assert_error(client.get(CAMERAS, params={"limit": 0}), 422)


def test_the_password_is_in_no_answer_and_no_log(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    responses = [
        client.post(CAMERAS, json={"id": "cam-1", "url": URL}),
        client.get(CAMERAS),
        client.get(f"{CAMERAS}/cam-1"),
        client.put(f"{CAMERAS}/cam-1", json={"url": URL + "2"}),
        client.post(CAMERAS, json={"id": "cam-1", "url": URL}),  # 409
        client.post(CAMERAS, json={"id": "cam-2", "url": URL, "fps": 0}),  # 422
        client.get(f"{CAMERAS}/status"),
        client.get(f"{CAMERAS}/cam-1/status"),
        client.get("/metrics"),
        client.get("/openapi.json"),
    ]
    assert [r.status_code for r in responses[:4]] == [201, 200, 200, 200]
    for response in responses:
        assert PASSWORD not in response.text
    assert PASSWORD not in caplog.text


def test_reads_need_read_and_changes_need_admin(client_factory: Any, database: Database) -> None:
    keys = {s: database.create_api_key(s, f"{s} key")[1] for s in ("read", "write", "admin")}
    with client_factory() as admin_client:
        add(admin_client)
    with client_factory() as client:
        for scope, key in keys.items():
            headers = {"Authorization": f"Bearer {key}"}
            assert client.get(CAMERAS, headers=headers).status_code == 200
            assert client.get(f"{CAMERAS}/cam-1", headers=headers).status_code == 200
            changes = [
                client.post(CAMERAS, json={"id": f"n-{scope}"}, headers=headers),
                client.put(f"{CAMERAS}/cam-1", json={"fps": 2}, headers=headers),
            ]
            expected = 403 if scope != "admin" else None
            for response in changes:
                if expected:
                    assert_error(response, expected, "forbidden")
                else:
                    assert response.status_code in (200, 201), response.text
        no_key = client.post(CAMERAS, json={"id": "x"}, headers={"Authorization": ""})
        assert no_key.status_code == 401


def test_the_document_describes_the_camera_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {m: paths[CAMERAS][m]["x-required-scope"] for m in ("get", "post")} == {
        "get": "read",
        "post": "admin",
    }
    item = paths[f"{CAMERAS}/{{camera_id}}"]
    assert {m: item[m]["x-required-scope"] for m in ("get", "put", "delete")} == {
        "get": "read",
        "put": "admin",
        "delete": "admin",
    }
    assert "409" in paths[CAMERAS]["post"]["responses"]
    assert paths[f"{CAMERAS}/status"]["get"]["x-required-scope"] == "read"
