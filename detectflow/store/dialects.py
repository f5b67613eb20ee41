"""Statements whose SQL differs between SQLite and PostgreSQL.

The dataflow's sink writes a few hundred rows per batch, and on PostgreSQL
how they travel decides its throughput (``bench/flow_throughput.py``):

* a pipelined executemany makes the server parse, plan and run one
  statement per row;
* new rows go in with binary ``COPY`` (psycopg packs each value in C; the
  server's cheapest way in), inside a savepoint. Ids are deterministic, so
  a conflict means a replay: the savepoint is rolled back and the batch
  goes again as ``INSERT ... ON CONFLICT (<primary key>) DO NOTHING``. The
  key of a day-partitioned table holds its partition key, (id, created_at),
  so a replay conflicts only if it brings the same created_at as the first
  write: the writer must derive created_at from the frame, as it does ids;
* that insert and the queue-row update send the batch as one JSON document
  unpacked by ``json_populate_recordset``: one statement per batch, and
  ``json.dumps`` is C where psycopg's array dumper (``unnest``) is Python.

Callers may hand rows over as tuples in column order
(:func:`insert_values`, :func:`update_values`), so the hot path builds no
dict per row. Columns whose values JSON or COPY might not carry exactly
(bytes, JSON documents) take the executemany path. SQLite runs in-process, where
executemany is already the fast path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from psycopg.errors import UniqueViolation
from sqlalchemy import ColumnElement, Connection, Executable, Table, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.types import (
    BigInteger,
    Boolean,
    Float,
    Integer,
    SmallInteger,
    String,
    TypeEngine,
)

from detectflow.store.types import UTCDateTime

__all__ = [
    "BIND_PREFIX",
    "add_to_rows",
    "insert_ignore",
    "insert_new",
    "insert_values",
    "update_by_id",
    "update_values",
]

BIND_PREFIX = "b_"
"""Rows given to :func:`update_by_id` name their values ``b_<column>``; SQLAlchemy
reserves the bare column names for the SET clause of an executemany UPDATE."""

_PLAIN_TYPES = (String, Float, Integer, Boolean, UTCDateTime)
"""Column types whose values survive binary COPY and JSON into PostgreSQL unchanged."""

_COPY_TYPES: tuple[tuple[type[TypeEngine[Any]], str], ...] = (
    (UTCDateTime, "timestamptz"),
    (Boolean, "bool"),
    (BigInteger, "int8"),
    (SmallInteger, "int2"),
    (Integer, "int4"),
    (Float, "float8"),
    (String, "text"),  # varchar and text travel alike; the column still checks its length
)
"""Binary COPY type of each plain column type; subclasses before their bases."""

COPY_MIN_ROWS = 64
"""Below this many rows one ``INSERT ... SELECT FROM json_populate_recordset``
(one round trip) beats COPY in a savepoint (four: SAVEPOINT, COPY, its data,
RELEASE): an inline send-frame writes a handful of rows per group commit,
the dataflow hundreds per batch."""

_PG_QUOTE = postgresql.dialect().identifier_preparer.quote  # type: ignore[no-untyped-call]

_statements: dict[
    tuple[str, str, tuple[str, ...], tuple[tuple[str, str], ...]], TextClause | None
] = {}


def insert_ignore(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert rows whose primary key is new; rows whose key exists are left alone.

    Ids are deterministic, so a replayed batch conflicts on every row and
    writes nothing new. Every row must have the same keys, the table's
    primary key columns among them.
    """
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        columns = tuple(rows[0])
        insert_values(conn, table, columns, [tuple(row[c] for c in columns) for row in rows])
        return
    # No RETURNING: with it SQLAlchemy batches rows into multi-VALUES statements,
    # which measured ~2.5x slower than a plain executemany.
    conn.execute(
        sqlite.insert(table).on_conflict_do_nothing(index_elements=_key(table)), list(rows)
    )


def insert_values(
    conn: Connection, table: Table, columns: tuple[str, ...], rows: Sequence[Sequence[Any]]
) -> None:
    """:func:`insert_ignore` for rows given as values in ``columns`` order.

    The dataflow's sink builds its rows this way: on PostgreSQL they go to
    COPY as they are, with no dict per row.
    """
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        insert_ignore(conn, table, _mappings(columns, rows))
        return
    stmt = _statement("insert", table, columns)
    if stmt is None:
        conn.execute(
            postgresql.insert(table).on_conflict_do_nothing(index_elements=_key(table)),
            _mappings(columns, rows),
        )
    elif len(rows) < COPY_MIN_ROWS or not _copy_new_rows(conn, table, columns, rows):
        conn.execute(stmt, {"rows": _dumps(_mappings(columns, rows))})


