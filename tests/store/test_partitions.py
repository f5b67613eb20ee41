"""Day partitions on PostgreSQL: made ahead, any time accepted, dropped by retention."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import text

from detectflow.core.models import FrameResult, utcnow
from detectflow.store import Database
from detectflow.store.partitions import (
    PARTITIONED,
    default_name,
    ensure_days,
    list_days,
    partition_name,
)
from tests.databases import migrated_database
from tests.store.builders import frame, result

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg(postgres_url: str, secret_key: str) -> Iterator[Database]:
    """A fresh migrated PostgreSQL database: these tests add and drop partitions."""
    with migrated_database(postgres_url, secret_key) as database:
        yield database


def _where(db: Database, table: str, key: str) -> str:
    """The partition holding the row whose ``id`` is ``key``."""
    with db.engine.connect() as conn:
        return str(
            conn.execute(
                text(f'SELECT tableoid::regclass::text FROM "{table}" WHERE id = :id'), {"id": key}
            ).scalar_one()
        )


def test_upgrade_partitions_the_big_tables_from_yesterday_to_two_days_ahead(pg: Database) -> None:
    today = utcnow().date()
    with pg.engine.connect() as conn:
        for table in PARTITIONED:
            kind = conn.execute(
                text("SELECT relkind FROM pg_class WHERE relname = :t"), {"t": table}
            )
            assert kind.scalar_one() == "p"
            days = [p.day for p in list_days(conn, table)]
            assert days == [today + timedelta(days=n) for n in range(-1, 3)]
            assert conn.execute(text("SELECT to_regclass(:d)"), {"d": default_name(table)}).scalar()


def test_a_row_of_any_time_is_accepted_and_moves_into_its_day_when_that_day_is_made(
    pg: Database,
) -> None:
    old = utcnow() - timedelta(days=400)
    f = frame(timestamp=old)
    pg.record_results([result(f, detections=2)])
    detection_id = result(f).detections[0].id
    assert _where(pg, "detections", detection_id) == default_name("detections")

    with pg.engine.begin() as conn:
        made = ensure_days(conn, [old.date()])
    assert partition_name("detections", old.date()) in made
    assert _where(pg, "detections", detection_id) == partition_name("detections", old.date())
    assert pg.list_detections()[1] == 2
    assert pg.get_detection(detection_id) is not None


def test_a_replay_into_a_partitioned_table_writes_nothing_new(pg: Database) -> None:
    f = frame()
    first = result(f, detections=3)
    pg.record_results([first])
    pg.record_results([result(f, detections=3), result(f, detections=3)])  # COPY conflicts
    assert pg.list_detections()[1] == 3
    assert pg.list_events()[1] == 1


def test_cleanup_drops_whole_days_and_deletes_old_rows_of_the_default_partition(
    pg: Database,
) -> None:
    now = utcnow()
    with pg.engine.begin() as conn:
        ensure_days(conn, [(now - timedelta(days=n)).date() for n in range(2, 6)])
    ages = {"kept": 0, "three": 3, "five": 5, "ancient": 90}
    for name, days in ages.items():
        f = frame(frame_id=f"frame-{name}", timestamp=now - timedelta(days=days))
        pg.record_results([result(f, detections=2)])

    report = pg.cleanup(timedelta(days=2))

    # Days 3, 4 and 5 back end before the cutoff (midnight two days back): dropped.
    assert report.dropped["detections"] == 3
    assert report.dropped["events"] == 3
    assert report.deleted["detections"] == 2  # the 90-day-old rows, in the default partition
    assert {d.frame_id for d in pg.list_detections()[0]} == {"frame-kept"}
    with pg.engine.connect() as conn:
        left = {p.day for p in list_days(conn, "detections")}
    assert (now - timedelta(days=3)).date() not in left
    assert (now - timedelta(days=2)).date() in left


def test_cleanup_keeps_the_day_the_cutoff_falls_in(pg: Database) -> None:
    """Retention by partition is by whole days: never less than asked is kept."""
    pg.record_results([result(frame(timestamp=utcnow() - timedelta(minutes=1)), detections=1)])
    report = pg.cleanup(timedelta(0))
    assert sum(report.dropped.values()) >= 3  # yesterday's partitions
    assert pg.list_detections()[1] == 1


def test_ensuring_days_twice_makes_nothing_the_second_time(pg: Database) -> None:
    assert pg.ensure_partitions(days_ahead=4) != []
    assert pg.ensure_partitions(days_ahead=4) == []


def test_frames_far_in_the_future_land_in_the_default_partition(pg: Database) -> None:
    f = frame(timestamp=utcnow() + timedelta(days=3650))
    r = result(f, detections=1)
    pg.record_results([FrameResult(f, r.detections, r.events, None, 1, 1)])
    assert _where(pg, "detections", r.detections[0].id) == default_name("detections")
