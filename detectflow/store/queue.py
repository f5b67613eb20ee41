"""The processing queue: enqueue, claim, lease, count.

Claiming is the one place where several workers race. On PostgreSQL the
candidate rows are locked with ``FOR UPDATE SKIP LOCKED`` inside the same
UPDATE, so a row another worker is claiming is skipped instead of waited on
or taken twice; on SQLite the caller runs it in a ``BEGIN IMMEDIATE``
transaction, which serializes writers.

Claims are leases. A claimed row names its holder (``lease_owner``: one
flow run) and an expiry (``lease_expires_at``); the holder pushes the expiry
forward for all its rows with one statement (:func:`renew_leases`) while it
lives, and any running flow puts rows whose lease expired back to
``pending`` (:func:`expire_leases`, which records an event per camera and
holder saying how many). So a crashed run's frames are picked up within a
lease by whoever runs, whether or not anything restarts. Every claim counts
a delivery (``deliveries``): a frame that kills the worker holding it comes
back again and again, and the source fails it once it was delivered more
than ``max_deliveries`` times. A pending row delivered
:data:`SUSPECT_DELIVERIES` times or more already lost two holders: the
ordinary claim leaves it alone and the source claims it by itself
(``suspects=True``), so a poison frame does not take its neighbours down
with it again.

Claiming is also the dataflow's per-frame read, so on PostgreSQL it skips
SQLAlchemy: one SQL text, run on the driver's cursor with binary results.
Measured on ``bench/flow_throughput.py``'s rows (64-row claims, 1.5 KB
frames): through SQLAlchemy (a statement built per call, rows read one by
one) a claim cost ~20 us of CPU per row; psycopg's text-format results alone
cost ~7 us per row (the frame bytes travel hex-encoded); binary results in
autocommit cost ~4 us per row, round trip included.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, and_, bindparam, func, or_, select, update
from sqlalchemy.exc import DBAPIError

from detectflow.core.ids import new_id
from detectflow.core.models import (
    DetectionEvent,
    EventType,
    Frame,
    QueueItem,
    QueueStatus,
    Severity,
)
from detectflow.store.dialects import insert_ignore
from detectflow.store.rows import event_to_row, queue_item_from_row, queue_row_for_frame
from detectflow.store.tables import detection_event_logs as events
from detectflow.store.tables import detection_processing_queue as queue
from detectflow.store.types import UTCDateTime

__all__ = [
    "FINAL_STATUSES",
    "LEASE_ATTR",
    "SUSPECT_DELIVERIES",
    "Adoption",
    "ClaimedRow",
    "ExpiredLeases",
    "FrameIdConflictError",
    "Lease",
    "Queued",
    "adopt",
    "claim",
    "claim_rows",
    "enqueue",
    "enqueue_many",
    "expire_leases",
    "get_item",
    "has_suspects",
    "held_by",
    "lease_expired_event",
    "renew_leases",
    "stats",
    "unfinished",
]

SUSPECT_DELIVERIES = 2
"""A pending row handed out this often already lost two holders: claimed alone."""

LEASE_ATTR = "queue_lease"
"""The frame attribute naming the run that claimed a queue frame: the recorder
finishes such a frame's row only if no other holder finished it first."""

FINAL_STATUSES = frozenset(
    {QueueStatus.COMPLETED.value, QueueStatus.FAILED.value, QueueStatus.SKIPPED.value}
)
"""A row in one of these has its one outcome: nothing claims, adopts or resubmits it."""

_PENDING = QueueStatus.PENDING.value
_PROCESSING = QueueStatus.PROCESSING.value


class FrameIdConflictError(ValueError):
    """The frame id is already queued for another camera (ids are the rows' keys)."""

    def __init__(self, frame_id: str, camera_id: str) -> None:
        super().__init__(
            f"frame_id {frame_id!r} is already queued for another camera; "
            "frame ids must be unique across cameras (send another frame_id)"
        )
        self.frame_id = frame_id
        self.camera_id = camera_id


class Lease(NamedTuple):
    """A claim's terms: who holds the rows (one flow run) and until when."""

    owner: str
    expires_at: datetime


