"""Keyset cursors and capped offsets on the list endpoints (/events, /recent, /by-person)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from detectflow.core.ids import event_id
from detectflow.core.models import DetectionEvent, FrameResult, utcnow
from detectflow.server.params import MAX_OFFSET, Cursor, encode_cursor
from detectflow.store import Database
from tests.server.support import API, TestClient, assert_error, sqlite_only
from tests.store.builders import detection, frame


def _events(database: Database, count: int, *, same_time: bool = False) -> None:
    """``count`` events on cam-1, one a second back from now (or all at one instant,
    so only the id orders them)."""
    now = utcnow()
    database.record_events(
        [
            DetectionEvent(
                id=event_id(f"paging-{i}", "detection_completed"),
                camera_id="cam-1",
                event_type="detection_completed",
                severity="info",
                message=f"event {i}",
                created_at=now if same_time else now - timedelta(seconds=i),
                updated_at=now,
            )
            for i in range(count)
        ]
    )


def _walk(client: TestClient, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every page by following ``meta.next_cursor`` until it is null."""
    pages = []
    body = client.get(path, params=params).json()
    pages.append(body)
    while body["meta"]["next_cursor"] is not None:
        body = client.get(path, params={**params, "cursor": body["meta"]["next_cursor"]}).json()
        pages.append(body)
    return pages


@pytest.mark.parametrize("same_time", [False, True], ids=["distinct-times", "one-instant"])
def test_cursor_pages_cover_every_event_once_newest_first(
    client: TestClient, database: Database, same_time: bool
) -> None:
    _events(database, 25, same_time=same_time)
    pages = _walk(client, f"{API}/events", {"limit": 10})
    assert [p["meta"]["page"] for p in pages] == [1, 2, 3]
    assert [len(p["data"]) for p in pages] == [10, 10, 5]
    assert all(p["meta"]["total"] == 25 and p["meta"]["totalPages"] == 3 for p in pages)
    rows = [e for p in pages for e in p["data"]]
    assert len({e["id"] for e in rows}) == 25
    keys = [(e["createdAt"], e["id"]) for e in rows]
    assert keys == sorted(keys, reverse=True)


def test_a_full_last_page_ends_with_an_empty_page(client: TestClient, database: Database) -> None:
    _events(database, 4)
    pages = _walk(client, f"{API}/events", {"limit": 2})
    assert [len(p["data"]) for p in pages] == [2, 2, 0]
    assert pages[-1]["meta"]["next_cursor"] is None


def test_cursor_pages_keep_the_filters(client: TestClient, database: Database) -> None:
    _events(database, 6)
    now = utcnow()
    for camera, minutes_ago in (("cam-8", 1), ("cam-9", 2), ("cam-9", 3 * 24 * 60)):
        f = frame(camera, timestamp=now - timedelta(minutes=minutes_ago))
        dets = tuple(detection(f, i, person_id="p-1") for i in range(3))
        database.record_results([FrameResult(f, dets, (), None, 1, 1)])

    mine = _walk(client, f"{API}/by-person/p-1", {"limit": 2})
    assert [len(p["data"]) for p in mine] == [2, 2, 2, 2, 1]
    recent = _walk(client, f"{API}/recent", {"limit": 2, "camera_id": "cam-9", "minutes": 60})
    assert [len(p["data"]) for p in recent] == [2, 1]
    assert {d["camera_id"] for p in recent for d in p["data"]} == {"cam-9"}
    events = _walk(client, f"{API}/events", {"limit": 4, "camera_id": "cam-1"})
    assert [len(p["data"]) for p in events] == [4, 2]


@sqlite_only
def test_cursor_with_an_offset_is_422(client: TestClient, database: Database) -> None:
    _events(database, 3)
    cursor = client.get(f"{API}/events", params={"limit": 1}).json()["meta"]["next_cursor"]
    body = assert_error(client.get(f"{API}/events", params={"cursor": cursor, "offset": 1}), 422)
    assert "cursor" in body["message"]


@sqlite_only
@pytest.mark.parametrize(
    "cursor",
    [
        "nonsense",
        "e30",  # {} in base64
        encode_cursor(Cursor(2, utcnow(), "x"))[:-3],
        "x" * 500,
    ],
)
def test_a_cursor_the_server_did_not_make_is_422(client: TestClient, cursor: str) -> None:
    assert_error(client.get(f"{API}/events", params={"cursor": cursor}), 422, "validation_error")


@sqlite_only
@pytest.mark.parametrize("path", ["/events", "/recent", "/by-person/p-1"])
def test_offsets_past_the_cap_are_422_and_name_the_cursor(client: TestClient, path: str) -> None:
    assert client.get(f"{API}{path}", params={"offset": MAX_OFFSET}).status_code == 200
    body = assert_error(client.get(f"{API}{path}", params={"offset": MAX_OFFSET + 1}), 422)
    assert "offset" in body["message"]
