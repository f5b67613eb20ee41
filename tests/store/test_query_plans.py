"""The list queries' plans on PostgreSQL use the composite indexes, never a sequential scan.

The database gets enough generated rows (``generate_series``) over a few
day partitions, and statistics (``ANALYZE``), for the planner to choose as
it would in production. Each list call's page query is captured as it is
sent and explained with the same parameters.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, text

from detectflow.core.models import utcnow
from detectflow.store import Database
from detectflow.store.partitions import ensure_days
from tests.databases import migrated_database

pytestmark = pytest.mark.postgres

ROWS = 60_000
DAYS = 3
SPAN = DAYS * 86_400

_FILL = [
    f"""INSERT INTO detections (id, camera_id, frame_id, detection_type, label, confidence,
        bbox_x, bbox_y, bbox_width, bbox_height, person_id, is_processed, processing_status,
        created_at, updated_at)
    SELECT md5('d' || g)::uuid::text, 'cam-' || (g % 50), 'f-' || g,
        (ARRAY['person', 'vehicle'])[1 + g % 2], 'x', 0.5 + (g % 50) / 100.0, 0, 0, 0.1, 0.1,
        CASE WHEN g % 10 = 0 THEN 'person-' || (g % 100) END, true, 'completed', t, t
    FROM generate_series(1, {ROWS}) AS g,
        LATERAL (SELECT now() - (g * {SPAN}.0 / {ROWS}) * interval '1 second' AS t) AS x""",
    f"""INSERT INTO detection_event_logs (id, camera_id, event_type, severity, message,
        person_id, source_system, created_at, updated_at)
    SELECT md5('e' || g)::uuid::text, 'cam-' || (g % 50),
        CASE WHEN g % 40 = 0 THEN 'detection_failed' ELSE 'detection_completed' END,
        CASE WHEN g % 40 = 0 THEN 'warning' ELSE 'info' END, 'm',
        CASE WHEN g % 10 = 0 THEN 'person-' || (g % 100) END, 'test', t, t
    FROM generate_series(1, {ROWS}) AS g,
        LATERAL (SELECT now() - (g * {SPAN}.0 / {ROWS}) * interval '1 second' AS t) AS x""",
]


# One tumbling row per camera, type and minute, as the recorder would have added them.
_WINDOWS = """INSERT INTO detection_window_stats (camera_id, detection_type, window_kind,
    window_start, window_end, detection_count, confidence_sum, max_confidence,
    distinct_persons, late_count, revision, is_final, updated_at)
SELECT camera_id, detection_type, 'tumbling', date_trunc('minute', created_at),
    date_trunc('minute', created_at) + interval '1 minute', count(*), sum(confidence),
    max(confidence), 0, 0, 1, true, now()
FROM detections GROUP BY 1, 2, 4"""


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    from cryptography.fernet import Fernet

    from tests.databases import throwaway_postgres

    with (
        throwaway_postgres("detectflow_plans") as url,
        migrated_database(url, Fernet.generate_key().decode()) as db,
    ):
        today = utcnow().date()
        with db.engine.begin() as conn:
            ensure_days(conn, [today - timedelta(days=n) for n in range(DAYS + 1)])
            for sql in _FILL:
                conn.execute(text(sql))
            conn.execute(text(_WINDOWS))
        db.roll_up_windows()
        with db.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
        yield db


def _plan_of_page(db: Database, call: Callable[[], object]) -> dict[str, Any]:
    """The plan of the page query (the one ordered newest first) that ``call`` sends."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "ORDER BY" in statement:
            sent.append((statement, params))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        call()
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    assert len(sent) == 1, sent
    statement, params = sent[0]
    with db.engine.connect() as conn:
        plan = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", params).scalar_one()
    return dict(plan[0]["Plan"])


