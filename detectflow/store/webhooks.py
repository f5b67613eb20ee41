"""Webhook subscriptions and the record of their deliveries.

A subscription's secret signs every delivery, so it is kept encrypted like a
provider's api key (:class:`~detectflow.store.crypto.ApiKeyCipher`): a
database dump alone cannot forge deliveries. Delivery rows are written by
the delivery worker in batches (:func:`save_deliveries` inserts a row the
first time and updates it after each later try), never by the flow itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, delete, func, select, update

from detectflow.store.crypto import ApiKeyCipher
from detectflow.store.tables import webhook_deliveries as deliveries
from detectflow.store.tables import webhooks

__all__ = [
    "DELIVERY_STATUSES",
    "WEBHOOK_FIELDS",
    "Delivery",
    "Webhook",
    "create",
    "get",
    "list_all",
    "list_deliveries",
    "remove",
    "save_deliveries",
    "update_fields",
]

DELIVERY_STATUSES = ("retrying", "delivered", "failed", "dropped")
"""``retrying``: a try failed and another is due at ``next_attempt_at``; ``failed``:
every try failed (``last_error`` says why); ``dropped``: the delivery queue was
full, never tried."""

WEBHOOK_FIELDS = frozenset({"url", "event_types", "cameras", "secret", "enabled"})


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    url: str
    event_types: tuple[str, ...]
    cameras: tuple[str, ...]
    """Empty: every camera."""
    secret: str
    enabled: bool
    created_at: datetime
    updated_at: datetime

    def wants(self, event_type: str, camera_id: str) -> bool:
        return (
            self.enabled
            and event_type in self.event_types
            and (not self.cameras or camera_id in self.cameras)
        )


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    webhook_id: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    last_error: str | None
    response_code: int | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime
    updated_at: datetime


def _to_row(webhook: Webhook, cipher: ApiKeyCipher) -> dict[str, Any]:
    return {
        "id": webhook.id,
        "url": webhook.url,
        "event_types": list(webhook.event_types),
        "cameras": list(webhook.cameras),
        "secret_encrypted": cipher.encrypt(webhook.secret),
        "enabled": webhook.enabled,
        "created_at": webhook.created_at,
        "updated_at": webhook.updated_at,
    }


def _from_row(row: RowMapping, cipher: ApiKeyCipher) -> Webhook:
    return Webhook(
        id=row["id"],
        url=row["url"],
        event_types=tuple(row["event_types"]),
        cameras=tuple(row["cameras"]),
        secret=cipher.decrypt(row["secret_encrypted"]) or "",
        enabled=row["enabled"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def create(conn: Connection, webhook: Webhook, cipher: ApiKeyCipher) -> Webhook:
    conn.execute(webhooks.insert(), [_to_row(webhook, cipher)])
    created = get(conn, webhook.id, cipher)
    if created is None:  # pragma: no cover - inserted just above
        raise RuntimeError(f"webhook {webhook.id} vanished right after insert")
    return created


def update_fields(
    conn: Connection,
    webhook_id: str,
    changes: Mapping[str, Any],
    cipher: ApiKeyCipher,
    *,
    now: datetime,
) -> Webhook:
    """Change the named fields; raises KeyError when there is no such webhook."""
    unknown = sorted(set(changes) - WEBHOOK_FIELDS)
    if unknown:
        raise ValueError(f"cannot change webhook field(s) {', '.join(unknown)}")
    values: dict[str, Any] = {k: v for k, v in changes.items() if k != "secret"}
    if "secret" in changes:
        values["secret_encrypted"] = cipher.encrypt(changes["secret"])
    for name in ("event_types", "cameras"):
        if name in values:
            values[name] = list(values[name])
    values["updated_at"] = now
    result = conn.execute(update(webhooks).where(webhooks.c.id == webhook_id).values(values))
    if result.rowcount == 0:
        raise KeyError(webhook_id)
    updated = get(conn, webhook_id, cipher)
    if updated is None:  # pragma: no cover - updated just above
        raise KeyError(webhook_id)
    return updated


def remove(conn: Connection, webhook_id: str) -> bool:
    """Delete a webhook and its deliveries (SQLite does not enforce the cascade)."""
    conn.execute(delete(deliveries).where(deliveries.c.webhook_id == webhook_id))
    return conn.execute(delete(webhooks).where(webhooks.c.id == webhook_id)).rowcount > 0


def get(conn: Connection, webhook_id: str, cipher: ApiKeyCipher) -> Webhook | None:
    row = conn.execute(select(webhooks).where(webhooks.c.id == webhook_id)).mappings().first()
    return None if row is None else _from_row(row, cipher)


def list_all(conn: Connection, cipher: ApiKeyCipher) -> list[Webhook]:
    query = select(webhooks).order_by(webhooks.c.created_at, webhooks.c.id)
    return [_from_row(row, cipher) for row in conn.execute(query).mappings()]


_DELIVERY_COLUMNS = tuple(f.name for f in fields(Delivery))


def save_deliveries(conn: Connection, records: Sequence[Delivery]) -> int:
    """Insert new rows, update known ones (by id); rows of webhooks deleted
    meanwhile are skipped. Returns how many were written."""
    latest = {r.id: r for r in records}  # a batch may hold several states of one delivery
    if not latest:
        return 0
    owners = {r.webhook_id for r in latest.values()}
    alive = set(conn.execute(select(webhooks.c.id).where(webhooks.c.id.in_(owners))).scalars())
    wanted = [r for r in latest.values() if r.webhook_id in alive]
    if not wanted:
        return 0
    known = set(
        conn.execute(
            select(deliveries.c.id).where(deliveries.c.id.in_([r.id for r in wanted]))
        ).scalars()
    )
    fresh = [{c: getattr(r, c) for c in _DELIVERY_COLUMNS} for r in wanted if r.id not in known]
    if fresh:
        conn.execute(deliveries.insert(), fresh)
    for r in wanted:
        if r.id in known:
            values = {c: getattr(r, c) for c in _DELIVERY_COLUMNS if c not in ("id", "created_at")}
            conn.execute(update(deliveries).where(deliveries.c.id == r.id).values(values))
    return len(wanted)


def list_deliveries(
    conn: Connection,
    webhook_id: str,
    *,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Delivery], int]:
    """A page of a webhook's deliveries, newest first, and how many there are."""
    where = [deliveries.c.webhook_id == webhook_id]
    if status is not None:
        where.append(deliveries.c.status == status)
    total = conn.execute(select(func.count()).select_from(deliveries).where(*where)).scalar_one()
    query = (
        select(deliveries)
        .where(*where)
        .order_by(deliveries.c.created_at.desc(), deliveries.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    rows = conn.execute(query).mappings()
    return [Delivery(**{c: row[c] for c in _DELIVERY_COLUMNS}) for row in rows], int(total)
