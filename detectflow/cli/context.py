"""What every CLI command needs: the settings and an open, migrated database.

Commands in their own modules (``provider``, ``maintenance``...) may run
attached under ``detectflow`` or on their own (tests invoke them directly),
so they find the settings the group read, or read the environment.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from detectflow.core.settings import Settings, SettingsError

if TYPE_CHECKING:
    from detectflow.store import Database

__all__ = ["echo_fields", "open_database", "settings_of"]


def settings_of(ctx: click.Context) -> Settings:
    """The CLI group's settings when attached under ``detectflow``, else the environment."""
    settings = getattr(ctx.find_root().obj, "settings", None)
    if isinstance(settings, Settings):
        return settings
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


@contextmanager
def open_database(settings: Settings) -> Iterator[Database]:
    """The configured database, migrated, disposed afterwards; its faults as CLI errors."""
    from sqlalchemy.exc import SQLAlchemyError

    from detectflow.store import DatabaseURLError, SecretKeyError
    from detectflow.store import open_database as open_configured

    try:
        database = open_configured(settings)
    except (DatabaseURLError, SecretKeyError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        database.upgrade()
        yield database
    except SQLAlchemyError as exc:
        raise click.ClickException(f"database error: {exc.__class__.__name__}: {exc}") from None
    finally:
        database.dispose()


def echo_fields(data: Mapping[str, Any]) -> None:
    """A record as aligned ``key  value`` lines (what ``show`` commands print)."""
    width = max((len(key) for key in data), default=0)
    for key, value in data.items():
        shown = (
            json.dumps(value) if isinstance(value, dict | list | bool) or value is None else value
        )
        click.echo(f"{key:<{width}}  {shown}")
