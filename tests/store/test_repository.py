from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.exc import OperationalError

from detectflow.core.models import FrameResult, ProbeResult, QueueStatus, TestStatus, utcnow
from detectflow.store import Database, queue
from detectflow.store.tables import detection_processing_queue
from tests.store.builders import ago, detection, frame, provider, result

# -- queue -------------------------------------------------------------------

LEASE = queue.Lease("run-a", datetime(2100, 1, 1, tzinfo=UTC))


def test_enqueue_returns_a_pending_row_keyed_by_frame_id(db: Database) -> None:
    f = frame(priority=8)
    item = db.enqueue(f, max_retries=5)
    assert item.id == f.frame_id
    assert item.status == QueueStatus.PENDING
    assert (item.camera_id, item.frame_data, item.priority) == (f.camera_id, f.image, 8)
    assert item.max_retries == 5
    assert item.frame_timestamp == f.timestamp
    assert db.get_queue_item(f.frame_id) == item


def test_enqueue_refuses_a_frame_id_another_camera_already_queued(db: Database) -> None:
    first = db.enqueue(frame(camera_id="cam-a"))
    with pytest.raises(queue.FrameIdConflictError, match="already queued for another camera"):
        db.enqueue(frame(frame_id=first.id, camera_id="cam-b"))
    assert db.get_queue_item(first.id) == first


def test_enqueue_twice_keeps_the_existing_row(db: Database) -> None:
    f = frame(priority=3)
    first = db.enqueue(f)
    again = db.enqueue(frame(frame_id=f.frame_id, priority=9, image=b"other"))
    assert again == first
    assert db.queue_stats()["total"] == 1


def test_claim_takes_highest_priority_first_then_oldest(db: Database) -> None:
    low = db.enqueue(frame(priority=1))
    old_mid = db.enqueue(frame(priority=5))
    urgent = db.enqueue(frame(priority=10))
    new_mid = db.enqueue(frame(priority=5))
    claimed = db.claim(3)
    assert [i.id for i in claimed] == [urgent.id, old_mid.id, new_mid.id]
    assert all(i.status == QueueStatus.PROCESSING for i in claimed)
    assert [i.id for i in db.claim(10)] == [low.id]
    assert db.claim(10) == []


def test_claim_with_nothing_to_take_or_zero_limit_returns_empty(db: Database) -> None:
    assert db.claim(5) == []
    db.enqueue(frame())
    assert db.claim(0) == []
    assert db.queue_stats()["pending"] == 1


def test_claim_rows_are_the_claim_without_queue_items(db: Database) -> None:
    plus2 = timezone(timedelta(hours=2))
    low, mid, urgent = (frame(priority=p, timestamp=ago(60).astimezone(plus2)) for p in (1, 5, 10))
    for f in (low, mid, urgent):
        db.enqueue(f, max_retries=4)

    rows = db.claim_rows(2, owner="run-a", lease_seconds=30)

    assert [r.id for r in rows] == [urgent.frame_id, mid.frame_id]
    for row, f in zip(rows, (urgent, mid), strict=True):
        assert (row.camera_id, row.frame_data, row.priority, row.frame_number) == (
            f.camera_id,
            f.image,
            f.priority,
            f.frame_number,
        )
        assert type(row.frame_data) is bytes
        assert (row.retry_count, row.max_retries) == (0, 4)
        assert row.frame_timestamp == f.timestamp
        assert row.frame_timestamp.tzinfo is UTC
        assert row.created_at.tzinfo is UTC
    assert db.queue_stats()["processing"] == 2
    assert [r.id for r in db.claim_rows(5, owner="run-a", lease_seconds=30)] == [low.frame_id]
    assert db.claim_rows(5, owner="run-a", lease_seconds=30) == []


@pytest.fixture
def pg(_store_postgres_url: str, secret_key: str) -> Iterator[Database]:
    """The PostgreSQL store database with an empty queue."""
    database = Database(_store_postgres_url, secret_key=secret_key)
    database.upgrade()
    with database.engine.begin() as conn:
        conn.execute(detection_processing_queue.delete())
    try:
        yield database
    finally:
        database.dispose()


