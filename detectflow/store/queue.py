"""The processing queue: enqueue, claim, release, count.

Claiming is the one place where several workers race. On PostgreSQL the
candidate rows are locked with ``FOR UPDATE SKIP LOCKED`` inside the same
UPDATE, so a row another worker is claiming is skipped instead of waited on
or taken twice; on SQLite the caller runs it in a ``BEGIN IMMEDIATE``
transaction, which serializes writers.

Claiming is also the dataflow's per-frame read, so on PostgreSQL it skips
SQLAlchemy: one SQL text, run on the driver's cursor with binary results.
Measured on ``bench/flow_throughput.py``'s rows (64-row claims, 1.5 KB
frames): through SQLAlchemy (a statement built per call, rows read one by
one) a claim cost ~20 us of CPU per row; psycopg's text-format results alone
cost ~7 us per row (the frame bytes travel hex-encoded); binary results in
autocommit cost ~4 us per row, round trip included.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, func, select, update
from sqlalchemy.exc import DBAPIError

from detectflow.core.models import Frame, QueueItem, QueueStatus
from detectflow.store.dialects import insert_ignore
from detectflow.store.rows import queue_item_from_row, queue_row_for_frame
from detectflow.store.tables import detection_processing_queue as queue
from detectflow.store.types import UTCDateTime

__all__ = ["ClaimedRow", "claim", "claim_rows", "enqueue", "get_item", "release_stale", "stats"]


class ClaimedRow(NamedTuple):
    """A claimed row as the dataflow needs it: the frame and its place in the queue.

    The outcome columns (detections_count, processing_time_ms, error_message)
    are not read back; a claimed row has none yet. Timestamps are aware UTC.
    """

    id: str
    camera_id: str
    frame_data: bytes
    priority: int
    frame_number: int | None
    frame_timestamp: datetime
    retry_count: int
    max_retries: int
    created_at: datetime


_CLAIMED = tuple(queue.c[name] for name in ClaimedRow._fields)

# Exactly the claim index's order: with ``id`` added as a tie-break, rows
# queued in one statement (same created_at) had to be sorted in full on
# every claim (PostgreSQL's incremental sort: ~15 ms per claim at 20,000
# pending rows). Ties are taken in index order instead.
_PICKED = (
    select(queue.c.id)
    .where(queue.c.status == QueueStatus.PENDING.value)
    .order_by(queue.c.priority.desc(), queue.c.created_at)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
_CLAIM = (
    update(queue)
    .where(queue.c.id.in_(_PICKED.scalar_subquery()))
    .values(status=QueueStatus.PROCESSING.value, updated_at=bindparam("now", type_=UTCDateTime()))
    .returning(*_CLAIMED)
)
"""The claim for SQLite (and any other dialect): built once, so SQLAlchemy's
compiled cache finds it without building the statement again."""

_PG_CLAIM = f"""
WITH claimed AS (
    UPDATE {queue.name}
    SET status = '{QueueStatus.PROCESSING.value}', updated_at = %(now)s
    WHERE id IN (
        SELECT id FROM {queue.name}
        WHERE status = '{QueueStatus.PENDING.value}'
        ORDER BY priority DESC, created_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    )
    RETURNING {", ".join(ClaimedRow._fields)}
)
SELECT id, camera_id, frame_data, priority, frame_number,
    frame_timestamp AT TIME ZONE 'UTC' AS frame_timestamp, retry_count, max_retries,
    created_at AT TIME ZONE 'UTC' AS created_at
FROM claimed
ORDER BY priority DESC, created_at, id
"""
"""``_CLAIM`` as PostgreSQL text, for the driver's cursor. The server sorts the
claimed rows (RETURNING has no defined order) and hands timestamps over as
UTC wall time: psycopg reads a naive timestamp ~0.3 us faster than one in
the session's time zone."""


def enqueue(conn: Connection, frame: Frame, *, max_retries: int, now: datetime) -> QueueItem:
    insert_ignore(conn, queue, [queue_row_for_frame(frame, max_retries=max_retries, now=now)])
    item = get_item(conn, frame.frame_id)
    if item is None:  # pragma: no cover - the row was inserted or already there
        raise RuntimeError(f"queue row {frame.frame_id} vanished right after insert")
    return item


def claim_rows(conn: Connection, limit: int, *, now: datetime) -> list[ClaimedRow]:
    """Mark up to ``limit`` pending rows processing: highest priority first, then oldest.

    On PostgreSQL the statement is atomic alone, so ``conn`` may be in autocommit.
    """
    if limit <= 0:
        return []
    params = {"limit": limit, "now": now}
    if conn.dialect.name == "postgresql":
        return _claim_postgres(conn, params)
    rows = [ClaimedRow._make(row) for row in conn.execute(_CLAIM, params)]
    # RETURNING has no defined order; restore the claim order.
    rows.sort(key=lambda row: (-row.priority, row.created_at, row.id))
    return rows


def claim(conn: Connection, limit: int, *, now: datetime) -> list[QueueItem]:
    processing = QueueStatus.PROCESSING.value
    return [
        QueueItem(
            id=row.id,
            camera_id=row.camera_id,
            frame_data=row.frame_data,
            priority=row.priority,
            status=processing,
            frame_number=row.frame_number,
            frame_timestamp=row.frame_timestamp,
            retry_count=row.retry_count,
            max_retries=row.max_retries,
            created_at=row.created_at,
            updated_at=now,
        )
        for row in claim_rows(conn, limit, now=now)
    ]


def _claim_postgres(conn: Connection, params: Mapping[str, Any]) -> list[ClaimedRow]:
    """``_PG_CLAIM`` on the driver's cursor, binary results; driver errors are raised
    as SQLAlchemy's (a lost connection invalidated), like ``conn.execute`` does."""
    driver = conn.connection.driver_connection
    assert driver is not None
    dbapi_error = conn.dialect.loaded_dbapi.Error
    try:
        with driver.cursor(binary=True) as cursor:
            fetched = cursor.execute(_PG_CLAIM, params).fetchall()
    except dbapi_error as exc:
        lost = conn.dialect.is_disconnect(exc, driver, None)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            _PG_CLAIM, params, exc, dbapi_error, connection_invalidated=lost, dialect=conn.dialect
        ) from exc
    # Timestamps arrive as naive UTC wall time (AT TIME ZONE 'UTC').
    return [
        ClaimedRow(
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5].replace(tzinfo=UTC),
            row[6],
            row[7],
            row[8].replace(tzinfo=UTC),
        )
        for row in fetched
    ]


def release_stale(conn: Connection, older_than: timedelta, *, now: datetime) -> int:
    stmt = (
        update(queue)
        .where(queue.c.status == QueueStatus.PROCESSING.value)
        .where(queue.c.updated_at < now - older_than)
        .values(status=QueueStatus.PENDING.value, updated_at=now)
    )
    return conn.execute(stmt).rowcount


def stats(conn: Connection) -> dict[str, int]:
    counts = {status.value: 0 for status in QueueStatus}
    rows = conn.execute(select(queue.c.status, func.count()).group_by(queue.c.status))
    for status, count in rows:
        counts[status] = counts.get(status, 0) + int(count)
    counts["total"] = sum(counts.values())
    return counts


def get_item(conn: Connection, item_id: str) -> QueueItem | None:
    row = conn.execute(select(queue).where(queue.c.id == item_id)).mappings().first()
    return None if row is None else queue_item_from_row(row)
