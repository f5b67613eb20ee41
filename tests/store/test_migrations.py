from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select

from detectflow.core.models import utcnow
from detectflow.store import Database
from detectflow.store.migrate import alembic_config
from detectflow.store.migrate import upgrade as run_upgrade
from detectflow.store.partitions import is_partition_name, list_days
from detectflow.store.rows import detection_to_row, event_to_row
from detectflow.store.tables import detection_event_logs as events
from detectflow.store.tables import detection_person_days as person_days
from detectflow.store.tables import detections, metadata
from tests.store.builders import frame, result


def _not_a_partition(name: str | None, kind: str, _parents: object) -> bool:
    """Day partitions are made at run time, not declared in tables.py."""
    return not (kind == "table" and name is not None and is_partition_name(name))


def _diff(db: Database) -> list[object]:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "include_name": _not_a_partition,
            },
        )
        return list(compare_metadata(context, metadata))


def test_migrated_schema_matches_tables_py(db: Database) -> None:
    assert _diff(db) == []


def test_upgrade_is_idempotent(db: Database) -> None:
    db.upgrade()
    db.upgrade()
    assert _diff(db) == []
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn)
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert context.get_current_revision() == head


def test_upgrade_creates_the_guides_indexes(db: Database) -> None:
    inspector = inspect(db.engine)
    detection_indexes = {i["name"] for i in inspector.get_indexes("detections")}
    assert {
        "ix_detections_camera_id",
        "ix_detections_created_at",
        "ix_detections_is_processed",
        "ix_detections_frame_id",
        "ix_detections_person_id",
    } <= detection_indexes
    event_indexes = {i["name"] for i in inspector.get_indexes("detection_event_logs")}
    assert {
        "ix_detection_event_logs_camera_id",
        "ix_detection_event_logs_created_at",
        "ix_detection_event_logs_event_type",
    } <= event_indexes
    queue_indexes = {i["name"] for i in inspector.get_indexes("detection_processing_queue")}
    assert "ix_detection_processing_queue_claim" in queue_indexes


def test_a_fresh_database_has_no_tables_until_upgrade(database_url: str, secret_key: str) -> None:
    db = Database(database_url, secret_key=secret_key)
    try:
        assert "detections" not in inspect(db.engine).get_table_names()
        db.upgrade()
        assert set(metadata.tables) <= set(inspect(db.engine).get_table_names())
    finally:
        db.dispose()


def test_two_processes_upgrading_at_once_both_succeed(database_url: str, secret_key: str) -> None:
    script = (
        "import sys; from detectflow.store import Database; "
        "db = Database(sys.argv[1], secret_key=sys.argv[2]); db.upgrade(); db.dispose()"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, database_url, secret_key],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = [(p.wait(timeout=60), p.stderr.read() if p.stderr else "") for p in procs]
    for p in procs:
        if p.stderr:
            p.stderr.close()
    assert outcomes == [(0, ""), (0, "")]
    db = Database(database_url, secret_key=secret_key)
    try:
        assert _diff(db) == []
    finally:
        db.dispose()


def test_threads_of_one_process_upgrading_at_once_take_turns(
    database_url: str, secret_key: str
) -> None:
    databases = [Database(database_url, secret_key=secret_key) for _ in range(2)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(db: Database) -> None:
        try:
            barrier.wait()
            db.upgrade()
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(db,)) for db in databases]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert errors == []
        assert _diff(databases[0]) == []
    finally:
        for db in databases:
            db.dispose()


def test_0005_converts_existing_rows_keeping_every_row_and_column(
    database_url: str, secret_key: str
) -> None:
    """An unpartitioned database with rows (revision 0004) upgrades in place."""
    db = Database(database_url, secret_key=secret_key)
    try:
        run_upgrade(db.engine, "0004")
        now = utcnow()
        frames = [
            frame(frame_id=f"old-{d}", timestamp=now - timedelta(days=d)) for d in (0, 3, 500)
        ]
        made = [result(f, detections=2) for f in frames]
        with db.engine.begin() as conn:
            rows = [detection_to_row(d) for r in made for d in r.detections]
            for row in rows:
                del row["track_id"]  # added by 0007: not a column at 0004
            conn.execute(detections.insert(), rows)
            conn.execute(events.insert(), [event_to_row(e) for r in made for e in r.events])

        db.upgrade()

        assert _diff(db) == []
        assert db.list_detections(limit=100)[1] == 6
        assert {e.id for e in db.list_events()[0]} == {r.events[0].id for r in made}
        stored = db.get_detection(made[1].detections[1].id)
        assert stored == made[1].detections[1]
        if db.is_postgres:
            with db.engine.connect() as conn:
                days = {p.day for p in list_days(conn, "detections")}
            assert (now - timedelta(days=3)).date() in days
            assert (now - timedelta(days=500)).date() not in days  # a year back at most
        db.record_results([made[1]])  # a replay after the upgrade still conflicts
        assert db.list_detections()[1] == 6
    finally:
        db.dispose()


def test_0006_fills_person_counts_from_the_stored_detections(
    database_url: str, secret_key: str
) -> None:
    db = Database(database_url, secret_key=secret_key)
    try:
        run_upgrade(db.engine, "0005")
        now = utcnow()
        made = [
            result(frame(frame_id=f"f-{n}", timestamp=now - timedelta(days=n % 2)), detections=1)
            for n in range(5)
        ]
        found = [replace(d, person_id="p-7") for r in made for d in r.detections]
        rows = [detection_to_row(d) for d in found]
        for row in rows:
            del row["track_id"]  # added by 0007: not a column at 0005
        with db.engine.begin() as conn:
            conn.execute(detections.insert(), rows)

        db.upgrade()

        assert db.detection_statistics().most_detected_person == "p-7"
        db.record_results([replace(made[0], detections=(found[0],))])  # a replay adds nothing
        with db.engine.connect() as conn:
            counts = conn.execute(
                select(person_days.c.day, person_days.c.detection_count).order_by("day")
            ).all()
        today = datetime(now.year, now.month, now.day, tzinfo=UTC)
        assert [(day, n) for day, n in counts] == [(today - timedelta(days=1), 2), (today, 3)]
    finally:
        db.dispose()