def insert_new(
    conn: Connection, table: Table, columns: tuple[str, ...], rows: Sequence[Sequence[Any]]
) -> set[Any] | None:
    """:func:`insert_values`, saying which rows were new: None when all were
    (the common case, a COPY that met no conflict), else the new rows' ids.

    Window tallies count a detection only when its row is new, so a replay
    adds nothing to them.
    """
    if not rows:
        return None
    at = columns.index("id")
    if conn.dialect.name != "postgresql":
        ids = [row[at] for row in rows]
        existing: set[Any] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            existing.update(conn.execute(select(table.c.id).where(table.c.id.in_(chunk))).scalars())
        fresh = [row for row in rows if row[at] not in existing]
        if fresh:
            ignore = sqlite.insert(table).on_conflict_do_nothing(index_elements=_key(table))
            conn.execute(ignore, _mappings(columns, fresh))
        return None if not existing else {row[at] for row in fresh}
    stmt = _statement("insert_returning", table, columns)
    if stmt is None:
        insert = postgresql.insert(table).on_conflict_do_nothing(index_elements=_key(table))
        return set(conn.execute(insert.returning(table.c.id), _mappings(columns, rows)).scalars())
    if len(rows) >= COPY_MIN_ROWS and _copy_new_rows(conn, table, columns, rows):
        return None
    inserted = set(conn.execute(stmt, {"rows": _dumps(_mappings(columns, rows))}).scalars())
    return None if len(inserted) == len({row[at] for row in rows}) else inserted


def update_by_id(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    fallback: Executable,
) -> None:
    """Set columns of the row whose ``id`` is ``row["b_id"]`` to ``row["b_<column>"]``.

    ``fallback`` is the equivalent executemany statement (``WHERE id =
    :b_id``), used where one statement per batch is not available. As with
    an executemany, the last row wins when an id appears twice; an id with
    no row in the table matches nothing.
    """
    if not rows:
        return
    keys = tuple(rows[0])
    if BIND_PREFIX + "id" not in keys or not all(k.startswith(BIND_PREFIX) for k in keys):
        raise ValueError(f"update_by_id rows must name every value {BIND_PREFIX}<column>")
    columns = tuple(k[len(BIND_PREFIX) :] for k in keys)
    update_values(
        conn, table, columns, [tuple(row[k] for k in keys) for row in rows], fallback=fallback
    )


def update_values(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    rows: Sequence[Sequence[Any]],
    *,
    fallback: Executable,
) -> None:
    """:func:`update_by_id` for rows given as values in ``columns`` order (``id`` among them)."""
    if not rows:
        return
    stmt = _statement("update", table, columns) if conn.dialect.name == "postgresql" else None
    if stmt is None:
        keys = tuple(BIND_PREFIX + c for c in columns)
        conn.execute(fallback, _mappings(keys, rows))
        return
    at = columns.index("id")
    last = {row[at]: row for row in rows}  # the last row of an id wins, as in an executemany
    conn.execute(stmt, {"rows": _dumps(_mappings(columns, list(last.values())))})


def add_to_rows(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    updates: Mapping[str, str],
) -> None:
    """Upsert ``rows`` (one per key, all with the same columns): a new key is inserted,
    an existing one updated by ``updates`` (column -> how, see below) from its
    stored row and the one given.

    ``how`` is ``"add"`` (stored + given), ``"max"`` (the larger), ``"count"``
    (stored + 1) or ``"given"`` (the given value). On PostgreSQL the batch is one
    statement over a JSON document (one round trip, where an executemany
    pipelines a statement per row: it measured ~30% of an inline send-frame's
    recording); on SQLite an executemany, in-process and already fast. Rows are
    written in the order given: sort them by key so two writers lock alike.
    """
    unknown = set(updates.values()) - set(_SET_SQL)
    if unknown:
        raise ValueError(f"unknown update(s) {sorted(unknown)}")
    if not rows:
        return
    columns = tuple(rows[0])
    postgres = conn.dialect.name == "postgresql"
    stmt = _statement("add", table, columns, tuple(updates.items())) if postgres else None
    if stmt is not None:
        conn.execute(stmt, {"rows": _dumps(rows)})
        return
    ins = (postgresql if postgres else sqlite).insert(table)
    sets = {
        column: _set_value(how, table.c[column], ins.excluded[column], postgres)
        for column, how in updates.items()
    }
    conn.execute(ins.on_conflict_do_update(index_elements=_key(table), set_=sets), list(rows))


def _set_value(
    how: str, stored: ColumnElement[Any], given: ColumnElement[Any], postgres: bool
) -> ColumnElement[Any]:
    if how == "add":
        return stored + given
    if how == "max":  # MAX of two values on SQLite, GREATEST on PostgreSQL
        return (func.greatest if postgres else func.max)(stored, given)
    if how == "count":
        return stored + 1
    return given  # "given"


