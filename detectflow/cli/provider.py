"""``detectflow provider test``: the REST ``test-provider`` call, from a shell.

Operators wire providers from the command line before any server runs, and
scripts want an exit status: 0 when the provider answered the probe image,
1 when it did not (or the config does not exist). The test itself is
:func:`detectflow.adapters.probe.probe_provider`, the same one the server
uses, and its outcome is recorded on the config the same way.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import click

from detectflow.core.models import ProbeResult, ProviderConfig
from detectflow.core.settings import Settings, SettingsError

if TYPE_CHECKING:
    from detectflow.store import Database

__all__ = ["provider_test"]


def _settings(ctx: click.Context) -> Settings:
    """The CLI group's settings when attached under ``detectflow``, else the environment."""
    settings = getattr(ctx.find_root().obj, "settings", None)
    if isinstance(settings, Settings):
        return settings
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


@click.command("test")
@click.argument("provider_id", required=False)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, max=600, min_open=True),
    help="Seconds for the whole test [default: the provider's timeout_seconds].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the REST test-provider JSON.")
@click.pass_context
def provider_test(
    ctx: click.Context, provider_id: str | None, timeout: float | None, as_json: bool
) -> None:
    """Send the built-in probe image through a provider (default: the active one).

    Records the outcome as the provider's test status. Exits 1 when the
    provider fails the test or does not exist.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from detectflow.adapters.probe import build_adapter, probe_provider
    from detectflow.adapters.urls import allow_link_local
    from detectflow.core.plugins import get_registry
    from detectflow.store import DatabaseURLError, SecretKeyError, open_database

    settings = _settings(ctx)
    try:
        database = open_database(settings)
    except (DatabaseURLError, SecretKeyError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        database.upgrade()
        config = _find(database, provider_id)
        result = asyncio.run(
            probe_provider(
                config,
                open_adapter=build_adapter(get_registry(settings)),
                recorder=database,
                timeout=timeout,
                allow_link_local=allow_link_local(settings),
            )
        )
    except SQLAlchemyError as exc:
        raise click.ClickException(f"database error: {exc.__class__.__name__}: {exc}") from None
    finally:
        database.dispose()
    if as_json:
        click.echo(json.dumps(_as_dict(config, result), indent=2))
    else:
        _print(config, result)
    if not result.ok:
        ctx.exit(1)


def _find(database: Database, provider_id: str | None) -> ProviderConfig:
    if provider_id is None:
        active = database.active_provider()
        if active is None:
            raise click.ClickException(
                "no active provider; name one (detectflow provider list) or add one with "
                "detectflow provider add --activate"
            )
        return active
    config = database.get_provider(provider_id) if len(provider_id) <= 64 else None
    if config is None:
        raise click.ClickException(
            f"no provider with id {provider_id!r} (detectflow provider list)"
        )
    return config


def _as_dict(config: ProviderConfig, result: ProbeResult) -> dict[str, Any]:
    """The shape of the guide's ``POST /test-provider`` answer, plus the id."""
    return {
        "success": result.ok,
        "provider_id": config.id,
        "provider_name": config.provider_name,
        "message": result.message,
        "response_time_ms": round(result.response_time_ms),
        "error": result.error,
    }


def _print(config: ProviderConfig, result: ProbeResult) -> None:
    verdict = "OK" if result.ok else "FAILED"
    click.echo(
        f"{config.provider_name} ({config.id}, {config.provider_type} {config.endpoint_url}): "
        f"{verdict} in {result.response_time_ms:.0f} ms"
    )
    click.echo(f"  {result.message}" + (f": {result.error}" if result.error else ""))
