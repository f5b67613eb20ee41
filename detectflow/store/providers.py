"""Provider configs. At most one is active: activating one deactivates the rest
in the same transaction, so readers never see two active providers."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select, update

from detectflow.core.models import ProbeResult, ProviderConfig, TestStatus
from detectflow.store.crypto import ApiKeyCipher
from detectflow.store.rows import (
    PROVIDER_FIELDS,
    check_changeable,
    provider_from_row,
    provider_to_row,
)
from detectflow.store.tables import detection_provider_configs as providers

__all__ = ["active", "create", "get", "list_all", "record_test", "remove", "update_fields"]


def create(conn: Connection, config: ProviderConfig, cipher: ApiKeyCipher) -> ProviderConfig:
    if config.is_active:
        _deactivate_others(conn, config.id, now=config.updated_at)
    conn.execute(providers.insert(), [provider_to_row(config, cipher)])
    created = get(conn, config.id, cipher)
    if created is None:  # pragma: no cover - inserted just above
        raise RuntimeError(f"provider {config.id} vanished right after insert")
    return created


def update_fields(
    conn: Connection,
    provider_id: str,
    changes: Mapping[str, Any],
    cipher: ApiKeyCipher,
    *,
    now: datetime,
) -> ProviderConfig:
    check_changeable("provider", changes, PROVIDER_FIELDS)
    values: dict[str, Any] = {k: v for k, v in changes.items() if k != "api_key"}
    if "api_key" in changes:
        values["api_key_encrypted"] = cipher.encrypt(changes["api_key"])
    if "options" in values:
        values["options"] = dict(values["options"] or {})
    if "test_status" in values:
        values["test_status"] = str(values["test_status"])
    values["updated_at"] = now
    if values.get("is_active"):
        _deactivate_others(conn, provider_id, now=now)
    result = conn.execute(update(providers).where(providers.c.id == provider_id).values(values))
    if result.rowcount == 0:
        raise KeyError(provider_id)
    updated = get(conn, provider_id, cipher)
    if updated is None:  # pragma: no cover - updated just above
        raise KeyError(provider_id)
    return updated


def record_test(
    conn: Connection,
    provider_id: str,
    result: ProbeResult,
    cipher: ApiKeyCipher,
    *,
    now: datetime,
) -> ProviderConfig:
    changes = {
        "test_status": TestStatus.SUCCESS if result.ok else TestStatus.FAILED,
        "last_tested": now,
        "last_error": None if result.ok else (result.error or result.message),
    }
    return update_fields(conn, provider_id, changes, cipher, now=now)


def remove(conn: Connection, provider_id: str) -> bool:
    return conn.execute(delete(providers).where(providers.c.id == provider_id)).rowcount > 0


def get(conn: Connection, provider_id: str, cipher: ApiKeyCipher) -> ProviderConfig | None:
    row = conn.execute(select(providers).where(providers.c.id == provider_id)).mappings().first()
    return None if row is None else provider_from_row(row, cipher)


def active(conn: Connection, cipher: ApiKeyCipher) -> ProviderConfig | None:
    query = (
        select(providers)
        .where(providers.c.is_active.is_(True))
        .order_by(providers.c.updated_at.desc())
        .limit(1)
    )
    row = conn.execute(query).mappings().first()
    return None if row is None else provider_from_row(row, cipher)


def list_all(conn: Connection, cipher: ApiKeyCipher) -> list[ProviderConfig]:
    query = select(providers).order_by(providers.c.created_at, providers.c.id)
    return [provider_from_row(row, cipher) for row in conn.execute(query).mappings()]


def _deactivate_others(conn: Connection, provider_id: str, *, now: datetime) -> None:
    conn.execute(
        update(providers)
        .where(providers.c.id != provider_id)
        .where(providers.c.is_active.is_(True))
        .values(is_active=False, updated_at=now)
    )
