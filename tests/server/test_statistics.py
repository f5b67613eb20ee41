"""GET /statistics and /statistics/windows (detectflow/server/statistics.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from detectflow.core.models import FrameResult, utcnow
from detectflow.core.serialize import isoformat
from detectflow.server.statistics import cache_ttl
from detectflow.store import Database
from detectflow.store.live import STATS_TTL, LiveView
from detectflow.store.memory import MemoryBus, MemoryCache
from detectflow.store.recorder import Recorder
from detectflow.store.tables import detection_window_stats
from tests.server.support import API, TestClient, assert_error, sqlite_only
from tests.store.builders import detection, frame

GUIDE_KEYS = {
    "total_detections",
    "detections_today",
    "detections_this_hour",
    "average_confidence",
    "most_detected_person",
    "detection_types",
    "cameras_active",
    "last_detection_timestamp",
}

Row = tuple[str, timedelta, str, float, str | None]


@pytest.fixture(autouse=True)
def _empty_window_tables(database: Database) -> None:
    """The shared PostgreSQL database is emptied of the guide's tables only."""
    with database.engine.begin() as conn:
        conn.execute(detection_window_stats.delete())


def write(database: Database, now: datetime, rows: list[Row], cache: object = None) -> list[Row]:
    """Record one frame per row through the one recorder (detections and their window
    tallies in one transaction; the statistics cache, if given, is told)."""
    results = []
    for i, (camera, ago, kind, confidence, person) in enumerate(sorted(rows, key=lambda r: -r[1])):
        when = now - ago
        f = frame(camera, timestamp=when, frame_id=f"{camera}-{i}-{when.timestamp()}")
        d = detection(
            f, detection_type=kind, confidence=confidence, person_id=person, created_at=when
        )
        results.append(FrameResult(f, (d,), (), None, 1, 5))
    Recorder(database, stats=cache).record(results)  # type: ignore[arg-type]
    return rows


SAMPLE: list[Row] = [
    ("cam-a", timedelta(seconds=30), "person", 0.9, "p-1"),
    ("cam-a", timedelta(seconds=40), "person", 0.7, "p-1"),
    ("cam-a", timedelta(seconds=50), "vehicle", 0.6, None),
    ("cam-b", timedelta(hours=3), "person", 0.8, "p-2"),
    ("cam-b", timedelta(hours=26), "face", 0.5, None),
]


def expected(now: datetime, rows: list[Row], camera: str | None = None) -> dict[str, object]:
    mine = [r for r in rows if camera is None or r[0] == camera]
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    hour = now.replace(minute=0, second=0, microsecond=0)
    persons = [r[4] for r in mine if r[4] is not None]
    types: dict[str, int] = {}
    for r in mine:
        types[r[2]] = types.get(r[2], 0) + 1
    return {
        "total_detections": len(mine),
        "detections_today": sum(now - r[1] >= midnight for r in mine),
        "detections_this_hour": sum(now - r[1] >= hour for r in mine),
        "average_confidence": round(sum(r[3] for r in mine) / len(mine), 4),
        "most_detected_person": max(sorted(set(persons)), key=persons.count) if persons else None,
        "detection_types": dict(sorted(types.items())),
        "cameras_active": len({r[0] for r in mine if r[1] <= timedelta(minutes=4)}),
        "last_detection_timestamp": isoformat(now - min(r[1] for r in mine)),
    }


def test_statistics_match_the_detections_written(client: TestClient, database: Database) -> None:
    now = utcnow()
    write(database, now, SAMPLE)

    response = client.get(f"{API}/statistics")

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert set(data) == GUIDE_KEYS
    assert data == expected(now, SAMPLE)


@pytest.mark.parametrize("camera", ["cam-a", "cam-b"])
def test_statistics_of_one_camera(client: TestClient, database: Database, camera: str) -> None:
    now = utcnow()
    write(database, now, SAMPLE)

    data = client.get(f"{API}/statistics", params={"camera_id": camera}).json()["data"]

    assert data == expected(now, SAMPLE, camera)


