"""Webhook subscription routes: CRUD, the write-only secret, validation, the SSRF
guard, admin scope, and each subscription's deliveries."""

from __future__ import annotations

from datetime import timedelta

from detectflow.core.models import utcnow
from detectflow.store import Database
from detectflow.store.webhooks import Delivery
from tests.server.support import TestClient, assert_error

HOOKS = "/api/v1/webhooks"


def add(client: TestClient, **fields: object) -> dict[str, object]:
    response = client.post(HOOKS, json={"url": "http://127.0.0.1:9/hook", **fields})
    assert response.status_code == 201, response.text
    assert response.headers["location"].endswith(response.json()["data"]["id"])
    data: dict[str, object] = response.json()["data"]
    return data


def test_create_get_list_update_delete(client: TestClient) -> None:
    created = add(client, cameras=["cam-1"])
    hook_id = created["id"]
    assert created["event_types"] == ["object_started", "object_updated", "object_ended"]
    assert created["cameras"] == ["cam-1"] and created["enabled"] is True
    assert created["has_secret"] is True and len(str(created["secret"])) >= 32

    shown = client.get(f"{HOOKS}/{hook_id}").json()["data"]
    assert "secret" not in shown  # shown once, at creation
    assert shown == {k: v for k, v in created.items() if k != "secret"}
    assert [h["id"] for h in client.get(HOOKS).json()["data"]] == [hook_id]

    changed = client.put(
        f"{HOOKS}/{hook_id}", json={"enabled": False, "event_types": ["detection_failed"]}
    )
    assert changed.status_code == 200
    data = changed.json()["data"]
    assert data["enabled"] is False and data["event_types"] == ["detection_failed"]
    assert "secret" not in data

    assert client.delete(f"{HOOKS}/{hook_id}").status_code == 204
    assert_error(client.get(f"{HOOKS}/{hook_id}"), 404, "not_found")
    assert_error(client.delete(f"{HOOKS}/{hook_id}"), 404, "not_found")
    assert_error(client.put(f"{HOOKS}/{hook_id}", json={"enabled": True}), 404, "not_found")


def test_a_given_secret_is_kept_encrypted_and_signs(client: TestClient, database: Database) -> None:
    created = add(client, secret="my-own-secret-of-some-length")
    assert created["secret"] == "my-own-secret-of-some-length"
    stored = database.get_webhook(str(created["id"]))
    assert stored is not None and stored.secret == "my-own-secret-of-some-length"
    from sqlalchemy import text

    with database.engine.connect() as conn:
        raw = conn.execute(text("SELECT secret_encrypted FROM webhooks")).scalar_one()
    assert "my-own-secret" not in raw


def test_bad_bodies_are_422_naming_the_field(client: TestClient) -> None:
    cases = [
        ({}, "body.url"),
        ({"url": "ftp://example.com/x"}, "body.url"),
        ({"url": "http://127.0.0.1/x", "event_types": ["nope"]}, "body.event_types"),
        ({"url": "http://127.0.0.1/x", "event_types": []}, "body.event_types"),
        ({"url": "http://127.0.0.1/x", "event_types": "object_ended"}, "body.event_types"),
        ({"url": "http://127.0.0.1/x", "cameras": ["bad camera"]}, "body.cameras"),
        ({"url": "http://127.0.0.1/x", "secret": "short"}, "body.secret"),
        ({"url": "http://127.0.0.1/x", "enabled": "yes"}, "body.enabled"),
        ({"url": "http://127.0.0.1/x", "surprise": 1}, "body.surprise"),
    ]
    for body, field in cases:
        error = assert_error(client.post(HOOKS, json=body), 422, "validation_error")
        assert field in [d["field"] for d in error["details"]], (body, error)
    assert_error(client.put(f"{HOOKS}/x", json={}), 422, "validation_error")


def test_link_local_and_metadata_urls_are_refused(client: TestClient) -> None:
    for url in ("http://169.254.169.254/latest", "http://[fe80::1]/hook"):
        error = assert_error(client.post(HOOKS, json={"url": url}), 422, "unsafe_provider_url")
        assert error["details"] == {"field": "body.url"}
    hook_id = add(client)["id"]
    assert_error(
        client.put(f"{HOOKS}/{hook_id}", json={"url": "http://169.254.169.254/"}),
        422,
        "unsafe_provider_url",
    )


def test_webhooks_need_the_admin_scope(client: TestClient, database: Database) -> None:
    _, write_key = database.create_api_key("write", "writer")
    assert_error(client.get(HOOKS, headers={"Authorization": ""}), 401)
    assert_error(client.get(HOOKS, headers={"Authorization": f"Bearer {write_key}"}), 403)


def test_deliveries_are_listed_newest_first_and_filtered_by_status(
    client: TestClient, database: Database
) -> None:
    hook_id = str(add(client)["id"])
    now = utcnow()
    records = [
        Delivery(
            f"d-{i}",
            hook_id,
            f"ev-{i}",
            "object_started",
            status,
            i,
            error,
            code,
            None,
            now if status == "delivered" else None,
            now + timedelta(seconds=i),
            now + timedelta(seconds=i),
        )
        for i, (status, error, code) in enumerate(
            [("delivered", None, 200), ("failed", "HTTP 500 Internal Server Error", 500)]
        )
    ]
    assert database.save_webhook_deliveries(records) == 2
    page = client.get(f"{HOOKS}/{hook_id}/deliveries").json()
    assert [d["id"] for d in page["data"]] == ["d-1", "d-0"]
    assert page["meta"] == {"page": 1, "pageSize": 100, "total": 2, "totalPages": 1}
    failed = client.get(f"{HOOKS}/{hook_id}/deliveries", params={"status": "failed"}).json()
    assert [(d["status"], d["last_error"], d["response_code"]) for d in failed["data"]] == [
        ("failed", "HTTP 500 Internal Server Error", 500)
    ]
    assert_error(client.get(f"{HOOKS}/{hook_id}/deliveries?status=lost"), 422)
    assert_error(client.get(f"{HOOKS}/nope/deliveries"), 404, "not_found")
    assert client.delete(f"{HOOKS}/{hook_id}").status_code == 204
    assert database.list_webhook_deliveries(hook_id)[1] == 0
