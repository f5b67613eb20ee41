"""Provider config routes: CRUD, active config, test-provider; api_key never leaves."""

from __future__ import annotations

from typing import Any

import pytest

from tests.server.support import (
    API,
    ScriptedAdapter,
    TestClient,
    add_provider,
    assert_error,
    sqlite_only,
)

SECRET = "sk-very-secret-value"


def test_create_get_list_update_delete(client: TestClient) -> None:
    created = add_provider(client, provider_name="first", api_key=SECRET, is_active=False)
    assert created["provider_name"] == "first"
    assert created["has_api_key"] is True
    assert created["is_active"] is False
    assert created["test_status"] == "untested"
    provider_id = created["id"]

    assert client.get(f"{API}/providers/{provider_id}").json()["data"] == created
    listed = client.get(f"{API}/providers").json()["data"]
    assert [p["id"] for p in listed] == [provider_id]

    updated = client.put(
        f"{API}/providers/{provider_id}", json={"timeout_seconds": 45, "confidence_threshold": 0.75}
    )
    assert updated.status_code == 200
    data = updated.json()["data"]
    assert data["timeout_seconds"] == 45 and data["confidence_threshold"] == 0.75
    assert data["provider_name"] == "first" and data["has_api_key"] is True

    cleared = client.put(f"{API}/providers/{provider_id}", json={"api_key": None})
    assert cleared.json()["data"]["has_api_key"] is False

    deleted = client.delete(f"{API}/providers/{provider_id}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert_error(client.get(f"{API}/providers/{provider_id}"), 404, "not_found")
    assert_error(client.delete(f"{API}/providers/{provider_id}"), 404, "not_found")
    assert_error(client.put(f"{API}/providers/{provider_id}", json={"is_active": True}), 404)


def test_api_key_is_never_in_any_response(client: TestClient) -> None:
    created = add_provider(client, api_key=SECRET)
    responses = [
        client.get(f"{API}/providers"),
        client.get(f"{API}/providers/{created['id']}"),
        client.get(f"{API}/provider/config"),
        client.put(f"{API}/provider/config", json={"max_retries": 2}),
        client.put(f"{API}/providers/{created['id']}", json={"api_key": SECRET + "2"}),
        client.post(f"{API}/test-provider", json={}),
    ]
    for response in responses:
        assert response.status_code == 200, response.text
        assert SECRET not in response.text
        assert "api_key" not in response.text.replace("has_api_key", "")


def test_active_provider_config_get_and_put(client: TestClient) -> None:
    assert_error(client.get(f"{API}/provider/config"), 404, "no_active_provider")
    assert_error(client.put(f"{API}/provider/config", json={"timeout_seconds": 5}), 404)

    first = add_provider(client, provider_name="one")
    second = add_provider(client, provider_name="two")
    active = client.get(f"{API}/provider/config").json()["data"]
    assert active["id"] == second["id"]
    assert client.get(f"{API}/providers/{first['id']}").json()["data"]["is_active"] is False

    response = client.put(
        f"{API}/provider/config",
        json={"confidence_threshold": 0.75, "timeout_seconds": 45, "is_active": True},
    )
    assert response.status_code == 200
    assert response.json()["data"]["confidence_threshold"] == 0.75
    assert client.get(f"{API}/provider/config").json()["data"]["timeout_seconds"] == 45


@sqlite_only
def test_unknown_provider_type_is_422_listing_known_types(client: TestClient) -> None:
    response = client.post(
        f"{API}/providers",
        json={"provider_name": "x", "provider_type": "telepathy", "endpoint_url": "x://y"},
    )
    error = assert_error(response, 422, "unknown_provider_type")
    assert {"http_api", "scripted"} <= set(error["details"]["known_types"])
    assert "http_api" in error["message"]


@sqlite_only
def test_adapter_rules_are_checked_at_write_time(client: TestClient) -> None:
    response = client.post(
        f"{API}/providers",
        json={
            "provider_name": "x",
            "provider_type": "http_api",
            "endpoint_url": "http://127.0.0.1:1/detect",
            "options": {"dialect": "klingon"},
        },
    )
    error = assert_error(response, 422, "invalid_provider_config")
    assert "klingon" in error["message"]
    assert client.get(f"{API}/providers").json()["data"] == []


VALID = {"provider_name": "x", "provider_type": "scripted", "endpoint_url": "scripted://x"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"provider_name": None}, "provider_name"),
        ({"provider_name": ""}, "provider_name"),
        ({"provider_name": 5}, "provider_name"),
        ({"endpoint_url": "has space"}, "endpoint_url"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"timeout_seconds": "30"}, "timeout_seconds"),
        ({"timeout_seconds": 601}, "timeout_seconds"),
        ({"confidence_threshold": 1.5}, "confidence_threshold"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 2.5}, "max_retries"),
        ({"is_active": "yes"}, "is_active"),
        ({"is_active": 1}, "is_active"),
        ({"options": []}, "options"),
        ({"options": {"dialect": 3}}, "options"),
        ({"api_key": 123}, "api_key"),
        ({"id": "chosen-by-me"}, "id"),
        ({"test_status": "success"}, "test_status"),
    ],
)
@sqlite_only
def test_create_rejects_bad_fields(client: TestClient, change: dict[str, Any], field: str) -> None:
    error = assert_error(
        client.post(f"{API}/providers", json={**VALID, **change}), 422, "validation_error"
    )
    assert f"body.{field}" in [d["field"] for d in error["details"]]


