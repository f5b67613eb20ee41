"""API keys for the server: the key format, scopes, and the SQL that keeps them.

A key reads ``dfk_<id>_<secret>``: ``id`` is 12 hex characters, public (it
names the key in listings, logs and ``keys revoke``) and is how a presented
key is looked up; ``secret`` is 32 random bytes in hex. Only a SHA-256 of the
whole key is stored, so a copy of the database does not hand out keys.

Why SHA-256 and not bcrypt/scrypt/argon2: slow hashes exist to protect
*guessable* secrets (passwords) from offline guessing. A key holds 256 random
bits; no amount of guessing finds a preimage of its hash, so a slow hash would
only cost every request milliseconds of CPU and buy nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Connection, RowMapping, insert, select, update

from detectflow.core.cameras import check_camera_id
from detectflow.store.tables import api_keys

__all__ = [
    "KEY_PATTERN",
    "MAX_NAME_LENGTH",
    "ApiKey",
    "Scope",
    "create",
    "generate_key",
    "get",
    "hash_key",
    "key_id_of",
    "list_all",
    "revoke",
    "verify",
]

KEY_PATTERN = re.compile(r"dfk_([0-9a-f]{12})_([0-9a-f]{64})")
MAX_NAME_LENGTH = 255
_ID_PATTERN = re.compile(r"[0-9a-f]{12}")


class Scope(StrEnum):
    """What a key may do; each scope includes the ones before it."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Scope) -> bool:
        """admin implies write implies read."""
        return self.rank >= needed.rank

    @classmethod
    def parse(cls, value: str | Scope) -> Scope:
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown scope {value!r}; expected one of {choices}") from None


_RANKS = {Scope.READ: 0, Scope.WRITE: 1, Scope.ADMIN: 2}


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key as listings show it: never the key itself, nor its hash."""

    id: str
    scope: Scope
    name: str | None
    created_at: datetime
    revoked_at: datetime | None = None
    camera_id: str | None = None
    """The camera a client of this key sends for when it names none."""

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def generate_key() -> tuple[str, str]:
    """A fresh (id, key) pair from the OS's CSPRNG."""
    key_id = secrets.token_hex(6)
    return key_id, f"dfk_{key_id}_{secrets.token_hex(32)}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_of(text: str) -> str | None:
    """The id in a full key or a bare id, or None when ``text`` is neither."""
    match = KEY_PATTERN.fullmatch(text)
    if match is not None:
        return match.group(1)
    return text if _ID_PATTERN.fullmatch(text) else None


def _clean_name(name: str | None) -> str | None:
    if name is None:
        return None
    cleaned = name.strip()
    if len(cleaned) > MAX_NAME_LENGTH:
        raise ValueError(f"key name is longer than {MAX_NAME_LENGTH} characters")
    if any(not ch.isprintable() for ch in cleaned):
        raise ValueError("key name has control characters")
    return cleaned or None


def _from_row(row: RowMapping) -> ApiKey:
    return ApiKey(
        id=row["id"],
        scope=Scope(row["scope"]),
        name=row["name"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        camera_id=row["camera_id"],
    )


def create(
    conn: Connection,
    scope: Scope | str,
    name: str | None,
    *,
    now: datetime,
    replace: bool = False,
    camera_id: str | None = None,
) -> tuple[ApiKey, str]:
    """Insert a new key; returns it and the plaintext, which is never seen again.

    With ``replace``, live keys of the same name are revoked in the same
    transaction, so a command that mints a key per run (the demo) does not
    leave a trail of working keys behind.
    """
    parsed = Scope.parse(scope)
    cleaned = _clean_name(name)
    if camera_id is not None:
        check_camera_id(camera_id)
    if replace and cleaned is not None:
        conn.execute(
            update(api_keys)
            .where(api_keys.c.name == cleaned)
            .where(api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
    while True:
        key_id, plaintext = generate_key()
        # 48 random bits: a clash is vanishingly rare, but check rather than fail on the PK.
        if get(conn, key_id) is None:
            break
    conn.execute(
        insert(api_keys).values(
            id=key_id,
            name=cleaned,
            scope=parsed.value,
            key_sha256=hash_key(plaintext),
            created_at=now,
            camera_id=camera_id,
        )
    )
    key = ApiKey(id=key_id, scope=parsed, name=cleaned, created_at=now, camera_id=camera_id)
    return key, plaintext


def get(conn: Connection, key_id: str) -> ApiKey | None:
    row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
    return None if row is None else _from_row(row)


def list_all(conn: Connection) -> list[ApiKey]:
    query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
    return [_from_row(row) for row in conn.execute(query).mappings()]


def revoke(conn: Connection, key_id: str, *, now: datetime) -> ApiKey | None:
    """Revoke (idempotent: a second revoke keeps the first time); None if no such key."""
    conn.execute(
        update(api_keys)
        .where(api_keys.c.id == key_id)
        .where(api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return get(conn, key_id)


def verify(conn: Connection, key: str) -> ApiKey | None:
    """The live key ``key`` names, or None (malformed, unknown, wrong secret, revoked).

    The lookup is by the public id; the secret is checked by comparing hashes
    in constant time, so response timing says nothing about how much of a
    guessed secret was right.
    """
    match = KEY_PATTERN.fullmatch(key)
    if match is None:
        return None
    row = conn.execute(select(api_keys).where(api_keys.c.id == match.group(1))).mappings().first()
    if row is None or not hmac.compare_digest(row["key_sha256"], hash_key(key)):
        return None
    found = _from_row(row)
    return None if found.revoked else found
