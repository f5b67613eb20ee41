"""The /api/v1/detections REST routes against real SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from detectflow.core.images import encode_png
from detectflow.store import Database
from tests.server.support import (
    API,
    TestClient,
    add_provider,
    assert_error,
    frame_body,
    sqlite_only,
)

DETECTION_KEYS = {
    "id",
    "camera_id",
    "frame_id",
    "detection_type",
    "label",
    "confidence",
    "bbox",
    "person_name",
    "person_id",
    "is_processed",
    "processing_status",
    "frame_number",
    "frame_timestamp",
    "createdAt",
    "updatedAt",
}


def send(client: TestClient, body: Any, **kwargs: Any) -> Any:
    return client.post(f"{API}/send-frame", json=body, **kwargs)


# -- send-frame, inline ------------------------------------------------------


def test_send_frame_inline_detects_with_the_simulator_and_stores_the_result(
    client: TestClient, simulator: Any
) -> None:
    add_provider(
        client,
        provider_type="http_api",
        endpoint_url=simulator.detect_url("detectflow"),
        confidence_threshold=0.3,
    )
    response = send(client, frame_body("cam-1", 7, frame_number=7))

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert set(data) == {
        "success",
        "camera_id",
        "detection_count",
        "detections",
        "processing_time_ms",
        "frame_id",
        "error",
    }
    assert data["success"] is True
    assert data["error"] is None
    assert data["camera_id"] == "cam-1"
    assert data["detection_count"] == len(data["detections"]) >= 1
    for detection in data["detections"]:
        assert set(detection) == DETECTION_KEYS
        box = detection["bbox"]
        assert box["x"] >= 0 and box["x"] + box["width"] <= 1 + 1e-9
        assert detection["frame_id"] == data["frame_id"]
        assert detection["frame_number"] == 7
        stored = client.get(f"{API}/{detection['id']}")
        assert stored.status_code == 200
        assert stored.json()["data"]["confidence"] == detection["confidence"]

    events = client.get(f"{API}/events", params={"camera_id": "cam-1"}).json()["data"]
    assert [e["event_type"] for e in events] == ["detection_completed"]


def test_send_frame_same_frame_twice_is_idempotent(client: TestClient, database: Database) -> None:
    # The same frame is the same bytes at the same time: rows are keyed (id, created_at)
    # and created_at is the frame's timestamp (sent without one, it is the arrival time).
    add_provider(client)
    when = "2026-01-02T03:04:05.123456Z"
    first = send(client, frame_body("cam-1", 1, timestamp=when)).json()["data"]
    second = send(client, frame_body("cam-1", 1, timestamp=when)).json()["data"]
    assert first["frame_id"] == second["frame_id"]
    assert [d["id"] for d in first["detections"]] == [d["id"] for d in second["detections"]]
    assert database.list_detections()[1] == len(first["detections"])
    events = client.get(f"{API}/events", params={"camera_id": "cam-1"}).json()
    assert events["meta"]["total"] == 1


def test_send_frame_provider_failure_is_reported_and_kept_as_a_failed_frame(
    client: TestClient, free_port: int
) -> None:
    # Nothing listens on free_port: a real connection refused, retried then failed.
    add_provider(
        client,
        provider_type="http_api",
        endpoint_url=f"http://127.0.0.1:{free_port}/detect",
        max_retries=1,
        timeout_seconds=2,
    )
    response = send(client, frame_body("cam-9", 3))

    assert response.status_code == 200
    data = response.json()["data"]
    assert data["success"] is False
    assert data["detection_count"] == 0 and data["detections"] == []
    assert "2 attempt(s)" in data["error"]
    stats = client.get(f"{API}/queue-stats").json()["data"]
    assert stats["failed"] == 1 and stats["pending"] == 0
    events = client.get(f"{API}/events", params={"camera_id": "cam-9"}).json()["data"]
    assert [e["event_type"] for e in events] == ["detection_failed"]
    assert events[0]["severity"] == "warning"


def test_send_frame_permanent_refusal_is_not_retried(client: TestClient) -> None:
    add_provider(client, options={"fail": "frame refused"}, max_retries=3)
    data = send(client, frame_body()).json()["data"]
    assert data["success"] is False
    assert "permanent" in data["error"] and "frame refused" in data["error"]
    assert "1 attempt(s)" in data["error"]


@sqlite_only
def test_send_frame_without_an_active_provider_is_409(client: TestClient) -> None:
    assert_error(send(client, frame_body()), 409, "no_active_provider")


# -- send-frame, queued --------------------------------------------------------


def test_send_frame_queue_mode_enqueues_a_pending_frame(client: TestClient) -> None:
    response = client.post(
        f"{API}/send-frame", params={"mode": "queue"}, json=frame_body("cam-2", 5, priority=9)
    )
    assert response.status_code == 202
    data = response.json()["data"]
    assert data["queued"] is True
    assert data["status"] == "pending"
    assert data["camera_id"] == "cam-2"
    assert data["priority"] == 9
    assert isinstance(data["id"], str) and data["id"]
    stats = client.get(f"{API}/queue-stats").json()["data"]
    assert {k: stats[k] for k in ("pending", "processing", "completed", "failed", "total")} == {
        "pending": 1,
        "processing": 0,
        "completed": 0,
        "failed": 0,
        "total": 1,
    }


def test_send_frame_queue_mode_needs_no_provider_and_keeps_the_given_frame_id(
    client: TestClient,
) -> None:
    body = frame_body(frame_id="my-frame:42", timestamp="2025-11-05T12:34:56Z")
    data = client.post(f"{API}/send-frame?mode=queue", json=body).json()["data"]
    assert data["id"] == "my-frame:42"


def test_send_frame_queue_mode_refuses_a_frame_id_another_camera_queued(
    client: TestClient,
) -> None:
    first = frame_body("cam-1", frame_id="shared-id")
    assert client.post(f"{API}/send-frame?mode=queue", json=first).status_code == 202
    clash = frame_body("cam-2", 7, frame_id="shared-id")

    error = assert_error(send(client, clash, params={"mode": "queue"}), 409, "frame_id_conflict")

    assert "shared-id" in error["message"]
    assert "another camera" in error["message"]
    stats = client.get(f"{API}/queue-stats").json()["data"]
    assert (stats["pending"], stats["total"]) == (1, 1)
    # The same camera sending the same frame again is a retry, not a clash.
    assert client.post(f"{API}/send-frame?mode=queue", json=first).status_code == 202


# -- send-frame, bad input -------------------------------------------------------

TINY_PNG = base64.b64encode(encode_png(2, 2, bytes(12))).decode()
GIF = base64.b64encode(b"GIF89a...").decode()


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ([1, 2], "validation_error", None),
        ({"frame_data": TINY_PNG}, "validation_error", "body.camera_id"),
        ({"camera_id": "cam-1"}, "validation_error", "body.frame_data"),
        ({"camera_id": "cam 1!", "frame_data": TINY_PNG}, "validation_error", "body.camera_id"),
        ({"camera_id": 12, "frame_data": TINY_PNG}, "validation_error", "body.camera_id"),
        ({"camera_id": "c", "frame_data": TINY_PNG, "frame_number": "7"}, "validation_error", None),
        ({"camera_id": "c", "frame_data": TINY_PNG, "frame_number": -1}, "validation_error", None),
        ({"camera_id": "c", "frame_data": TINY_PNG, "frame_number": 1.5}, "validation_error", None),
        ({"camera_id": "c", "frame_data": TINY_PNG, "priority": 0}, "validation_error", None),
        ({"camera_id": "c", "frame_data": TINY_PNG, "priority": 11}, "validation_error", None),
        ({"camera_id": "c", "frame_data": TINY_PNG, "priority": True}, "validation_error", None),
        ({"camera_id": "c", "frame_data": TINY_PNG, "timestamp": "noon"}, "validation_error", None),
        ({"camera_id": "c", "frame_data": TINY_PNG, "colour": "red"}, "validation_error", None),
        ({"camera_id": "c", "frame_data": "not base64!!"}, "validation_error", "body.frame_data"),
        ({"camera_id": "c", "frame_data": "abc"}, "validation_error", "body.frame_data"),
        (
            {"camera_id": "c", "frame_data": base64.b64encode(b"GIF89a...").decode()},
            "invalid_frame",
            None,
        ),
        ({"camera_id": "c", "frame_data": ""}, "validation_error", "body.frame_data"),
    ],
)
@sqlite_only
def test_send_frame_rejects_bad_bodies_with_422(
    client: TestClient, body: Any, code: str, field: str | None
) -> None:
    error = assert_error(send(client, body, params={"mode": "queue"}), 422, code)
    if field is not None:
        assert field in [d["field"] for d in error["details"]]


@sqlite_only
def test_send_frame_lists_every_bad_field_at_once(client: TestClient) -> None:
    body = {"camera_id": "bad id", "frame_data": "%%%", "priority": 99, "extra": 1}
    error = assert_error(send(client, body), 422, "validation_error")
    fields = {d["field"] for d in error["details"]}
    assert fields == {"body.camera_id", "body.frame_data", "body.priority", "body.extra"}


@pytest.mark.parametrize("raw", [b"{not json", b"", b"   ", b'{"a": NaN}', b"\xff\xfe"])
@sqlite_only
def test_send_frame_malformed_json_is_400(client: TestClient, raw: bytes) -> None:
    response = client.post(
        f"{API}/send-frame", content=raw, headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "invalid_json")


@sqlite_only
def test_send_frame_wrong_content_type_is_415(client: TestClient) -> None:
    response = client.post(
        f"{API}/send-frame", content=b"camera_id=x", headers={"content-type": "text/plain"}
    )
    assert_error(response, 415, "unsupported_media_type")


@sqlite_only
def test_send_frame_unknown_mode_is_422(client: TestClient) -> None:
    response = client.post(f"{API}/send-frame", params={"mode": "later"}, json=frame_body())
    error = assert_error(response, 422, "validation_error")
    assert error["details"][0]["field"] == "query.mode"


@sqlite_only
def test_send_frame_too_large_by_content_length_is_413(client: TestClient) -> None:
    # settings.max_frame_bytes is 64 KiB, so the body limit is about 101 KiB.
    response = client.post(
        f"{API}/send-frame",
        content=b"x" * (200 * 1024),
        headers={"content-type": "application/json"},
    )
    assert_error(response, 413, "payload_too_large")


@sqlite_only
def test_send_frame_too_large_while_streaming_is_413(client: TestClient) -> None:
    """A chunked body declares no length; the limit is enforced while reading."""

    def chunks() -> Any:
        for _ in range(50):
            yield b"x" * 8192

    response = client.post(
        f"{API}/send-frame", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_error(response, 413, "payload_too_large")


@sqlite_only
def test_send_frame_decoded_frame_over_the_limit_is_413(client: TestClient) -> None:
    image = b"\x89PNG\r\n\x1a\n" + bytes(64 * 1024)
    body = {"camera_id": "c", "frame_data": base64.b64encode(image).decode()}
    assert_error(send(client, body), 413, "payload_too_large")


# -- live --------------------------------------------------------------------------


def _scripted_frame(client: TestClient, camera: str, number: int) -> dict[str, Any]:
    response = send(client, frame_body(camera, number))
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def test_live_comes_from_the_cache_right_after_a_frame(client: TestClient) -> None:
    add_provider(
        client,
        options={"detections": [["person", 0.9, None], ["car", 0.6, None], ["face", 0.3, None]]},
        confidence_threshold=0.1,
    )
    _scripted_frame(client, "cam-1", 1)
    _scripted_frame(client, "cam-2", 1)

    data = client.get(f"{API}/live", params={"camera_id": "cam-1"}).json()["data"]
    assert data["cache_hit"] is True
    assert data["camera_id"] == "cam-1"
    # default min_confidence 0.5 keeps person (0.9) and vehicle (0.6), not face (0.3)
    assert sorted(d["detection_type"] for d in data["detections"]) == ["person", "vehicle"]
    assert data["total_detections"] == 2
    assert data["last_updated"].endswith("Z")

    everyone = client.get(f"{API}/live", params={"min_confidence": 0}).json()["data"]
    assert everyone["cache_hit"] is True and everyone["camera_id"] is None
    assert everyone["total_detections"] == 6

    paged = client.get(f"{API}/live", params={"min_confidence": 0, "limit": 4, "offset": 4}).json()[
        "data"
    ]
    assert len(paged["detections"]) == 2 and paged["total_detections"] == 6

    typed = client.get(
        f"{API}/live", params={"detection_type": "vehicle", "min_confidence": 0}
    ).json()["data"]
    assert [d["camera_id"] for d in typed["detections"]] == ["cam-1", "cam-2"]


def test_live_without_cache_reads_the_database(client: TestClient) -> None:
    add_provider(client, options={"detections": [["person", 0.8, None]]})
    frame = _scripted_frame(client, "cam-3", 1)

    data = client.get(f"{API}/live", params={"camera_id": "cam-3", "use_cache": "false"}).json()[
        "data"
    ]
    assert data["cache_hit"] is False
    assert [d["id"] for d in data["detections"]] == [frame["detections"][0]["id"]]
    assert data["total_detections"] == 1
    assert data["last_updated"] is not None


def test_live_cache_miss_falls_back_to_the_database(client: TestClient) -> None:
    data = client.get(f"{API}/live", params={"camera_id": "nobody"}).json()["data"]
    assert data == {
        "camera_id": "nobody",
        "detections": [],
        "total_detections": 0,
        "last_updated": None,
        "cache_hit": False,
    }


@pytest.mark.parametrize(
    "params",
    [
        {"min_confidence": "1.5"},
        {"min_confidence": "-0.1"},
        {"min_confidence": "high"},
        {"min_confidence": "nan"},
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "ten"},
        {"offset": "-1"},
        {"use_cache": "maybe"},
        {"camera_id": "a b"},
        {"colour": "red"},
        {"limit": ["1", "2"]},
    ],
)
def test_live_rejects_bad_query_parameters(client: TestClient, params: dict[str, Any]) -> None:
    error = assert_error(client.get(f"{API}/live", params=params), 422, "validation_error")
    assert error["details"][0]["field"].startswith("query.")


# -- events, queue-stats, recent, by-person, one detection ---------------------------


def test_events_are_paginated_with_meta(client: TestClient) -> None:
    add_provider(client)
    for number in range(3):
        _scripted_frame(client, "cam-1", number)

    first = client.get(f"{API}/events", params={"limit": 2}).json()
    cursor = first["meta"].pop("next_cursor")
    assert first["meta"] == {
        "page": 1,
        "pageSize": 2,
        "total": 3,
        "totalPages": 2,
        "total_is_estimate": False,
    }
    assert isinstance(cursor, str)
    assert len(first["data"]) == 2
    second = client.get(f"{API}/events", params={"limit": 2, "offset": 2}).json()
    assert second["meta"] == {
        "page": 2,
        "pageSize": 2,
        "total": 3,
        "totalPages": 2,
        "next_cursor": None,
        "total_is_estimate": False,
    }
    assert len(second["data"]) == 1
    ids = {e["id"] for e in first["data"]} | {e["id"] for e in second["data"]}
    assert len(ids) == 3
    assert set(first["data"][0]) == {
        "id",
        "detection_id",
        "camera_id",
        "event_type",
        "severity",
        "message",
        "person_id",
        "person_name",
        "confidence_score",
        "action_taken",
        "source_system",
        "createdAt",
        "updatedAt",
    }


def test_events_filter_by_type_and_severity(client: TestClient) -> None:
    add_provider(client)
    _scripted_frame(client, "cam-1", 1)
    info = client.get(f"{API}/events", params={"severity": "info"}).json()
    assert info["meta"]["total"] == 1
    assert client.get(f"{API}/events", params={"severity": "critical"}).json()["meta"]["total"] == 0
    failed = client.get(f"{API}/events", params={"event_type": "detection_failed"}).json()
    assert failed["data"] == [] and failed["meta"]["totalPages"] == 0


@pytest.mark.parametrize(
    "params", [{"severity": "loud"}, {"limit": "0"}, {"offset": "x"}, {"page": "2"}]
)
def test_events_reject_bad_query_parameters(client: TestClient, params: dict[str, str]) -> None:
    assert_error(client.get(f"{API}/events", params=params), 422, "validation_error")


def test_queue_stats_shape(client: TestClient) -> None:
    data = client.get(f"{API}/queue-stats").json()["data"]
    assert {"pending", "processing", "completed", "failed", "total"} <= set(data)
    assert all(isinstance(v, int) and v == 0 for v in data.values())


def test_recent_and_by_person(client: TestClient) -> None:
    add_provider(client, options={"detections": [["person", 0.9, "person-7"], ["car", 0.8, None]]})
    _scripted_frame(client, "cam-1", 1)
    _scripted_frame(client, "cam-2", 1)

    recent = client.get(f"{API}/recent", params={"minutes": 1, "camera_id": "cam-2"}).json()
    assert recent["meta"]["total"] == 2
    assert {d["camera_id"] for d in recent["data"]} == {"cam-2"}

    mine = client.get(f"{API}/by-person/person-7").json()
    assert mine["meta"]["total"] == 2
    assert {d["person_id"] for d in mine["data"]} == {"person-7"}
    assert client.get(f"{API}/by-person/nobody").json()["meta"]["total"] == 0
    assert_error(client.get(f"{API}/recent", params={"minutes": "0"}), 422, "validation_error")
    assert_error(
        client.get(f"{API}/recent", params={"minutes": str(24 * 60 + 1)}), 422, "validation_error"
    )


def test_unknown_detection_is_404(client: TestClient) -> None:
    error = assert_error(client.get(f"{API}/no-such-detection"), 404, "not_found")
    assert "no-such-detection" in error["message"]


def test_fixed_paths_win_over_the_detection_id_route(client: TestClient) -> None:
    for path in ("live", "events", "queue-stats", "recent", "providers", "summary"):
        assert client.get(f"{API}/{path}").status_code == 200, path


@sqlite_only
@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda b: b, id="plain"),
        pytest.param(lambda b: "data:image/png;base64," + b, id="data-url"),
        pytest.param(lambda b: "DATA:image/png;base64," + b, id="data-url-upper"),
        pytest.param(lambda b: "\n".join(b[i : i + 76] for i in range(0, len(b), 76)), id="mime"),
    ],
)
def test_frame_data_may_be_a_data_url_or_line_wrapped(client: TestClient, wrap: Any) -> None:
    body = frame_body("cam-b64", 3)
    body["frame_data"] = wrap(body["frame_data"])
    response = client.post(f"{API}/send-frame?mode=queue", json=body)
    assert response.status_code == 202, response.text
    plain = client.post(f"{API}/send-frame?mode=queue", json=frame_body("cam-b64", 3))
    assert plain.json()["data"]["id"] == response.json()["data"]["id"]  # the same image


@sqlite_only
@pytest.mark.parametrize("text", ["not base64!", "data:image/png;base64,@@@@", "QUJD\nRA=x"])
def test_frame_data_that_is_not_base64_is_a_422(client: TestClient, text: str) -> None:
    response = client.post(f"{API}/send-frame", json={"camera_id": "cam-1", "frame_data": text})
    error = assert_error(response, 422, "validation_error")
    assert "base64" in str(error["details"])