@pytest.mark.parametrize("missing", ["provider_name", "provider_type", "endpoint_url"])
@sqlite_only
def test_create_requires_fields(client: TestClient, missing: str) -> None:
    body = {k: v for k, v in VALID.items() if k != missing}
    error = assert_error(client.post(f"{API}/providers", json=body), 422, "validation_error")
    assert error["details"] == [{"field": f"body.{missing}", "message": "is required"}]


@sqlite_only
def test_update_rejects_empty_and_bad_bodies(client: TestClient) -> None:
    provider_id = add_provider(client)["id"]
    url = f"{API}/providers/{provider_id}"
    assert_error(client.put(url, json={}), 422, "validation_error")
    assert_error(client.put(url, json={"max_retries": 99}), 422, "validation_error")
    assert_error(client.put(url, json={"provider_type": "telepathy"}), 422, "unknown_provider_type")
    assert_error(
        client.put(url, content=b"{", headers={"content-type": "application/json"}),
        400,
        "invalid_json",
    )
    assert client.get(url).json()["data"]["max_retries"] == 0


def test_updating_a_provider_replaces_its_adapter_and_closes_the_old_one(
    client: TestClient,
) -> None:
    provider_id = add_provider(client, options={"detections": [["person", 0.9, None]]})["id"]
    client.post(f"{API}/send-frame", json={"camera_id": "c", "frame_data": _png()})
    client.post(f"{API}/send-frame", json={"camera_id": "c", "frame_data": _png(1)})
    assert len(ScriptedAdapter.instances) == 2  # one built to validate, one serving both frames
    serving = ScriptedAdapter.instances[1]
    assert serving.calls == 2 and not serving.closed

    client.put(
        f"{API}/providers/{provider_id}", json={"options": {"detections": [["car", 0.9, None]]}}
    )
    data = client.post(f"{API}/send-frame", json={"camera_id": "c", "frame_data": _png(2)}).json()[
        "data"
    ]
    assert data["detections"][0]["detection_type"] == "vehicle"
    assert serving.closed


def _png(number: int = 0) -> str:
    from tests.server.support import frame_b64

    return frame_b64("c", number)


def test_test_provider_with_the_simulator_records_success(
    client: TestClient, simulator: Any
) -> None:
    provider = add_provider(
        client, provider_type="http_api", endpoint_url=simulator.detect_url("detectflow")
    )
    response = client.post(f"{API}/test-provider", json={"provider_config_id": provider["id"]})
    assert response.status_code == 200
    data = response.json()["data"]
    assert set(data) == {"success", "provider_name", "message", "response_time_ms", "error"}
    assert data["success"] is True and data["error"] is None
    assert data["provider_name"] == "test provider"
    stored = client.get(f"{API}/providers/{provider['id']}").json()["data"]
    assert stored["test_status"] == "success" and stored["last_tested"] is not None


def test_test_provider_failure_and_timeout_are_reported(client: TestClient, free_port: int) -> None:
    add_provider(
        client, provider_type="http_api", endpoint_url=f"http://127.0.0.1:{free_port}/detect"
    )
    data = client.post(f"{API}/test-provider").json()["data"]
    assert data["success"] is False and data["error"]
    assert client.get(f"{API}/provider/config").json()["data"]["test_status"] == "failed"

    slow = add_provider(client, options={"delay": 5})
    data = client.post(
        f"{API}/test-provider", json={"provider_config_id": slow["id"], "timeout_seconds": 0.2}
    ).json()["data"]
    assert data["success"] is False
    assert "0.2" in data["error"]


@sqlite_only
def test_test_provider_bad_requests(client: TestClient) -> None:
    assert_error(client.post(f"{API}/test-provider"), 409, "no_active_provider")
    assert_error(
        client.post(f"{API}/test-provider", json={"provider_config_id": "nope"}), 404, "not_found"
    )
    assert_error(
        client.post(f"{API}/test-provider", json={"timeout_seconds": -1}), 422, "validation_error"
    )


@sqlite_only
def test_provider_urls_pointing_at_link_local_or_metadata_addresses_are_refused(
    client: TestClient,
) -> None:
    """An API caller must not make detectflow fetch cloud metadata (SSRF)."""
    body = {
        "provider_name": "metadata",
        "provider_type": "http_api",
        "endpoint_url": "http://169.254.169.254/latest/meta-data",
    }
    assert_error(client.post(f"{API}/providers", json=body), 422, "unsafe_provider_url")
    created = add_provider(client, provider_name="ok", is_active=False)
    refused = client.put(
        f"{API}/providers/{created['id']}", json={"endpoint_url": "http://[fe80::1]/x"}
    )
    assert_error(refused, 422, "unsafe_provider_url")
