from __future__ import annotations

import subprocess
import sys
import threading

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from detectflow.store import Database
from detectflow.store.migrate import alembic_config
from detectflow.store.tables import metadata


def _diff(db: Database) -> list[object]:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
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
