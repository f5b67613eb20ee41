"""Retention: the guide's daily cleanup, by partition on PostgreSQL, in batches on SQLite.

On PostgreSQL the big tables are partitioned by day
(:mod:`~detectflow.store.partitions`), so retention drops every day
partition older than the cutoff: milliseconds whatever their size, and no
dead rows for VACUUM. Retention there is by whole UTC days: the cutoff is
rounded down to midnight, so a cleanup keeps at least what it was asked to
keep. The few rows of other times (the default partition) and the finished
rows of the processing queue are deleted in batches.

On SQLite (plain tables), and for those rows, each batch is its own short
transaction: a month of rows deleted in one statement would hold the
database's only write lock for as long as it runs, stalling the dataflow's
sink. Writers get in between batches, and an interrupted cleanup keeps what
it already deleted. Queue rows are deleted only once finished (completed,
failed, skipped), so a cleanup never takes a frame away from a worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import ColumnElement, Connection, Engine, Table, delete, select, text, tuple_

from detectflow.core.models import QueueStatus
from detectflow.store import partitions
from detectflow.store.engine import BEGIN_MODE
from detectflow.store.tables import detection_event_logs as events
from detectflow.store.tables import detection_person_days as person_days
from detectflow.store.tables import detection_processing_queue as queue
from detectflow.store.tables import detection_window_stats as windows
from detectflow.store.tables import detections

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "FINISHED",
    "LOCK_TIMEOUT",
    "TABLES",
    "CleanupReport",
    "cleanup",
    "delete_batch",
    "delete_in_batches",
    "ensure_partitions",
]

FINISHED = (QueueStatus.COMPLETED.value, QueueStatus.FAILED.value, QueueStatus.SKIPPED.value)

DEFAULT_BATCH_SIZE = 5_000
"""Rows per transaction: big enough that a batch costs far more than its commit,
small enough that a batch takes milliseconds, not seconds."""

LOCK_TIMEOUT = "10s"
"""How long dropping or attaching a partition may wait for its lock. A long read
holding the parent would otherwise queue every new query behind the DDL;
giving up leaves the work to the next run."""

TABLES = ("detections", "events", "queue", "windows", "persons")
"""The keys of every count this module returns, in the order tables are cleaned."""

_TABLES: dict[str, Table] = {
    "detections": detections,
    "events": events,
    "queue": queue,
    "windows": windows,
    "persons": person_days,
}
_PARTITIONED = {"detections": detections.name, "events": events.name, "windows": windows.name}


@dataclass(frozen=True, slots=True)
class CleanupReport:
    """What a cleanup removed, per key of :data:`TABLES`.

    ``deleted`` counts rows deleted one by one (exact); ``dropped`` counts day
    partitions dropped and ``dropped_rows`` the rows they held as the
    planner last counted them (PostgreSQL's statistics, not a scan).
    """

    deleted: dict[str, int]
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    dropped_rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))


def _old(name: str, cutoff: datetime) -> list[ColumnElement[bool]]:
    table = _TABLES[name]
    if name == "queue":
        return [table.c.status.in_(FINISHED), table.c.updated_at < cutoff]
    if name == "windows":
        return [table.c.window_start < cutoff]
    if name == "persons":
        # only whole days before the cutoff: a count is never split
        return [table.c.day <= cutoff - timedelta(days=1)]
    return [table.c.created_at < cutoff]


def delete_batch(conn: Connection, name: str, cutoff: datetime, limit: int) -> int:
    """Delete at most ``limit`` old rows of one table (a key of :data:`TABLES`)."""
    table = _TABLES[name]
    key = list(table.primary_key.columns)
    # DELETE ... LIMIT is not portable; a sub-select of keys is, on both databases.
    # The key holds the partition column, so PostgreSQL looks in the right partition only.
    chosen = select(*key).where(*_old(name, cutoff)).limit(limit)
    return int(conn.execute(delete(table).where(tuple_(*key).in_(chosen))).rowcount)


def delete_in_batches(
    engine: Engine,
    cutoff: datetime,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[str, int], None] | None = None,
    tables: tuple[str, ...] = TABLES,
) -> dict[str, int]:
    """Delete rows older than ``cutoff`` from ``tables`` (default: all),
    ``batch_size`` per transaction.

    ``on_batch(table, deleted)`` hears each committed batch (progress output).
    Returns the totals per table.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    totals = dict.fromkeys(tables, 0)
    for name in tables:
        while True:
            with _write(engine) as conn:
                deleted = delete_batch(conn, name, cutoff, batch_size)
            totals[name] += deleted
            if deleted and on_batch is not None:
                on_batch(name, deleted)
            if deleted < batch_size:
                break
    return totals


def cleanup(
    engine: Engine,
    cutoff: datetime,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[str, int], None] | None = None,
) -> CleanupReport:
    """Remove rows older than ``cutoff``: day partitions dropped where the tables have
    them (the cutoff then rounds down to midnight UTC), the rest in batches."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    report = CleanupReport(deleted={})
    by_day = cutoff
    with _write(engine) as conn:
        if partitions.is_partitioned(conn, detections.name):
            by_day = partitions.day_start(cutoff.date())
            conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            dropped = partitions.drop_days_before(conn, by_day)
            for name, table in _PARTITIONED.items():
                report.dropped[name] = len(dropped.get(table, []))
                report.dropped_rows[name] = sum(p.estimated_rows for p in dropped.get(table, []))
    # What partitions hold goes by whole days (the rest of a day goes with its partition);
    # the queue is not partitioned and keeps the exact cutoff.
    for name in TABLES:
        table_cutoff = by_day if name in _PARTITIONED else cutoff
        report.deleted.update(
            delete_in_batches(
                engine, table_cutoff, batch_size=batch_size, on_batch=on_batch, tables=(name,)
            )
        )
    return report


def ensure_partitions(engine: Engine, today: date, days_ahead: int) -> list[str]:
    """Day partitions from yesterday to ``days_ahead`` after ``today`` (PostgreSQL; a no-op
    on SQLite). Returns the partitions made."""
    days = [today + timedelta(days=n) for n in range(-1, days_ahead + 1)]
    with engine.connect() as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        return partitions.ensure_days(conn, days)


@contextmanager
def _write(engine: Engine) -> Iterator[Connection]:
    """A write transaction; on SQLite ``BEGIN IMMEDIATE`` (as the repository's writes)."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.execution_options(**{BEGIN_MODE: "IMMEDIATE"})
        with conn.begin():
            yield conn
