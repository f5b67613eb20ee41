"""The SQL queue source: claiming, backpressure, finite mode, URL options."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectflow import Frame, FrameResult, Settings
from detectflow.core.plugins import PluginRegistry
from detectflow.flows.engine import DetectEngine
from detectflow.flows.sources import (
    SourceURLError,
    SqlQueueReader,
    parse_sql_source_url,
    sql_source_factory,
)
from detectflow.store import Database
from tests.flows.conftest import activate, enqueue, garbage_frame, person


def reader(db: Database, engine: DetectEngine, settings: Settings, **kw: object) -> SqlQueueReader:
    options = parse_sql_source_url("sql://?batch_size=10", settings)
    return SqlQueueReader(db, engine, settings, options=options, **kw)  # type: ignore[arg-type]


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
    while lane.pending:
        lane.poll()
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


def test_first_worker_releases_stale_rows_at_start(
    sqlite_db: Database, engine: DetectEngine, settings: Settings
) -> None:
    enqueue(sqlite_db, 2)
    sqlite_db.claim(2)
    options = parse_sql_source_url("sql://?stale_after=0", settings)
    second = SqlQueueReader(sqlite_db, engine, settings, options=options, worker_index=1)
    assert second.next_batch() == []  # only worker 0 releases
    first = SqlQueueReader(sqlite_db, engine, settings, options=options, worker_index=0)
    assert len(first.next_batch()) == 2


def test_sql_source_is_registered_through_the_hook(registry: PluginRegistry) -> None:
    assert registry.frame_sources()["sql"] is sql_source_factory


def test_url_defaults_come_from_settings(settings: Settings) -> None:
    for url in ("sql", "sql:", "sql://", "sql:///"):
        options = parse_sql_source_url(url, settings)
        assert options.batch_size == settings.batch_size
        assert options.stale_after == timedelta(minutes=5)


@given(batch=st.integers(1, 10_000), stale=st.floats(0, 1e6, allow_nan=False))
def test_url_options_round_trip(batch: int, stale: float) -> None:
    options = parse_sql_source_url(f"sql://?batch_size={batch}&stale_after={stale!r}", Settings())
    assert options.batch_size == batch
    assert options.stale_after == timedelta(seconds=stale)


@given(name=st.sampled_from(["batch_size", "stale_after"]), text=st.text(max_size=40))
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
        ("sql://?stale_after=-1", "out of range"),
        ("sql://?stale_after=soon", "not a number"),
        ("sql://?stale_after=inf", "out of range"),
        ("sql://?stale_after=nan", "out of range"),
        ("sql://?stale_after=1E100", "out of range"),
        ("sql://?batch_size=100001", "out of range"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(SourceURLError, match=message):
        parse_sql_source_url(url, Settings())