@pytest.mark.postgres
def test_claimed_timestamps_do_not_depend_on_the_session_time_zone(pg: Database) -> None:
    f = frame(timestamp=datetime(2025, 6, 1, 12, 0, tzinfo=UTC))
    pg.enqueue(f)
    with pg.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("SET TIME ZONE 'Asia/Tokyo'")
        (row,) = queue.claim_rows(conn, 10, now=utcnow(), lease=LEASE)
        conn.exec_driver_sql("RESET TIME ZONE")
    assert row.frame_timestamp == f.timestamp
    assert row.frame_timestamp.tzinfo is UTC


@pytest.mark.postgres
def test_a_connection_lost_mid_claim_raises_sqlalchemys_error_and_is_invalidated(
    pg: Database,
) -> None:
    pg.enqueue(frame())
    with pg.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with pg.engine.connect() as other:
            other.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
        with pytest.raises(OperationalError) as caught:
            queue.claim_rows(conn, 1, now=utcnow(), lease=LEASE)
        assert caught.value.connection_invalidated
        assert conn.invalidated
    # the pool hands out a live connection
    assert len(pg.claim_rows(1, owner="run-a", lease_seconds=30)) == 1


def test_concurrent_claims_never_take_the_same_row(db: Database) -> None:
    ids = {db.enqueue(frame(camera_id=f"cam-{i % 4}")).id for i in range(120)}
    barrier = threading.Barrier(4)
    taken: list[list[str]] = [[] for _ in range(4)]
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            barrier.wait()
            while batch := db.claim(7):
                taken[n].extend(i.id for i in batch)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    flat = [i for chunk in taken for i in chunk]
    assert len(flat) == len(set(flat)), "a row was claimed twice"
    assert set(flat) == ids


def test_queue_stats_counts_every_status(db: Database) -> None:
    done, failed, busy, _waiting = (frame() for _ in range(4))
    for f in (done, failed, busy, _waiting):
        db.enqueue(f)
    db.claim(3)
    db.record_results([result(done), result(failed, error="boom", attempts=4)])
    stats = db.queue_stats()
    assert stats == {
        "pending": 1,
        "processing": 1,
        "completed": 1,
        "failed": 1,
        "skipped": 0,
        "total": 4,
    }


def test_get_queue_item_unknown_is_none(db: Database) -> None:
    assert db.get_queue_item("no-such-frame") is None


# -- results -----------------------------------------------------------------


def test_record_results_writes_rows_and_completes_the_queue_row(db: Database) -> None:
    f = frame()
    db.enqueue(f)
    db.claim(1)
    r = result(f, detections=3, attempts=2)
    db.record_results([r])
    item = db.get_queue_item(f.frame_id)
    assert item is not None
    assert item.status == QueueStatus.COMPLETED
    assert (item.detections_count, item.processing_time_ms, item.retry_count) == (3, 42, 1)
    assert item.error_message is None
    for d in r.detections:
        assert db.get_detection(d.id) == d
    events, total = db.list_events(camera_id=f.camera_id)
    assert total == 1
    assert events == list(r.events)


def test_record_results_marks_a_failed_frame_failed_with_its_reason(db: Database) -> None:
    f = frame()
    db.enqueue(f)
    db.record_results([result(f, error="provider said 400", attempts=4)])
    item = db.get_queue_item(f.frame_id)
    assert item is not None
    assert item.status == QueueStatus.FAILED
    assert item.error_message == "provider said 400"
    assert item.retry_count == 3
    assert item.detections_count == 0
    assert db.list_events(event_type="detection_failed")[1] == 1


def test_record_results_replay_writes_nothing_new(db: Database) -> None:
    f = frame()
    r = result(f, detections=2)
    db.record_results([r])
    changed = detection(f, 0, confidence=0.11)  # same id, different content
    replay = result(f, detections=2)
    db.record_results([replay, replay])
    db.record_results([FrameResult(f, (changed,), r.events, None, 1, 1)])
    assert db.list_detections()[1] == 2
    assert db.list_events()[1] == 1
    stored = db.get_detection(changed.id)
    assert stored is not None
    assert stored.confidence == 0.9