class ClaimedRow(NamedTuple):
    """A claimed row as the dataflow needs it: the frame and its place in the queue.

    The outcome columns (detections_count, processing_time_ms, error_message)
    are not read back; a claimed row has none yet. Timestamps are aware UTC.
    ``deliveries`` counts this claim.
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
    deliveries: int


_CLAIMED = tuple(queue.c[name] for name in ClaimedRow._fields)


def _picked(suspects: bool) -> Any:
    # Exactly the claim index's order: with ``id`` added as a tie-break, rows
    # queued in one statement (same created_at) had to be sorted in full on
    # every claim (PostgreSQL's incremental sort: ~15 ms per claim at 20,000
    # pending rows). Ties are taken in index order instead.
    delivered = queue.c.deliveries >= SUSPECT_DELIVERIES
    return (
        select(queue.c.id)
        .where(queue.c.status == _PENDING, delivered if suspects else ~delivered)
        .order_by(queue.c.priority.desc(), queue.c.created_at)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
    )


def _claim_statement(suspects: bool) -> Any:
    return (
        update(queue)
        .where(queue.c.id.in_(_picked(suspects).scalar_subquery()))
        .values(
            status=_PROCESSING,
            updated_at=bindparam("now", type_=UTCDateTime()),
            lease_owner=bindparam("owner"),
            lease_expires_at=bindparam("expires", type_=UTCDateTime()),
            deliveries=queue.c.deliveries + 1,
        )
        .returning(*_CLAIMED)
    )


_CLAIMS = {False: _claim_statement(False), True: _claim_statement(True)}
"""The claims for SQLite (and any other dialect): built once, so SQLAlchemy's
compiled cache finds them without building the statements again."""


def _pg_claim(suspects: bool) -> str:
    test = ">=" if suspects else "<"
    return f"""
WITH claimed AS (
    UPDATE {queue.name}
    SET status = '{_PROCESSING}', updated_at = %(now)s, lease_owner = %(owner)s,
        lease_expires_at = %(expires)s, deliveries = deliveries + 1
    WHERE id IN (
        SELECT id FROM {queue.name}
        WHERE status = '{_PENDING}' AND deliveries {test} {SUSPECT_DELIVERIES}
        ORDER BY priority DESC, created_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    )
    RETURNING {", ".join(ClaimedRow._fields)}
)
SELECT id, camera_id, frame_data, priority, frame_number,
    frame_timestamp AT TIME ZONE 'UTC' AS frame_timestamp, retry_count, max_retries,
    created_at AT TIME ZONE 'UTC' AS created_at, deliveries
FROM claimed
ORDER BY priority DESC, created_at, id
"""


_PG_CLAIMS = {False: _pg_claim(False), True: _pg_claim(True)}
"""The claims as PostgreSQL text, for the driver's cursor. The server sorts the
claimed rows (RETURNING has no defined order) and hands timestamps over as
UTC wall time: psycopg reads a naive timestamp ~0.3 us faster than one in
the session's time zone."""


def enqueue(conn: Connection, frame: Frame, *, max_retries: int, now: datetime) -> QueueItem:
    """Insert a pending row (an existing one with this id and camera is kept: a retry).

    Raises :class:`FrameIdConflictError` when the id is another camera's row:
    the frame would otherwise be reported queued while it is not.
    """
    insert_ignore(conn, queue, [queue_row_for_frame(frame, max_retries=max_retries, now=now)])
    item = get_item(conn, frame.frame_id)
    if item is None:  # pragma: no cover - the row was inserted or already there
        raise RuntimeError(f"queue row {frame.frame_id} vanished right after insert")
    if item.camera_id != frame.camera_id:
        raise FrameIdConflictError(frame.frame_id, frame.camera_id)
    return item


class Queued(NamedTuple):
    """What a client is told about a frame it queued."""

    id: str
    camera_id: str
    status: str
    priority: int


def enqueue_many(
    conn: Connection, frames: Sequence[Frame], *, max_retries: int, now: datetime
) -> list[Queued | FrameIdConflictError]:
    """:func:`enqueue` for a batch: one insert and one read of the rows' keys (never
    their bytes), each frame's row or the conflict that kept it out, in order."""
    if not frames:
        return []
    rows = [queue_row_for_frame(f, max_retries=max_retries, now=now) for f in frames]
    insert_ignore(conn, queue, list({row["id"]: row for row in rows}.values()))
    ids = list({f.frame_id for f in frames})
    found = {
        row.id: Queued(row.id, row.camera_id, str(row.status), row.priority)
        for row in conn.execute(
            select(queue.c.id, queue.c.camera_id, queue.c.status, queue.c.priority).where(
                queue.c.id.in_(ids)
            )
        )
    }
    out: list[Queued | FrameIdConflictError] = []
    for f in frames:
        row = found[f.frame_id]
        out.append(
            row if row.camera_id == f.camera_id else FrameIdConflictError(f.frame_id, f.camera_id)
        )
    return out


