"""Bulk insert and update on both databases: the COPY fast path, its replay fallback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import BigInteger, Boolean, Float, Integer, String, Text, bindparam, select, update
from sqlalchemy.exc import StatementError

from detectflow.store import Database
from detectflow.store.dialects import (
    _PLAIN_TYPES,
    _copy_type,
    add_to_rows,
    insert_ignore,
    insert_values,
    update_by_id,
    update_values,
)
from detectflow.store.rows import event_to_row, queue_row_for_frame
from detectflow.store.tables import detection_event_logs as events
from detectflow.store.tables import detection_processing_queue as queue
from detectflow.store.tables import detection_window_stats as windows
from detectflow.store.tables import metadata
from detectflow.store.types import UTCDateTime
from tests.databases import migrated_database
from tests.store.builders import frame, result


@pytest.fixture
def db(database_url: str, secret_key: str) -> Iterator[Database]:
    """A fresh migrated database per test, in place of tests/store/conftest.py's shared one."""
    with migrated_database(database_url, secret_key) as database:
        yield database


_WRITTEN = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def event_rows(count: int, *, start: int = 0, message: str = "first") -> list[dict[str, Any]]:
    """Rows whose key (id, created_at) is a function of ``i``, as the writer's must be."""
    rows = []
    for i in range(start, start + count):
        row = event_to_row(result(frame(frame_id=f"frame-{i}")).events[0])
        written = _WRITTEN + timedelta(seconds=i)
        rows.append({**row, "id": f"event-{i}", "message": message, "created_at": written})
    return rows


def messages(db: Database) -> dict[str, str]:
    with db.engine.connect() as conn:
        return {row.id: row.message for row in conn.execute(select(events.c.id, events.c.message))}


def test_new_rows_are_all_inserted(db: Database) -> None:
    with db.engine.begin() as conn:
        insert_ignore(conn, events, event_rows(300))
    assert len(messages(db)) == 300


def test_a_replayed_batch_writes_only_the_new_rows_and_changes_none(db: Database) -> None:
    with db.engine.begin() as conn:
        insert_ignore(conn, events, event_rows(5))
    with db.engine.begin() as conn:
        # Rows 3 and 4 exist: the whole batch takes the ON CONFLICT path.
        insert_ignore(conn, events, event_rows(5, start=3, message="replay"))
    got = messages(db)
    assert len(got) == 8
    assert got["event-4"] == "first"
    assert got["event-7"] == "replay"


def test_a_batch_repeating_an_id_keeps_the_first(db: Database) -> None:
    rows = event_rows(2) + event_rows(1, message="again")
    with db.engine.begin() as conn:
        insert_ignore(conn, events, rows)
    assert messages(db) == {"event-0": "first", "event-1": "first"}


def test_the_fallback_stays_inside_the_callers_transaction(db: Database) -> None:
    with db.engine.begin() as conn:
        insert_ignore(conn, events, event_rows(2))

    def abort_after_insert() -> None:
        with db.engine.begin() as conn:
            insert_ignore(conn, events, event_rows(3, start=1))
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError, match="abort"):
        abort_after_insert()
    assert set(messages(db)) == {"event-0", "event-1"}


def test_naive_timestamps_are_stored_as_utc(db: Database) -> None:
    naive = datetime(2024, 5, 1, 12, 30)
    rows = [{**event_rows(1)[0], "created_at": naive, "updated_at": naive}]
    with db.engine.begin() as conn:
        insert_ignore(conn, events, rows)
    stored = db.list_events()[0][0]
    assert stored.created_at == naive.replace(tzinfo=UTC)


def test_rows_with_bytes_take_the_executemany_path(db: Database) -> None:
    now = datetime.now(UTC)
    rows = [queue_row_for_frame(frame(frame_id=f"q-{i}"), max_retries=3, now=now) for i in range(3)]
    with db.engine.begin() as conn:
        insert_ignore(conn, queue, rows)
        insert_ignore(conn, queue, rows)
    item = db.get_queue_item("q-1")
    assert item is not None and item.frame_data == rows[1]["frame_data"]
    assert db.queue_stats()["total"] == 3


_fallback = (
    update(queue)
    .where(queue.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        detections_count=bindparam("b_detections_count"),
        updated_at=bindparam("b_updated_at", type_=UTCDateTime()),
    )
)


def test_update_by_id_sets_each_row_and_the_last_duplicate_wins(db: Database) -> None:
    for i in range(3):
        db.enqueue(frame(frame_id=f"u-{i}"))
    later = datetime.now(UTC) + timedelta(hours=1)
    rows = [
        {"b_id": "u-0", "b_status": "completed", "b_detections_count": 1, "b_updated_at": later},
        {"b_id": "u-1", "b_status": "failed", "b_detections_count": 0, "b_updated_at": later},
        {"b_id": "u-0", "b_status": "skipped", "b_detections_count": 4, "b_updated_at": later},
        {"b_id": "nope", "b_status": "failed", "b_detections_count": 0, "b_updated_at": later},
    ]
    with db.engine.begin() as conn:
        update_by_id(conn, queue, rows, fallback=_fallback)
    first, second, third = (db.get_queue_item(f"u-{i}") for i in range(3))
    assert first is not None and (first.status, first.detections_count) == ("skipped", 4)
    assert first.updated_at == later.replace(microsecond=later.microsecond)
    assert second is not None and second.status == "failed"
    assert third is not None and third.status == "pending"
    assert db.get_queue_item("nope") is None