def test_record_results_without_a_queue_row_still_writes_detections(db: Database) -> None:
    f = frame()
    db.record_results([result(f, detections=2)])
    assert db.get_queue_item(f.frame_id) is None
    assert db.list_detections(camera_id=f.camera_id)[1] == 2


def test_record_results_of_nothing_writes_nothing(db: Database) -> None:
    db.record_results([])
    assert db.list_detections() == ([], 0)


def test_timestamps_come_back_as_aware_utc(db: Database) -> None:
    plus_two = timezone(timedelta(hours=2))
    created = utcnow().astimezone(plus_two).replace(microsecond=123456)
    f = frame(timestamp=created)
    db.enqueue(f)
    r = result(f, detections=1, created_at=created)
    db.record_results([r])
    stored = db.get_detection(r.detections[0].id)
    item = db.get_queue_item(f.frame_id)
    assert stored is not None
    assert item is not None
    for value in (stored.created_at, stored.frame_timestamp, item.frame_timestamp, item.created_at):
        assert value is not None
        assert value.tzinfo is not None
        assert value.utcoffset() == timedelta(0)
    assert stored.created_at == created
    assert stored.created_at.tzinfo == UTC


def test_get_detection_unknown_is_none(db: Database) -> None:
    assert db.get_detection("nope") is None


def test_list_detections_filters_pages_and_sorts_newest_first(db: Database) -> None:
    a, b = frame("cam-a"), frame("cam-b")
    rows = [
        detection(a, 0, confidence=0.95, created_at=ago(50)),
        detection(a, 1, detection_type="vehicle", confidence=0.6, created_at=ago(40)),
        detection(a, 2, person_id="p-1", confidence=0.8, created_at=ago(30)),
        detection(b, 0, confidence=0.4, created_at=ago(20)),
        detection(b, 1, person_id="p-1", detection_type="face", created_at=ago(10)),
    ]
    db.record_results([FrameResult(a, tuple(rows), (), None, 1, 1)])

    everything, total = db.list_detections()
    assert total == 5
    assert [d.id for d in everything] == [d.id for d in reversed(rows)]
    assert db.list_detections(camera_id="cam-a")[1] == 3
    assert [d.id for d in db.list_detections(detection_type="vehicle")[0]] == [rows[1].id]
    assert db.list_detections(min_confidence=0.8)[1] == 3
    assert {d.id for d in db.list_detections(person_id="p-1")[0]} == {rows[2].id, rows[4].id}
    assert db.list_detections(since=ago(25))[1] == 2
    page, total = db.list_detections(limit=2, offset=2)
    assert total == 5
    assert [d.id for d in page] == [rows[2].id, rows[1].id]
    assert db.list_detections(camera_id="cam-b", min_confidence=0.5)[1] == 1


def test_list_events_filters_and_sorts_newest_first(db: Database) -> None:
    ok, bad, other = frame("cam-a"), frame("cam-a"), frame("cam-b")
    db.record_results(
        [
            result(ok, created_at=ago(30)),
            result(bad, error="timeout", created_at=ago(20)),
            result(other, created_at=ago(10)),
        ]
    )
    events, total = db.list_events()
    assert total == 3
    assert [e.camera_id for e in events] == ["cam-b", "cam-a", "cam-a"]
    assert db.list_events(camera_id="cam-a")[1] == 2
    assert db.list_events(event_type="detection_completed")[1] == 2
    assert [e.message for e in db.list_events(severity="warning")[0]] == ["timeout"]
    assert db.list_events(person_id="nobody") == ([], 0)
    page, total = db.list_events(limit=1, offset=1)
    assert (total, [e.camera_id for e in page]) == (3, ["cam-a"])


def test_list_rejects_a_negative_page(db: Database) -> None:
    with pytest.raises(ValueError, match="limit and offset"):
        db.list_detections(offset=-1)


# -- providers ---------------------------------------------------------------


def test_create_and_get_a_provider_round_trips_every_field(db: Database) -> None:
    config = provider()
    created = db.create_provider(config)
    assert created == config
    assert db.get_provider(config.id) == config
    assert db.list_providers() == [config]
    assert db.get_provider("missing") is None