def claim_rows(
    conn: Connection, limit: int, *, now: datetime, lease: Lease, suspects: bool = False
) -> list[ClaimedRow]:
    """Lease up to ``limit`` pending rows: highest priority first, then oldest.

    ``suspects`` claims among rows delivered :data:`SUSPECT_DELIVERIES` times
    or more instead of the others. On PostgreSQL the statement is atomic
    alone, so ``conn`` may be in autocommit.
    """
    if limit <= 0:
        return []
    params = {"limit": limit, "now": now, "owner": lease.owner, "expires": lease.expires_at}
    if conn.dialect.name == "postgresql":
        return _claim_postgres(conn, _PG_CLAIMS[suspects], params)
    rows = [ClaimedRow._make(row) for row in conn.execute(_CLAIMS[suspects], params)]
    # RETURNING has no defined order; restore the claim order.
    rows.sort(key=lambda row: (-row.priority, row.created_at, row.id))
    return rows


def claim(conn: Connection, limit: int, *, now: datetime, lease: Lease) -> list[QueueItem]:
    return [
        QueueItem(
            id=row.id,
            camera_id=row.camera_id,
            frame_data=row.frame_data,
            priority=row.priority,
            status=_PROCESSING,
            frame_number=row.frame_number,
            frame_timestamp=row.frame_timestamp,
            retry_count=row.retry_count,
            max_retries=row.max_retries,
            created_at=row.created_at,
            updated_at=now,
        )
        for row in claim_rows(conn, limit, now=now, lease=lease)
    ]


def _claim_postgres(conn: Connection, sql: str, params: Mapping[str, Any]) -> list[ClaimedRow]:
    """A claim on the driver's cursor, binary results; driver errors are raised
    as SQLAlchemy's (a lost connection invalidated), like ``conn.execute`` does."""
    driver = conn.connection.driver_connection
    assert driver is not None
    dbapi_error = conn.dialect.loaded_dbapi.Error
    try:
        with driver.cursor(binary=True) as cursor:
            fetched = cursor.execute(sql, params).fetchall()
    except dbapi_error as exc:
        lost = conn.dialect.is_disconnect(exc, driver, None)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            sql, params, exc, dbapi_error, connection_invalidated=lost, dialect=conn.dialect
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
            row[9],
        )
        for row in fetched
    ]


def renew_leases(conn: Connection, lease: Lease) -> int:
    """Push the expiry of every row ``lease.owner`` holds to ``lease.expires_at``.

    One statement for all of a run's rows, whatever their number. Rows locked
    right now are skipped, not waited for: they are being finished (the
    results writer's transaction), and waiting on it from the other side of
    its lock order is how the two deadlocked.
    """
    held = (
        select(queue.c.id)
        .where(queue.c.status == _PROCESSING, queue.c.lease_owner == lease.owner)
        .with_for_update(skip_locked=True)
    )
    stmt = (
        update(queue)
        .where(queue.c.id.in_(held.scalar_subquery()))
        .values(lease_expires_at=lease.expires_at)
    )
    return conn.execute(stmt).rowcount


@dataclass(frozen=True, slots=True)
class ExpiredLeases:
    """Rows of one camera whose holder let its lease lapse, put back to pending."""

    owner: str | None
    camera_id: str
    count: int


def expire_leases(
    conn: Connection, *, now: datetime, unleased_after: timedelta, record: bool = True
) -> list[ExpiredLeases]:
    """Put processing rows whose lease expired back to pending; say whose they were.

    Rows with no lease at all (claimed before leases existed) count as expired
    once not touched for ``unleased_after``. With ``record``, each (holder,
    camera) gets a ``queue_lease_expired`` event in the same transaction.
    """
    lapsed = or_(
        queue.c.lease_expires_at < now,
        and_(queue.c.lease_expires_at.is_(None), queue.c.updated_at < now - unleased_after),
    )
    found = conn.execute(
        select(queue.c.id, queue.c.lease_owner, queue.c.camera_id)
        .where(queue.c.status == _PROCESSING, lapsed)
        .with_for_update(skip_locked=True)
    ).all()
    if not found:
        return []
    conn.execute(
        update(queue)
        .where(queue.c.id.in_([row.id for row in found]), queue.c.status == _PROCESSING)
        .values(status=_PENDING, lease_owner=None, lease_expires_at=None, updated_at=now)
    )
    counts: dict[tuple[str | None, str], int] = {}
    for row in found:
        key = (row.lease_owner, row.camera_id)
        counts[key] = counts.get(key, 0) + 1
    expired = [ExpiredLeases(owner, camera, n) for (owner, camera), n in counts.items()]
    if record:
        conn.execute(
            events.insert(), [event_to_row(lease_expired_event(e, now=now)) for e in expired]
        )
    return expired


