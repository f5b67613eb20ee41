from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite

from detectflow.store.types import UTCDateTime

_zones = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)
_aware = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=_zones
)


@given(_aware)
def test_sqlite_stores_utc_wall_time_and_reads_back_aware_utc(value: datetime) -> None:
    t, dialect = UTCDateTime(), sqlite.dialect()
    stored = t.process_bind_param(value, dialect)
    assert stored is not None
    assert stored.tzinfo is None
    back = t.process_result_value(stored, dialect)
    assert back == value
    assert back is not None
    assert back.tzinfo == UTC


@given(_aware)
def test_postgres_gets_aware_utc(value: datetime) -> None:
    t, dialect = UTCDateTime(), postgresql.dialect()
    stored = t.process_bind_param(value, dialect)
    assert stored == value
    assert stored is not None
    assert stored.utcoffset() == timedelta(0)


def test_naive_input_is_taken_as_utc() -> None:
    naive = datetime(2025, 11, 5, 12, 34, 56)
    t = UTCDateTime()
    assert t.process_bind_param(naive, postgresql.dialect()) == naive.replace(tzinfo=UTC)
    assert t.process_result_value(naive, sqlite.dialect()) == naive.replace(tzinfo=UTC)
    assert t.process_bind_param(None, sqlite.dialect()) is None