def test_only_one_provider_is_active(db: Database) -> None:
    first = db.create_provider(provider("one", active=True))
    second = db.create_provider(provider("two", active=True))
    assert db.active_provider() == second
    refreshed = db.get_provider(first.id)
    assert refreshed is not None
    assert not refreshed.is_active
    db.update_provider(first.id, {"is_active": True})
    active = db.active_provider()
    assert active is not None
    assert active.id == first.id
    assert [p.is_active for p in db.list_providers()] == [True, False]


def test_no_active_provider_is_none(db: Database) -> None:
    db.create_provider(provider(active=False))
    assert db.active_provider() is None


def test_update_provider_changes_named_fields_only(db: Database) -> None:
    config = db.create_provider(provider(api_key="old"))
    updated = db.update_provider(
        config.id,
        {"confidence_threshold": 0.75, "timeout_seconds": 45, "api_key": "new", "options": {}},
    )
    assert (updated.confidence_threshold, updated.timeout_seconds) == (0.75, 45)
    assert updated.api_key == "new"
    assert updated.options == {}
    assert updated.provider_name == config.provider_name
    assert updated.updated_at >= config.updated_at
    assert db.update_provider(config.id, {"api_key": None}).api_key is None


def test_update_provider_unknown_id_or_field_is_refused(db: Database) -> None:
    config = db.create_provider(provider())
    with pytest.raises(KeyError):
        db.update_provider("missing", {"timeout_seconds": 1})
    with pytest.raises(ValueError, match="created_at"):
        db.update_provider(config.id, {"created_at": utcnow()})


def test_create_provider_with_an_existing_id_is_refused(db: Database) -> None:
    config = db.create_provider(provider())
    with pytest.raises(ValueError, match="already exists"):
        db.create_provider(config)


def test_delete_provider(db: Database) -> None:
    config = db.create_provider(provider())
    assert db.delete_provider(config.id) is True
    assert db.delete_provider(config.id) is False
    assert db.list_providers() == []


def test_record_provider_test_stores_outcome(db: Database) -> None:
    config = db.create_provider(provider())
    ok = db.record_provider_test(config.id, ProbeResult(ok=True, response_time_ms=12, message="ok"))
    assert ok.test_status == TestStatus.SUCCESS
    assert ok.last_tested is not None
    assert ok.last_error is None
    failed = db.record_provider_test(
        config.id,
        ProbeResult(ok=False, response_time_ms=5, message="refused", error="connection refused"),
    )
    assert failed.test_status == TestStatus.FAILED
    assert failed.last_error == "connection refused"
    with pytest.raises(KeyError):
        db.record_provider_test("missing", ProbeResult(ok=True, response_time_ms=1, message=""))


# -- lifecycle ---------------------------------------------------------------


def test_ping_and_dialect(db: Database) -> None:
    assert db.ping() is True
    assert db.is_postgres == (db.engine.url.get_backend_name() == "postgresql")


def test_ping_is_false_when_the_server_is_unreachable(secret_key: str, free_port: int) -> None:
    down = Database(f"postgresql://postgres@127.0.0.1:{free_port}/none", secret_key=secret_key)
    try:
        assert down.ping() is False
    finally:
        down.dispose()


# -- maintenance -------------------------------------------------------------


def test_cleanup_deletes_old_rows_and_keeps_unfinished_queue_rows(db: Database) -> None:
    old, recent, waiting = frame(), frame(), frame()
    for f in (old, recent, waiting):
        db.enqueue(f)
    db.record_results([result(old, created_at=ago(3 * 86_400)), result(recent)])
    deleted = db.cleanup(timedelta(minutes=30)).deleted
    # On PostgreSQL three days back is the default partition (upgrade makes yesterday on),
    # whose old rows are deleted one by one like SQLite's.
    assert (deleted["detections"], deleted["events"], deleted["queue"]) == (2, 1, 0)
    assert db.list_detections()[1] == 2
    deleted = db.cleanup(timedelta(0)).deleted
    # PostgreSQL keeps today's partition whole: retention there is by whole days.
    expected = (0, 0, 2) if db.is_postgres else (2, 1, 2)
    assert (deleted["detections"], deleted["events"], deleted["queue"]) == expected
    assert db.get_queue_item(waiting.frame_id) is not None
    assert db.queue_stats()["total"] == 1