def test_statistics_without_data_are_zeros(client: TestClient) -> None:
    data = client.get(f"{API}/statistics").json()["data"]
    assert data == {
        "total_detections": 0,
        "detections_today": 0,
        "detections_this_hour": 0,
        "average_confidence": 0.0,
        "most_detected_person": None,
        "detection_types": {},
        "cameras_active": 0,
        "last_detection_timestamp": None,
    }


def test_statistics_are_cached_until_the_recorder_invalidates_them(
    client: TestClient, database: Database, cache: MemoryCache, bus: MemoryBus
) -> None:
    now = utcnow()
    write(database, now, SAMPLE[:1])
    assert client.get(f"{API}/statistics").json()["data"]["total_detections"] == 1

    write(database, now, SAMPLE[1:2])  # recorded without telling the cache
    assert client.get(f"{API}/statistics").json()["data"]["total_detections"] == 1

    write(database, now, SAMPLE[2:3], cache=LiveView(cache, bus).stats)
    assert client.get(f"{API}/statistics").json()["data"]["total_detections"] == 3


def test_cache_ttl_is_the_guides_but_never_past_the_hour() -> None:
    assert cache_ttl(datetime(2025, 1, 1, 10, 0, tzinfo=UTC)) == STATS_TTL
    assert cache_ttl(datetime(2025, 1, 1, 10, 58, tzinfo=UTC)) == 120.0
    assert cache_ttl(datetime(2025, 1, 1, 10, 59, 59, 999999, tzinfo=UTC)) == 1.0


def test_windows_are_listed_with_their_kind_newest_first(
    client: TestClient, database: Database
) -> None:
    now = utcnow()
    write(database, now, SAMPLE)

    response = client.get(
        f"{API}/statistics/windows", params={"camera_id": "cam-a", "kind": "tumbling"}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    starts = [w["window_start"] for w in body["data"]]
    assert starts == sorted(starts, reverse=True)
    assert {w["kind"] for w in body["data"]} == {"tumbling"}
    assert sum(w["count"] for w in body["data"]) == 3
    assert body["meta"]["total"] == len(body["data"])


def test_windows_filter_by_type_and_since_and_page(client: TestClient, database: Database) -> None:
    now = utcnow()
    write(database, now, SAMPLE)
    since = isoformat(now - timedelta(hours=4))

    body = client.get(
        f"{API}/statistics/windows",
        params={"detection_type": "person", "since": since, "limit": 2, "offset": 1},
    ).json()

    # person windows since 4 h ago: cam-a 1 tumbling + 5-6 sliding; cam-b 1 + 5
    assert body["meta"]["pageSize"] == 2 and body["meta"]["page"] == 1
    assert body["meta"]["total"] >= 12
    assert len(body["data"]) == 2
    assert all(w["detection_type"] == "person" for w in body["data"])
    assert all(w["window_start"] >= since for w in body["data"])


@sqlite_only
@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/statistics", {"camera_id": "bad id!"}),
        ("/statistics", {"camera_id": "x" * 129}),
        ("/statistics", {"cameraid": "cam-a"}),
        ("/statistics/windows", {"kind": "hopping"}),
        ("/statistics/windows", {"since": "yesterday"}),
        ("/statistics/windows", {"limit": "0"}),
        ("/statistics/windows", {"limit": "1001"}),
        ("/statistics/windows", {"limit": "ten"}),
        ("/statistics/windows", {"offset": "-1"}),
        ("/statistics/windows", {"detection_type": "x" * 65}),
        ("/statistics/windows", {"window": "5m"}),
    ],
)
def test_bad_parameters_get_the_422_envelope(
    client: TestClient, path: str, params: dict[str, str]
) -> None:
    error = assert_error(client.get(f"{API}{path}", params=params), 422, "validation_error")
    assert error["details"][0]["field"].startswith("query.")


@sqlite_only
def test_a_parameter_given_twice_is_refused(client: TestClient) -> None:
    response = client.get(f"{API}/statistics/windows?camera_id=a&camera_id=b")
    assert_error(response, 422, "validation_error")