def lease_expired_event(expired: ExpiredLeases, *, now: datetime) -> DetectionEvent:
    holder = expired.owner or "a run from before leases"
    return DetectionEvent(
        id=new_id(),
        camera_id=expired.camera_id,
        event_type=EventType.QUEUE_LEASE_EXPIRED,
        severity=Severity.WARNING,
        message=(
            f"{expired.count} frame(s) went back to pending: their holder {holder} "
            "stopped renewing its lease (it crashed or hangs)"
        ),
        action_taken="requeued",
        created_at=now,
        updated_at=now,
    )


@dataclass(frozen=True, slots=True)
class Adoption:
    """What :func:`adopt` found for frames resumed from a snapshot."""

    adopted: dict[str, int]
    """Row id -> deliveries, now held by the new lease: resubmit these."""
    final: frozenset[str]
    """Rows already completed, failed or skipped: never resubmit."""
    elsewhere: frozenset[str]
    """Rows another live holder has: it finishes them."""


def adopt(
    conn: Connection,
    ids: Collection[str],
    *,
    lease: Lease,
    previous_owners: Collection[str],
    now: datetime,
) -> Adoption:
    """Take over the rows of frames resumed from a recovery snapshot.

    A row is adopted when it is pending, has no live lease, or is held by one
    of ``previous_owners`` (the run that wrote the snapshot, which is gone);
    each adoption counts a delivery. Ids with no row (frames of other
    sources), and rows locked right now (another run is finishing them),
    appear in none of the results.
    """
    if not ids:
        return Adoption({}, frozenset(), frozenset())
    rows = conn.execute(
        select(queue.c.id, queue.c.status, queue.c.lease_owner, queue.c.lease_expires_at)
        .where(queue.c.id.in_(list(ids)))
        .with_for_update(skip_locked=True)
    ).all()
    final: set[str] = set()
    elsewhere: set[str] = set()
    take: list[str] = []
    previous = set(previous_owners)
    for row in rows:
        if row.status in FINAL_STATUSES:
            final.add(row.id)
        elif (
            row.status == _PENDING
            or row.lease_owner is None
            or row.lease_owner in previous
            or row.lease_expires_at is None
            or row.lease_expires_at < now
        ):
            take.append(row.id)
        else:
            elsewhere.add(row.id)
    adopted: dict[str, int] = {}
    if take:
        result = conn.execute(
            update(queue)
            .where(queue.c.id.in_(take))
            .values(
                status=_PROCESSING,
                lease_owner=lease.owner,
                lease_expires_at=lease.expires_at,
                deliveries=queue.c.deliveries + 1,
                updated_at=now,
            )
            .returning(queue.c.id, queue.c.deliveries)
        )
        adopted = {row_id: int(deliveries) for row_id, deliveries in result}
    return Adoption(adopted, frozenset(final), frozenset(elsewhere))


def has_suspects(conn: Connection) -> bool:
    """Is a pending row that already lost two holders waiting (the suspects index)?"""
    stmt = (
        select(queue.c.id)
        .where(queue.c.status == _PENDING, queue.c.deliveries >= SUSPECT_DELIVERIES)
        .limit(1)
    )
    return conn.execute(stmt).first() is not None


def held_by(conn: Connection, owner: str) -> int:
    """Rows ``owner`` holds right now."""
    stmt = (
        select(func.count())
        .select_from(queue)
        .where(queue.c.status == _PROCESSING, queue.c.lease_owner == owner)
    )
    return int(conn.execute(stmt).scalar_one())


def unfinished(conn: Connection) -> dict[str, int]:
    """{"pending", "processing"}: rows without their outcome yet."""
    counts = {_PENDING: 0, _PROCESSING: 0}
    rows = conn.execute(
        select(queue.c.status, func.count())
        .where(queue.c.status.in_(list(counts)))
        .group_by(queue.c.status)
    )
    for status, count in rows:
        counts[status] = int(count)
    return counts


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