def test_update_by_id_refuses_rows_that_do_not_name_their_values(db: Database) -> None:
    with db.engine.begin() as conn, pytest.raises(ValueError, match="b_<column>"):
        update_by_id(conn, queue, [{"id": "x", "status": "failed"}], fallback=_fallback)


def test_insert_values_takes_rows_as_tuples_in_column_order(db: Database) -> None:
    rows = event_rows(3)
    columns = tuple(rows[0])
    with db.engine.begin() as conn:
        insert_values(conn, events, columns, [tuple(row.values()) for row in rows])
        insert_values(conn, events, columns, [])
    assert messages(db) == {f"event-{i}": "first" for i in range(3)}


def test_timestamps_of_any_offset_mixed_with_naive_ones_are_stored_as_the_same_instant(
    db: Database,
) -> None:
    instant = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    stamps = [
        instant,
        instant.replace(tzinfo=None),
        instant.astimezone(timezone(timedelta(hours=5))),
    ]
    rows = [
        {**row, "created_at": stamp, "updated_at": stamp}
        for row, stamp in zip(event_rows(3), stamps, strict=True)
    ]
    with db.engine.begin() as conn:
        insert_ignore(conn, events, rows)
    stored = db.list_events(limit=10)[0]
    assert [e.created_at for e in stored] == [instant] * 3


def test_a_value_of_the_wrong_type_fails_loudly_and_writes_nothing(db: Database) -> None:
    rows = [*event_rows(2), {**event_rows(1, start=2)[0], "confidence_score": "very"}]
    with pytest.raises((TypeError, StatementError)), db.engine.begin() as conn:
        insert_ignore(conn, events, rows)
    assert messages(db) == {}


def test_every_plain_column_has_a_copy_type_of_its_width() -> None:
    assert _copy_type(Float()) == "float8" and _copy_type(Float(precision=24)) == "float4"
    assert (_copy_type(BigInteger()), _copy_type(Integer())) == ("int8", "int4")
    assert (_copy_type(String(12)), _copy_type(Text())) == ("text", "text")
    assert (_copy_type(UTCDateTime()), _copy_type(Boolean())) == ("timestamptz", "bool")
    for table in metadata.tables.values():
        for column in table.columns:
            if isinstance(column.type, _PLAIN_TYPES):
                _copy_type(column.type)  # raises if missing


def test_update_values_takes_rows_as_tuples_and_the_last_duplicate_wins(db: Database) -> None:
    for i in range(2):
        db.enqueue(frame(frame_id=f"v-{i}"))
    later = datetime.now(UTC) + timedelta(hours=1)
    columns = ("id", "status", "detections_count", "updated_at")
    rows = [
        ("v-0", "completed", 1, later),
        ("v-1", "failed", 0, later),
        ("v-0", "skipped", 2, later),
    ]
    with db.engine.begin() as conn:
        update_values(conn, queue, columns, rows, fallback=_fallback)
    first, second = (db.get_queue_item(f"v-{i}") for i in range(2))
    assert first is not None and (first.status, first.detections_count) == ("skipped", 2)
    assert first.updated_at == later
    assert second is not None and second.status == "failed"


def _window(count: int, best: float, when: datetime) -> dict[str, Any]:
    return {
        "camera_id": "cam-1",
        "detection_type": "person",
        "window_kind": "tumbling",
        "window_start": _WRITTEN,
        "window_end": _WRITTEN + timedelta(minutes=1),
        "detection_count": count,
        "confidence_sum": 0.5 * count,
        "max_confidence": best,
        "distinct_persons": 0,
        "late_count": 0,
        "revision": 1,
        "is_final": False,
        "updated_at": when,
    }


def test_add_to_rows_inserts_new_keys_and_updates_stored_ones_as_told(db: Database) -> None:
    how = {
        "detection_count": "add",
        "max_confidence": "max",
        "revision": "count",
        "updated_at": "given",
    }
    later = _WRITTEN + timedelta(hours=1)
    with db.engine.begin() as conn:
        add_to_rows(conn, windows, [_window(3, 0.9, _WRITTEN)], how)
        add_to_rows(conn, windows, [_window(2, 0.7, later)], how)
        add_to_rows(conn, windows, [_window(1, 0.95, later)], how)
    with db.engine.connect() as conn:
        row = conn.execute(select(windows)).mappings().one()
    assert (row["detection_count"], row["max_confidence"], row["revision"]) == (6, 0.95, 3)
    assert row["updated_at"] == later
    assert row["confidence_sum"] == 1.5  # not named in the updates: the first write's stays


def test_add_to_rows_refuses_an_update_it_does_not_know(db: Database) -> None:
    with db.engine.begin() as conn, pytest.raises(ValueError, match="unknown update"):
        add_to_rows(conn, windows, [_window(1, 0.5, _WRITTEN)], {"detection_count": "avg"})
