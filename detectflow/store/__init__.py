"""detectflow.store: SQL tables and migrations, the repository, api key
encryption, and the cache/bus with their in-process twins."""

from __future__ import annotations

from detectflow.core.settings import Settings
from detectflow.store.cache import Bus, Cache, Subscription
from detectflow.store.crypto import SecretKeyError
from detectflow.store.engine import DatabaseURLError
from detectflow.store.repository import Database
from detectflow.store.secrets import load_or_create_secret_key

__all__ = [
    "Bus",
    "Cache",
    "Database",
    "DatabaseURLError",
    "SecretKeyError",
    "Subscription",
    "load_or_create_secret_key",
    "open_database",
]


def open_database(settings: Settings) -> Database:
    """The configured database; the caller runs ``upgrade()`` (``detectflow db upgrade``)."""
    return Database(settings.sql_url, secret_key=load_or_create_secret_key(settings))