_SET_SQL = {
    "add": "{t}.{c} + excluded.{c}",
    "max": "GREATEST({t}.{c}, excluded.{c})",
    "count": "{t}.{c} + 1",
    "given": "excluded.{c}",
}


def _key(table: Table) -> list[str]:
    """The conflict target: the primary key, which holds the partition key where there is one."""
    return [c.name for c in table.primary_key.columns]


def _mappings(columns: tuple[str, ...], rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(columns, row, strict=True)) for row in rows]


def _copy_new_rows(
    conn: Connection, table: Table, columns: tuple[str, ...], rows: Sequence[Sequence[Any]]
) -> bool:
    """COPY the rows in a savepoint; False (and nothing written) if an id already exists.

    Binary COPY: psycopg packs each value in C, where text COPY formats
    floats and timestamps one by one (measured ~10x the CPU per row). It
    takes only aware timestamps; a batch holding a naive one (which means
    UTC, ``UTCDateTime``'s rule) is sent again with them converted, so the
    rows of the models, aware by contract, are never touched.
    """
    try:
        try:
            _copy(conn, table, columns, rows)
        except TypeError:  # a naive timestamp (or a value of a wrong type: raised again)
            _copy(conn, table, columns, [[_utc(v) for v in row] for row in rows])
    except UniqueViolation:
        return False
    return True


def _copy(
    conn: Connection, table: Table, columns: tuple[str, ...], rows: Sequence[Sequence[Any]]
) -> None:
    quote = conn.dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in columns)
    sql = f"COPY {quote(table.name)} ({names}) FROM STDIN (FORMAT BINARY)"
    with conn.begin_nested():
        driver = conn.connection.driver_connection
        assert driver is not None
        with driver.cursor() as cursor, cursor.copy(sql) as copy:
            copy.set_types([_copy_type(table.c[c].type) for c in columns])
            for row in rows:
                copy.write_row(row)


def _copy_type(column_type: TypeEngine[Any]) -> str:
    """The PostgreSQL type binary COPY must send for a plain column (exactly its width)."""
    for kind, name in _COPY_TYPES:
        if isinstance(column_type, kind):
            if isinstance(column_type, Float) and (column_type.precision or 53) <= 24:
                return "float4"
            return name
    raise ValueError(f"no COPY type for {column_type!r}")  # _PLAIN_TYPES and this list differ


def _statement(
    kind: str,
    table: Table,
    columns: tuple[str, ...],
    updates: tuple[tuple[str, str], ...] = (),
) -> TextClause | None:
    """The (cached) one-statement form for these columns; None if a column is not plain."""
    key = (kind, table.name, columns, updates)
    if key in _statements:
        return _statements[key]
    made: TextClause | None = None
    if all(isinstance(table.c[c].type, _PLAIN_TYPES) for c in columns):
        quote = _PG_QUOTE
        name = quote(table.name)
        names = ", ".join(quote(c) for c in columns)
        source = f"json_populate_recordset(NULL::{name}, CAST(:rows AS json))"
        if kind == "add":
            target = ", ".join(quote(c) for c in _key(table))
            sets = ", ".join(
                f"{quote(c)} = " + _SET_SQL[how].format(t=name, c=quote(c)) for c, how in updates
            )
            sql = (
                f"INSERT INTO {name} ({names}) SELECT {names} FROM {source} "
                f"ON CONFLICT ({target}) DO UPDATE SET {sets}"
            )
        elif kind in ("insert", "insert_returning"):
            target = ", ".join(quote(c) for c in _key(table))
            sql = (
                f"INSERT INTO {name} ({names}) SELECT {names} FROM {source} "
                f"ON CONFLICT ({target}) DO NOTHING"
            )
            if kind == "insert_returning":
                sql += " RETURNING id"
        else:
            sets = ", ".join(f"{quote(c)} = v.{quote(c)}" for c in columns if c != "id")
            sql = f"UPDATE {name} SET {sets} FROM {source} AS v WHERE {name}.id = v.id"
        made = text(sql)
    _statements[key] = made
    return made


def _dumps(rows: Sequence[Mapping[str, Any]]) -> str:
    # NaN and infinities are not JSON; a value like that fails loudly, never silently.
    return json.dumps(rows, default=_timestamp, allow_nan=False, separators=(",", ":"))


def _utc(value: Any) -> Any:
    """As :class:`UTCDateTime` binds a timestamp: naive means UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _timestamp(value: object) -> str:
    if isinstance(value, datetime):
        return str(_utc(value).isoformat())
    raise TypeError(f"cannot store a {type(value).__name__} in a plain column")
