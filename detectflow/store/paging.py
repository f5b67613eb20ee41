"""Keyset pages, newest first: the one paging code of every list (detections,
events, tracked objects).

``after`` is the (time, id) of the last row already seen, so a page deep in a
billion-row table reads ``limit`` index entries, not everything before them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Connection, RowMapping, Select, Table, func, select, tuple_

__all__ = ["EXACT_TOTAL_UP_TO", "Keyset", "Page", "page_rows"]

T = TypeVar("T")

Keyset = tuple[datetime, str]
"""(created_at, id) of a row: where a keyset page starts (strictly older rows)."""

EXACT_TOTAL_UP_TO = 10_000
"""Totals up to this many rows are counted exactly (a count of at most this many
index entries: a few milliseconds); above it PostgreSQL's planner estimates,
and the page says so. Counting every row of a camera over 30 days at fleet
rates is seconds, and grows with the table."""


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list, newest first.

    ``total`` is exact unless ``total_is_estimate``. ``last_key`` is the keyset
    of the last item when the page is full (there may be more), else None.
    """

    items: list[T]
    total: int
    total_is_estimate: bool
    last_key: Keyset | None


def page_rows(
    conn: Connection,
    table: Table,
    where: list[ColumnElement[bool]],
    convert: Callable[[RowMapping], T],
    limit: int,
    offset: int,
    after: Keyset | None,
    *,
    exact_total: bool,
    time_column: str = "created_at",
) -> Page[T]:
    """One page, newest first by ``time_column`` (id breaks ties so pages never
    overlap), and the total. Every list endpoint pages through here."""
    if limit < 0 or offset < 0:
        raise ValueError("limit and offset must be >= 0")
    when = table.c[time_column]
    query = select(table).where(*where)
    if after is not None:
        query = query.where(tuple_(when, table.c.id) < tuple_(*after))
    query = query.order_by(when.desc(), table.c.id.desc()).limit(limit)
    rows = list(conn.execute(query.offset(offset) if offset else query).mappings())
    total, estimated = _total(conn, table, where, exact=exact_total)
    last = rows[-1] if rows and len(rows) == limit else None
    return Page(
        [convert(row) for row in rows],
        total,
        estimated,
        None if last is None else (last[time_column], last["id"]),
    )


def _total(
    conn: Connection, table: Table, where: list[ColumnElement[bool]], *, exact: bool
) -> tuple[int, bool]:
    """The number of rows matching ``where``, and whether it is an estimate.

    SQLite (the embedded, single-machine store) always counts. PostgreSQL
    counts up to :data:`EXACT_TOTAL_UP_TO` rows unless ``exact``; past that
    it answers with the planner's estimate (never below what it counted).
    """
    if exact or conn.dialect.name != "postgresql":
        count = select(func.count()).select_from(table).where(*where)
        return int(conn.execute(count).scalar_one()), False
    capped = select(table.c.id).where(*where).limit(EXACT_TOTAL_UP_TO + 1).subquery()
    counted = int(conn.execute(select(func.count()).select_from(capped)).scalar_one())
    if counted <= EXACT_TOTAL_UP_TO:
        return counted, False
    return max(counted, _planner_rows(conn, select(table.c.id).where(*where))), True


def _planner_rows(conn: Connection, query: Select[Any]) -> int:
    """PostgreSQL's estimate of the rows ``query`` returns (``EXPLAIN``, nothing run)."""
    compiled = query.compile(dialect=conn.dialect)
    result = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled.string}", compiled.params)
    plan = result.scalar_one()
    return int(plan[0]["Plan"]["Plan Rows"])
