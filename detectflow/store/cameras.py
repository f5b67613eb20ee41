"""Cameras as configuration: the statements behind :class:`~detectflow.store.Database`'s
camera methods.

The URL is encrypted on the way in and decrypted on the way out, like a
provider's api key, so what readers get is the URL to open and what a dump
shows is ciphertext.

Readers follow changes by polling :func:`version`: a digest of every
camera's id and ``updated_at``. It changes with any add, remove or change,
whatever order concurrent writers commit in (a ``max(updated_at)`` would
miss a writer that committed an older time after the poll), and costs one
index scan of a table that holds at most thousands of rows.
``last_error`` is status, not configuration: setting it leaves
``updated_at`` alone, so a failing camera does not make every reader reload.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, select, update

from detectflow.core.camera_sync import SyncPlan
from detectflow.core.cameras import Camera
from detectflow.core.redact import redact_text
from detectflow.store.crypto import ApiKeyCipher
from detectflow.store.rows import CAMERA_FIELDS, camera_from_row, camera_to_row, check_changeable
from detectflow.store.tables import cameras

__all__ = [
    "CameraExistsError",
    "apply_plan",
    "create",
    "get",
    "list_all",
    "page",
    "remove",
    "set_last_error",
    "update_fields",
    "version",
]

MAX_ERROR_CHARS = 2000
"""A reason longer than this is cut: it is shown in tables and pages, not archived."""


class CameraExistsError(ValueError):
    """A camera with this id exists already (the API answers 409)."""


def create(conn: Connection, camera: Camera, cipher: ApiKeyCipher) -> Camera:
    conn.execute(cameras.insert(), [camera_to_row(camera, cipher)])
    return _get_existing(conn, camera.id, cipher)


def get(conn: Connection, camera_id: str, cipher: ApiKeyCipher) -> Camera | None:
    row = conn.execute(select(cameras).where(cameras.c.id == camera_id)).mappings().first()
    return None if row is None else camera_from_row(row, cipher)


def _get_existing(conn: Connection, camera_id: str, cipher: ApiKeyCipher) -> Camera:
    camera = get(conn, camera_id, cipher)
    if camera is None:  # pragma: no cover - written just before, in the same transaction
        raise KeyError(camera_id)
    return camera


def page(
    conn: Connection,
    cipher: ApiKeyCipher,
    *,
    limit: int,
    offset: int,
    enabled: bool | None = None,
) -> tuple[list[Camera], int]:
    """A page by id, and how many cameras match."""
    query = select(cameras)
    count = select(func.count()).select_from(cameras)
    if enabled is not None:
        query = query.where(cameras.c.enabled.is_(enabled))
        count = count.where(cameras.c.enabled.is_(enabled))
    rows = conn.execute(query.order_by(cameras.c.id).limit(limit).offset(offset)).mappings()
    items = [camera_from_row(row, cipher) for row in rows]
    return items, int(conn.execute(count).scalar_one())


def list_all(conn: Connection, cipher: ApiKeyCipher, *, enabled_only: bool = False) -> list[Camera]:
    query = select(cameras).order_by(cameras.c.id)
    if enabled_only:
        query = query.where(cameras.c.enabled.is_(True))
    return [camera_from_row(row, cipher) for row in conn.execute(query).mappings()]


def update_fields(
    conn: Connection,
    camera_id: str,
    changes: Mapping[str, Any],
    cipher: ApiKeyCipher,
    *,
    now: datetime,
) -> Camera:
    """KeyError when there is no such camera; ValueError for a field that is not
    configuration (see :data:`~detectflow.store.rows.CAMERA_FIELDS`)."""
    check_changeable("camera", changes, CAMERA_FIELDS)
    values: dict[str, Any] = {k: v for k, v in changes.items() if k != "url"}
    if "url" in changes:
        values["url_encrypted"] = cipher.encrypt(changes["url"])
    if "options" in values:
        values["options"] = dict(values["options"] or {})
    values["updated_at"] = now
    result = conn.execute(update(cameras).where(cameras.c.id == camera_id).values(values))
    if result.rowcount == 0:
        raise KeyError(camera_id)
    return _get_existing(conn, camera_id, cipher)


def remove(conn: Connection, camera_id: str) -> bool:
    return conn.execute(delete(cameras).where(cameras.c.id == camera_id)).rowcount > 0


def set_last_error(conn: Connection, camera_id: str, error: str | None) -> bool:
    """Record (or clear, with None) why the camera cannot be read; credentials in
    the reason are redacted. False when there is no such camera."""
    if error is not None:
        error = redact_text(error)[:MAX_ERROR_CHARS]
    statement = update(cameras).where(cameras.c.id == camera_id).values(last_error=error)
    return conn.execute(statement).rowcount > 0


def version(conn: Connection) -> str:
    digest = hashlib.sha256()
    for camera_id, updated_at in conn.execute(
        select(cameras.c.id, cameras.c.updated_at).order_by(cameras.c.id)
    ):
        digest.update(f"{camera_id}\0{updated_at.isoformat()}\n".encode())
    return digest.hexdigest()[:32]


def apply_plan(conn: Connection, plan: SyncPlan, cipher: ApiKeyCipher, *, now: datetime) -> None:
    """Add, change and remove what ``plan`` says (the caller's one transaction)."""
    if plan.added:
        rows = [
            camera_to_row(_stamped(c, now), cipher)
            for c in plan.added  # timestamps are the store's, not the file's
        ]
        conn.execute(cameras.insert(), rows)
    for change in plan.changed:
        wanted = {name: getattr(change.camera, name) for name in change.fields}
        update_fields(conn, change.camera.id, wanted, cipher, now=now)
    if plan.removed:
        conn.execute(delete(cameras).where(cameras.c.id.in_(plan.removed)))


def _stamped(camera: Camera, now: datetime) -> Camera:
    return replace(camera, created_at=now, updated_at=now, last_error=None)
