"""The SQL queue source: claiming, leases, backpressure, finite mode, URL options."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectflow import Frame, FrameResult, Settings
from detectflow.core.pipeline import failed_result
from detectflow.core.plugins import PluginRegistry
from detectflow.flows.engine import DetectEngine
from detectflow.flows.source_common import SourceURLError
from detectflow.flows.source_sql import (
    LEASE_ATTR,
    QueueLeases,
    SqlQueueReader,
    parse_sql_source_url,
    sql_source_factory,
)
from detectflow.flows.steps import unvalidated_frame
from detectflow.store import Database
from tests.flows.conftest import activate, enqueue, garbage_frame, person


def reader(
    db: Database,
    engine: DetectEngine,
    settings: Settings,
    url: str = "sql://?batch_size=10",
    **kw: object,
) -> SqlQueueReader:
    options = parse_sql_source_url(url, settings)
    leases = QueueLeases(
        db, lease_seconds=options.lease_seconds, max_deliveries=options.max_deliveries
    )
    return SqlQueueReader(leases, engine, settings, options=options, **kw)  # type: ignore[arg-type]


def test_claims_no_more_than_the_engine_can_take(
    sqlite_db: Database, engine: DetectEngine, settings: Settings
) -> None:
    enqueue(sqlite_db, 6)
    source = reader(sqlite_db, engine, settings)

    first = source.next_batch()
    second = source.next_batch()

    assert len(first) == 3  # max_in_flight 2 + queue 1
    assert second == []
    assert source.next_awake() is not None
    assert sqlite_db.queue_stats()["pending"] == 3


def test_claims_wait_for_room_for_half_a_batch(
    sqlite_db: Database, registry: PluginRegistry, settings: Settings
) -> None:
    enqueue(sqlite_db, 30)
    activate(sqlite_db, person)
    with DetectEngine(
        settings, sqlite_db.active_provider, registry=registry, max_in_flight=2, queue_limit=20
    ) as engine:
        source = reader(sqlite_db, engine, settings)  # batches of 10
        assert [len(source.next_batch()) for _ in range(2)] == [10, 10]
        # 2 slots free of 22: fewer than half a batch, so no claim of 2 rows.
        assert source.next_batch() == []
        assert sqlite_db.queue_stats()["pending"] == 10
        assert engine.outstanding == 20


def test_invalid_rows_become_failed_results_and_free_their_slot(
    sqlite_db: Database, engine: DetectEngine, settings: Settings
) -> None:
    sqlite_db.enqueue(garbage_frame("junk"))
    source = reader(sqlite_db, engine, settings)

    (item,) = source.next_batch()

    assert isinstance(item, FrameResult)
    assert item.error is not None
    assert item.error.startswith("invalid frame:")
    assert engine.outstanding == 0


def test_finite_mode_ends_only_after_frames_come_back(
    sqlite_db: Database, engine: DetectEngine, settings: Settings
) -> None:
    enqueue(sqlite_db, 2)
    source = reader(sqlite_db, engine, settings, until_empty=True)
    lane = engine.lane()
    batch = source.next_batch()
    lane.submit([f for f in batch if isinstance(f, Frame)])

    assert source.next_batch() == []  # queue empty, but two frames still out
    results = []
    while lane.pending:
        results.extend(lane.poll())
    assert source.next_batch() == []  # back, but their rows are not recorded yet
    sqlite_db.record_results(results)
    with pytest.raises(StopIteration):
        source.next_batch()


def test_continuous_mode_without_provider_claims_nothing(
    sqlite_db: Database, settings: Settings, registry: PluginRegistry
) -> None:
    enqueue(sqlite_db, 2)
    with DetectEngine(settings, lambda: None, registry=registry) as engine:
        source = reader(sqlite_db, engine, settings)
        assert source.next_batch() == []
    assert sqlite_db.queue_stats()["pending"] == 2


def test_claimed_frames_name_the_run_holding_their_rows(
    sqlite_db: Database, engine: DetectEngine, settings: Settings
) -> None:
    enqueue(sqlite_db, 2)
    source = reader(sqlite_db, engine, settings)

    batch = source.next_batch()

    owner = source.leases.owner
    assert [f.attributes[LEASE_ATTR] for f in batch if isinstance(f, Frame)] == [owner] * 2
    assert sqlite_db.held_by(owner) == 2


def test_a_live_holders_rows_are_not_taken(
    sqlite_db: Database, engine: DetectEngine, settings: Settings
) -> None:
    enqueue(sqlite_db, 3)
    sqlite_db.claim(2, owner="elsewhere", lease_seconds=3600)
    source = reader(sqlite_db, engine, settings)

    assert len(source.next_batch()) == 1
    assert sqlite_db.held_by("elsewhere") == 2


def test_rows_of_a_holder_whose_lease_expired_are_claimed_again(
    sqlite_db: Database, engine: DetectEngine, settings: Settings
) -> None:
    enqueue(sqlite_db, 2)
    sqlite_db.claim(2, owner="crashed", lease_seconds=-1)  # a run that died at once
    source = reader(sqlite_db, engine, settings)

    batch = source.next_batch()  # the first wake-up sweeps

    assert len(batch) == 2
    assert sqlite_db.held_by(source.leases.owner) == 2
    assert source.leases.expired == 2


def test_finite_mode_waits_for_rows_another_run_holds(
    sqlite_db: Database, engine: DetectEngine, settings: Settings
) -> None:
    enqueue(sqlite_db, 1)
    (held,) = sqlite_db.claim(1, owner="elsewhere", lease_seconds=3600)
    source = reader(sqlite_db, engine, settings, until_empty=True)

    assert source.next_batch() == []  # not done: a frame is still processing elsewhere
    assert source.next_batch() == []
    sqlite_db.record_results([failed_result(unvalidated_frame(held), "done elsewhere")])
    with pytest.raises(StopIteration):
        source.next_batch()


def test_a_frame_delivered_too_often_is_failed_with_the_reason(
    sqlite_db: Database, engine: DetectEngine, settings: Settings
) -> None:
    enqueue(sqlite_db, 1)
    for _ in range(2):  # two holders died with it
        sqlite_db.claim(1, owner="crashed", lease_seconds=-1)
        sqlite_db.expire_leases(unleased_after=timedelta(0))
    source = reader(sqlite_db, engine, settings, "sql://?max_deliveries=2")

    (item,) = source.next_batch()

    assert isinstance(item, FrameResult)
    assert item.error is not None
    assert "abandoned after 2 deliveries" in item.error
    assert "max_deliveries=2" in item.error
    assert item.frame.attributes[LEASE_ATTR] == source.leases.owner  # the write side checks it
    assert engine.outstanding == 0


def test_a_suspect_row_is_claimed_alone_once_nothing_else_is_in_flight(
    sqlite_db: Database, engine: DetectEngine, settings: Settings
) -> None:
    (suspect,) = enqueue(sqlite_db, 1)
    for _ in range(2):  # it lost two holders: maybe it kills workers
        sqlite_db.claim(1, owner="crashed", lease_seconds=-1)
        sqlite_db.expire_leases(unleased_after=timedelta(0))
    enqueue(sqlite_db, 4)
    source = reader(sqlite_db, engine, settings)
    lane = engine.lane()

    first = source.next_batch()

    assert [f.frame_id for f in first] == [suspect.frame_id]  # alone, not with the others
    lane.submit([f for f in first if isinstance(f, Frame)])
    assert source.next_batch() == []  # the suspect is still out: nothing else is claimed
    results = []
    while lane.pending:
        results.extend(lane.poll())
    assert source.next_batch() == []  # back, but its outcome is not stored yet
    sqlite_db.record_results(results)
    assert len(source.next_batch()) == 3  # the engine's room (2 calls + 1 queued)


def test_sql_source_is_registered_through_the_hook(registry: PluginRegistry) -> None:
    assert registry.frame_sources()["sql"] is sql_source_factory


def test_url_defaults_come_from_settings(settings: Settings) -> None:
    for url in ("sql", "sql:", "sql://", "sql:///"):
        options = parse_sql_source_url(url, settings)
        assert options.batch_size == settings.batch_size
        assert options.lease_seconds == settings.queue_lease_seconds == 30
        assert options.max_deliveries == settings.queue_max_deliveries == 5


@given(
    batch=st.integers(1, 10_000),
    lease=st.floats(0.2, 86_400, allow_nan=False),
    deliveries=st.integers(1, 1_000_000),
)
def test_url_options_round_trip(batch: int, lease: float, deliveries: int) -> None:
    url = f"sql://?batch_size={batch}&lease_seconds={lease!r}&max_deliveries={deliveries}"
    options = parse_sql_source_url(url, Settings())
    assert (options.batch_size, options.lease_seconds, options.max_deliveries) == (
        batch,
        lease,
        deliveries,
    )


@given(
    name=st.sampled_from(["batch_size", "lease_seconds", "max_deliveries"]),
    text=st.text(max_size=40),
)
def test_any_option_value_parses_or_is_refused_clearly(name: str, text: str) -> None:
    message = ""
    try:
        parse_sql_source_url(f"sql://?{name}={text}", Settings())
    except SourceURLError as exc:
        message = str(exc)
    assert message == "" or "sql source" in message


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://x", "not an sql source URL"),
        ("sql://host/db", "takes no host or path"),
        ("sql://?batch=3", "unknown sql source option"),
        ("sql://?batch_size=0", "out of range"),
        ("sql://?lease_seconds=0", "out of range"),
        ("sql://?lease_seconds=soon", "not a number"),
        ("sql://?lease_seconds=inf", "out of range"),
        ("sql://?lease_seconds=nan", "out of range"),
        ("sql://?max_deliveries=0", "out of range"),
        ("sql://?stale_after=300", "claims are leases now"),
        ("sql://?batch_size=100001", "out of range"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(SourceURLError, match=message):
        parse_sql_source_url(url, Settings())


def test_resumed_frames_whose_rows_are_final_are_not_detected_again(
    sqlite_db: Database, settings: Settings
) -> None:
    enqueue(sqlite_db, 3)
    dead = QueueLeases(sqlite_db, lease_seconds=30, max_deliveries=5, owner="dead-run")
    snapshot = [f for f in dead.claim(3) if isinstance(f, Frame)]
    sqlite_db.record_results([failed_result(snapshot[0], "recorded before the crash")])
    fresh = QueueLeases(sqlite_db, lease_seconds=30, max_deliveries=5)

    submit, failed = fresh.resume(snapshot)

    assert [f.frame_id for f in submit] == [f.frame_id for f in snapshot[1:]]
    assert {f.attributes[LEASE_ATTR] for f in submit} == {fresh.owner}
    assert failed == []
    assert sqlite_db.held_by(fresh.owner) == 2
    assert sqlite_db.held_by("dead-run") == 0


def test_a_resumed_frame_past_max_deliveries_is_failed_not_resubmitted(
    sqlite_db: Database, settings: Settings
) -> None:
    enqueue(sqlite_db, 1)
    dead = QueueLeases(sqlite_db, lease_seconds=30, max_deliveries=1, owner="dead-run")
    snapshot = [f for f in dead.claim(1) if isinstance(f, Frame)]
    fresh = QueueLeases(sqlite_db, lease_seconds=30, max_deliveries=1)

    submit, (failed,) = fresh.resume(snapshot)

    assert submit == []
    assert failed.error is not None
    assert "abandoned after 1 deliveries" in failed.error
    assert not failed.frame.image