def _scans(node: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """(node type, index, relation) of every scan in the plan."""
    found = []
    if "Scan" in node["Node Type"]:
        found.append((node["Node Type"], node.get("Index Name"), node.get("Relation Name")))
    for child in node.get("Plans", []):
        found.extend(_scans(child))
    return found


def _empty(db: Database) -> set[str]:
    """Partitions with no rows (days ahead, the default): a scan of one reads nothing."""
    with db.engine.connect() as conn:
        names = conn.execute(
            text("SELECT relname FROM pg_class WHERE relkind = 'r' AND reltuples <= 0")
        ).scalars()
        return set(names)


def _uses(db: Database, plan: dict[str, Any], index_suffix: str) -> None:
    scans = _scans(plan)
    assert scans, json.dumps(plan)[:2000]
    empty = _empty(db)
    assert not [s for s in scans if s[0] == "Seq Scan" and s[2] not in empty], scans
    used = {name for _, name, _ in scans if name}
    assert any(name.endswith(index_suffix) for name in used), (index_suffix, scans)


def _cursor(db: Database, **filters: Any) -> tuple[Any, str]:
    page = db.page_events(limit=50, **filters)
    assert page.last_key is not None
    return page.last_key


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({}, "created_at_idx"),
        ({"camera_id": "cam-7"}, "camera_id_created_at_idx"),
        ({"event_type": "detection_failed"}, "event_type_created_at_idx"),
        ({"severity": "warning"}, "severity_created_at_idx"),
        ({"person_id": "person-10"}, "person_id_created_at_idx"),
    ],
    ids=["newest", "camera", "event_type", "severity", "person"],
)
def test_event_pages_use_the_matching_index_first_and_deep(
    filled: Database, filters: dict[str, str], index: str
) -> None:
    _uses(filled, _plan_of_page(filled, lambda: filled.page_events(limit=50, **filters)), index)
    after = _cursor(filled, **filters)
    deep = _plan_of_page(filled, lambda: filled.page_events(limit=50, after=after, **filters))
    _uses(filled, deep, index)


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({}, "created_at_idx"),
        ({"camera_id": "cam-7"}, "camera_id_created_at_idx"),
        ({"person_id": "person-10"}, "person_id_created_at_idx"),
    ],
    ids=["newest", "camera", "person"],
)
def test_detection_pages_use_the_matching_index(
    filled: Database, filters: dict[str, str], index: str
) -> None:
    since = utcnow() - timedelta(days=1)
    plan = _plan_of_page(filled, lambda: filled.page_detections(limit=50, since=since, **filters))
    _uses(filled, plan, index)


def test_a_keyset_page_prunes_the_days_after_its_cursor(filled: Database) -> None:
    """A cursor two days back reads no partition of the days after it."""
    old = filled.page_events(
        limit=1, after=(utcnow() - timedelta(days=2), "ffffffff"), camera_id="cam-3"
    )
    assert old.items and old.items[0].created_at < utcnow() - timedelta(days=2)


def test_totals_past_the_exact_limit_are_flagged_estimates(filled: Database) -> None:
    everything = filled.page_events(limit=10)
    assert everything.total_is_estimate
    assert everything.total > 10_000
    assert abs(everything.total - ROWS) < ROWS * 0.2
    one_camera = filled.page_events(limit=10, camera_id="cam-7")
    assert not one_camera.total_is_estimate
    assert one_camera.total == ROWS // 50


@pytest.mark.parametrize("camera_id", [None, "cam-7"], ids=["all", "camera"])
def test_statistics_scan_no_detections_and_no_whole_window_partition(
    filled: Database, camera_id: str | None
) -> None:
    """/statistics reads rollups and recent windows through indexes; of the detections
    only the newest one's time, from the end of an index."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, params))

    event.listen(filled.engine, "before_cursor_execute", capture)
    try:
        stats = filled.detection_statistics(camera_id)
    finally:
        event.remove(filled.engine, "before_cursor_execute", capture)
    assert stats.total_detections == (ROWS if camera_id is None else ROWS // 50)
    empty = _empty(filled)
    with filled.engine.connect() as conn:
        for statement, params in sent:
            plan = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", params).scalar_one()
            scans = _scans(plan[0]["Plan"])
            seq = [s for s in scans if s[0] == "Seq Scan" and s[2] not in empty]
            # the rollup rows (days, hours) are a small table of their own kind
            assert not [s for s in seq if not _small(filled, s[2])], (statement, scans)
            assert all(
                "Index" in kind for kind, _, rel in scans if rel and rel.startswith("detections")
            ), (statement, scans)
            if camera_id is not None and "GROUP BY" in statement and "window_stats" in statement:
                # one camera's windows through its own index, not every camera's minutes
                used = {n for _, n, _ in scans if n and n.startswith("detection_window_stats")}
                assert any("camera_id_window_kind" in name for name in used), scans


def _small(db: Database, relation: str | None) -> bool:
    """A relation of under 10,000 rows (by the planner's count): scanning it is cheap."""
    with db.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT reltuples FROM pg_class WHERE relname = :r"), {"r": relation}
        ).scalar()
    return rows is not None and rows < 10_000
