"""Day partitions of the big tables on PostgreSQL: made ahead, filled, dropped.

detections, events and window statistics are declared ``PARTITION BY RANGE``
on their time column (:data:`PARTITIONED`). Each holds one partition per
UTC day, named ``<table>_pYYYYMMDD``, and a ``<table>_default`` partition
that takes a row of any other time, so an import or a replay of old
footage never fails for want of a partition.

Done in our own code rather than with pg_partman: managed services do not
all offer that extension (and those that do ship different major versions
with different APIs, and need a superuser-like role to create it), while
what we need is three statements: create a day, move the rows the default
partition holds for it, drop a day. See docs/scaling.md, "Storage".

A day is made in three steps so nothing blocks the writers: the table is
created standalone (``LIKE`` the parent, so it has every column, whatever
later migrations added), rows the default partition already holds for that
day move into it, and ``ATTACH PARTITION`` (which takes only a SHARE UPDATE
EXCLUSIVE lock on the parent) joins it. Concurrent callers (every process
runs :func:`ensure_days` at start) take turns on an advisory lock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Connection, text

__all__ = [
    "DAYS_AHEAD",
    "PARTITIONED",
    "PartitionInfo",
    "day_start",
    "default_name",
    "drop_days_before",
    "ensure_days",
    "is_partition_name",
    "is_partitioned",
    "list_days",
    "partition_name",
]

PARTITIONED: dict[str, str] = {
    "detections": "created_at",
    "detection_event_logs": "created_at",
    "detection_window_stats": "window_start",
}
"""Each partitioned table and the time column it is partitioned on."""

DAYS_AHEAD = 7
"""Days made ahead of today by ``db upgrade`` and the maintenance schedule: a week
of outage of the schedule still leaves every new row a day partition."""

_LOCK_KEY = 0x64660005
"""pg_advisory_xact_lock key serializing partition changes between processes."""

_NAME = re.compile(r"^(?P<table>.+)_(?:p(?P<day>\d{8})|default)$")


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    """One day partition: its table name, its day and its row count as the planner knows it."""

    name: str
    day: date
    estimated_rows: int


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def default_name(table: str) -> str:
    return f"{table}_default"


def is_partition_name(name: str) -> bool:
    """True for a partition of one of :data:`PARTITIONED` (schema comparisons skip them)."""
    found = _NAME.match(name)
    return found is not None and found["table"] in PARTITIONED


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def is_partitioned(conn: Connection, table: str) -> bool:
    """True on PostgreSQL once migration 0005 has made ``table`` partitioned."""
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.execute(
        text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table}
    ).scalar()
    return kind == "p"


def list_days(conn: Connection, table: str) -> list[PartitionInfo]:
    """The day partitions of ``table``, oldest first (the default partition is not a day)."""
    rows = conn.execute(
        text(
            "SELECT c.relname, c.reltuples FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(:t)"
        ),
        {"t": table},
    ).all()
    days = []
    for name, tuples in rows:
        found = _NAME.match(name)
        if found is None or found["day"] is None or found["table"] != table:
            continue
        day = datetime.strptime(found["day"], "%Y%m%d").date()
        days.append(PartitionInfo(name, day, max(int(tuples), 0)))
    return sorted(days, key=lambda p: p.day)


def ensure_days(conn: Connection, days: Iterable[date]) -> list[str]:
    """Make each missing day partition of every partitioned table; returns the names made.

    Runs in the caller's transaction; does nothing on SQLite or before
    migration 0005. Rows the default partition holds for a new day move into it.
    """
    wanted = sorted(set(days))
    tables = [t for t in PARTITIONED if is_partitioned(conn, t)]
    if not wanted or not tables:
        return []
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    made = []
    for table in tables:
        have = {p.day for p in list_days(conn, table)}
        for day in wanted:
            if day not in have:
                _make_day(conn, table, PARTITIONED[table], day)
                made.append(partition_name(table, day))
    return made


def _make_day(conn: Connection, table: str, column: str, day: date) -> None:
    name, default = partition_name(table, day), default_name(table)
    lower, upper = day_start(day), day_start(day + timedelta(days=1))
    bounds = {"lower": lower, "upper": upper}
    conn.execute(
        text(f'CREATE TABLE "{name}" (LIKE "{table}" INCLUDING DEFAULTS INCLUDING CONSTRAINTS)')
    )
    # The CHECK lets ATTACH skip scanning the new table; it is redundant once attached.
    conn.execute(
        text(
            f'ALTER TABLE "{name}" ADD CONSTRAINT "{name}_bounds" CHECK '
            f"(\"{column}\" >= '{lower.isoformat()}' AND \"{column}\" < '{upper.isoformat()}')"
        )
    )
    if conn.execute(text("SELECT to_regclass(:d)"), {"d": default}).scalar() is not None:
        conn.execute(
            text(
                f'WITH moved AS (DELETE FROM "{default}" '
                f'WHERE "{column}" >= :lower AND "{column}" < :upper RETURNING *) '
                f'INSERT INTO "{name}" SELECT * FROM moved'
            ),
            bounds,
        )
    conn.execute(
        text(
            f'ALTER TABLE "{table}" ATTACH PARTITION "{name}" '
            f"FOR VALUES FROM ('{lower.isoformat()}') TO ('{upper.isoformat()}')"
        )
    )
    conn.execute(text(f'ALTER TABLE "{name}" DROP CONSTRAINT "{name}_bounds"'))


def drop_days_before(conn: Connection, cutoff: datetime) -> dict[str, list[PartitionInfo]]:
    """Drop every day partition that ends at or before ``cutoff``; what was dropped, per table.

    Dropping a table is a catalogue change: milliseconds whatever its size,
    and no dead rows left for VACUUM. Rows of the default partition are not
    touched here (the caller deletes them in batches).
    """
    tables = [t for t in PARTITIONED if is_partitioned(conn, t)]
    dropped: dict[str, list[PartitionInfo]] = {t: [] for t in tables}
    if not tables:
        return dropped
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    for table in tables:
        for part in list_days(conn, table):
            if day_start(part.day + timedelta(days=1)) <= cutoff:
                # A brief ACCESS EXCLUSIVE lock on the parent (DETACH ... CONCURRENTLY
                # is refused while a default partition exists); callers set a lock_timeout.
                conn.execute(text(f'DROP TABLE "{part.name}"'))
                dropped[table].append(part)
    return dropped
