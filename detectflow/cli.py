"""The ``detectflow`` command line.

Each command is a thin shell over a library function, so everything the CLI
does can also be done from Python. Heavy modules are imported inside the
commands that need them: ``detectflow --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from detectflow.core.settings import Settings, SettingsError

__all__ = ["main"]


class _State:
    def __init__(self, config: Path | None) -> None:
        self.config = config
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = Settings.from_env()
            except SettingsError as exc:
                raise click.UsageError(str(exc)) from None
        return self._settings


pass_state = click.make_pass_decorator(_State)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="detectflow")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """detectflow: camera frames in, detections out.

    Configuration comes from DETECTFLOW_* environment variables; with none
    set everything runs embedded (SQLite and an in-process cache under
    ./.detectflow).
    """
    ctx.obj = _State(None)


# -- plugins ---------------------------------------------------------------


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_state
def plugins_cmd(state: _State, as_json: bool) -> None:
    """List loaded plugins: package, version, provider types and hooks.

    Plugins that failed to load are listed with the reason; the rest work.
    """
    from detectflow.core.plugins import get_registry

    registry = get_registry(state.settings)
    infos = registry.plugins()
    if as_json:
        payload = {
            "plugins": [
                {
                    "name": i.name,
                    "package": i.package,
                    "version": i.version,
                    "provider_types": list(i.provider_types),
                    "hooks": list(i.hooks),
                }
                for i in infos
            ],
            "failures": [{"name": f.name, "error": f.error} for f in registry.failures],
        }
        click.echo(json.dumps(payload, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("plugin", "package", "version", "provider types", "hooks")
    for i in infos:
        hooks = ", ".join(h.removeprefix("detectflow_") for h in i.hooks)
        table.add_row(i.name, i.package, i.version, ", ".join(i.provider_types), hooks)
    console = Console()
    console.print(table)
    for failure in registry.failures:
        console.print(f"[red]failed[/red] {failure.name}: {failure.error}", highlight=False)


# -- database --------------------------------------------------------------


@cli.group("db")
def db_group() -> None:
    """Database schema management."""


@db_group.command("upgrade")
@pass_state
def db_upgrade(state: _State) -> None:
    """Create or migrate the database schema to the latest version."""
    from detectflow.store import open_database

    database = open_database(state.settings)
    try:
        database.upgrade()
    finally:
        database.dispose()
    click.echo(f"database at {_redact(state.settings.sql_url)} is up to date")


# -- providers -------------------------------------------------------------


@cli.group("provider")
def provider_group() -> None:
    """Detection provider configurations."""


@provider_group.command("add")
@click.option("--name", "provider_name", help="A name for people (default: the type and URL).")
@click.option("--type", "provider_type", required=True, help="http_api, grpc, mqtt or a plugin's.")
@click.option("--url", "endpoint_url", required=True, help="Where the provider answers.")
@click.option("--dialect", help="http_api wire dialect: detectflow (default) or deepstack.")
@click.option("--api-key", help="Sent to the provider; stored encrypted, never shown again.")
@click.option("--timeout", "timeout_seconds", type=click.FloatRange(0.01, 3600), default=30.0)
@click.option("--confidence-threshold", type=click.FloatRange(0, 1), default=0.5)
@click.option("--max-retries", type=click.IntRange(0, 100), default=3)
@click.option("--activate", is_flag=True, help="Make it the active provider.")
@pass_state
def provider_add(
    state: _State,
    provider_name: str | None,
    provider_type: str,
    endpoint_url: str,
    dialect: str | None,
    api_key: str | None,
    timeout_seconds: float,
    confidence_threshold: float,
    max_retries: int,
    activate: bool,
) -> None:
    """Add a provider configuration."""
    from detectflow.core.ids import new_id
    from detectflow.core.models import ProviderConfig
    from detectflow.core.plugins import get_registry

    known = get_registry(state.settings).provider_types()
    if provider_type not in known:
        raise click.BadParameter(
            f"unknown provider type {provider_type!r}; known: {', '.join(sorted(known))}",
            param_hint="--type",
        )
    options: dict[str, Any] = {"dialect": dialect} if dialect else {}
    config = ProviderConfig(
        id=new_id(),
        provider_name=provider_name or f"{provider_type} {endpoint_url}",
        provider_type=provider_type,
        endpoint_url=endpoint_url,
        api_key=api_key,
        timeout_seconds=timeout_seconds,
        confidence_threshold=confidence_threshold,
        max_retries=max_retries,
        is_active=activate,
        options=options,
    )
    with _database(state.settings) as database:
        created = database.create_provider(config)
    click.echo(
        f"added provider {created.id} ({created.provider_name})" + (" [active]" if activate else "")
    )


@provider_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_state
def provider_list(state: _State, as_json: bool) -> None:
    """List provider configurations (api keys are never shown)."""
    from detectflow.core.serialize import provider_to_dict

    with _database(state.settings) as database:
        providers = [provider_to_dict(p) for p in database.list_providers()]
    if as_json:
        click.echo(json.dumps(providers, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "name", "type", "url", "active", "test status")
    for p in providers:
        table.add_row(
            p["id"],
            p["provider_name"],
            p["provider_type"],
            p["endpoint_url"],
            "yes" if p["is_active"] else "",
            p["test_status"],
        )
    Console().print(table)


# -- helpers ---------------------------------------------------------------


class _database:
    """Open, migrate and close the configured database around a command."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __enter__(self) -> Any:
        from detectflow.store import open_database

        self.database = open_database(self.settings)
        self.database.upgrade()
        return self.database

    def __exit__(self, *exc: object) -> None:
        self.database.dispose()


def _redact(url: str) -> str:
    """Hide a password in a database URL before printing it."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="detectflow")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
