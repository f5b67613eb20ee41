"""Retention: the guide's daily cleanup jobs.

Queue rows are deleted only once finished (completed, failed, skipped), so a
cleanup never takes a frame away from a worker.

:func:`delete_before` deletes everything in the caller's one transaction.
:func:`delete_in_batches` is what a live deployment wants: a month of
detections can be millions of rows, and one DELETE of them would hold its
locks (on SQLite, the database's only write lock) for as long as it runs,
stalling the dataflow's sink. Each batch is its own short transaction, so
writers get in between batches, and an interrupted cleanup keeps what it
already deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import Connection, Engine, Table, delete, select

from detectflow.core.models import QueueStatus
from detectflow.store.engine import BEGIN_MODE
from detectflow.store.tables import detection_event_logs as events
from detectflow.store.tables import detection_processing_queue as queue
from detectflow.store.tables import detections

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "FINISHED",
    "TABLES",
    "delete_batch",
    "delete_before",
    "delete_in_batches",
]

FINISHED = (QueueStatus.COMPLETED.value, QueueStatus.FAILED.value, QueueStatus.SKIPPED.value)

DEFAULT_BATCH_SIZE = 5_000
"""Rows per transaction: big enough that a batch costs far more than its commit,
small enough that a batch takes milliseconds, not seconds."""

TABLES = ("detections", "events", "queue")
"""The keys of every count this module returns, in the order tables are cleaned."""

_TABLES: dict[str, Table] = {"detections": detections, "events": events, "queue": queue}


def delete_before(conn: Connection, cutoff: datetime) -> dict[str, int]:
    """Delete rows created before ``cutoff``; returns how many per table."""
    return {
        "detections": conn.execute(
            delete(detections).where(detections.c.created_at < cutoff)
        ).rowcount,
        "events": conn.execute(delete(events).where(events.c.created_at < cutoff)).rowcount,
        "queue": conn.execute(
            delete(queue).where(queue.c.status.in_(FINISHED)).where(queue.c.updated_at < cutoff)
        ).rowcount,
    }


def delete_batch(conn: Connection, name: str, cutoff: datetime, limit: int) -> int:
    """Delete at most ``limit`` old rows of one table (a key of :data:`TABLES`)."""
    table = _TABLES[name]
    if name == "queue":
        old = [table.c.status.in_(FINISHED), table.c.updated_at < cutoff]
    else:
        old = [table.c.created_at < cutoff]
    # DELETE ... LIMIT is not portable; a sub-select of ids is, on both databases.
    ids = select(table.c.id).where(*old).limit(limit).scalar_subquery()
    return int(conn.execute(delete(table).where(table.c.id.in_(ids))).rowcount)


def delete_in_batches(
    engine: Engine,
    cutoff: datetime,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Delete what :func:`delete_before` would, ``batch_size`` rows per transaction.

    ``on_batch(table, deleted)`` hears each committed batch (progress output).
    Returns the totals per table.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    totals = dict.fromkeys(TABLES, 0)
    for name in TABLES:
        while True:
            with _write(engine) as conn:
                deleted = delete_batch(conn, name, cutoff, batch_size)
            totals[name] += deleted
            if deleted and on_batch is not None:
                on_batch(name, deleted)
            if deleted < batch_size:
                break
    return totals


@contextmanager
def _write(engine: Engine) -> Iterator[Connection]:
    """A write transaction; on SQLite ``BEGIN IMMEDIATE`` (as the repository's writes)."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.execution_options(**{BEGIN_MODE: "IMMEDIATE"})
        with conn.begin():
            yield conn
