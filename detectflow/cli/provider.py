"""``detectflow provider ...``: the REST provider CRUD and ``test-provider``, from a shell.

Operators wire providers from the command line before any server runs, so
the CLI does what the API does, with the API's own validation: a config is
read by :func:`~detectflow.server.providers.read_provider_fields` (types,
ranges, routing options) and checked by
:func:`~detectflow.server.providers.check_provider_config` (a known type, an
adapter that builds, the SSRF guard, and an ``endpoint_url`` unless the type
runs in-process) before it is stored. A refusal names the CLI option, and
``api_key`` is write-only here too: nothing prints it.

``provider test`` exits 0 when the provider answered the probe image and 1
when it did not (or the config does not exist); the test itself is
:func:`detectflow.adapters.probe.probe_provider`, the same one the server
uses, and its outcome is recorded on the config the same way.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import click

from detectflow.cli.context import echo_fields, open_database, settings_of
from detectflow.core.models import ProbeResult, ProviderConfig
from detectflow.core.settings import Settings

if TYPE_CHECKING:
    from detectflow.server.errors import ApiError
    from detectflow.store import Database

__all__ = [
    "parse_option",
    "provider_activate",
    "provider_add",
    "provider_group",
    "provider_list",
    "provider_remove",
    "provider_show",
    "provider_test",
    "provider_update",
]

# The CLI option for each config field, to name it in the API's refusals.
_OPTION_OF = {
    "provider_name": "--name",
    "provider_type": "--type",
    "endpoint_url": "--url",
    "api_key": "--api-key",
    "timeout_seconds": "--timeout",
    "confidence_threshold": "--confidence-threshold",
    "max_retries": "--max-retries",
    "max_faces_per_frame": "--max-faces-per-frame",
    "enable_person_detection": "--person-detection",
    "enable_face_detection": "--face-detection",
    "enable_face_encoding": "--face-encoding",
    "options": "--option",
}


def parse_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``: the value as JSON when it parses (``3``, ``true``,
    ``["cam-1"]``), else the text itself (``deepstack``)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise click.BadParameter(f"expected KEY=VALUE, got {text!r}", param_hint="--option")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def _parse_options(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, Any]:
    return dict(parse_option(v) for v in values)


@click.group("provider")
def provider_group() -> None:
    """Detection provider configurations: what the REST provider API does.

    api_key is write-only: stored encrypted, never printed.
    """


# -- options shared by add and update ----------------------------------------


def _config_options(*, adding: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The writable fields as options; all optional, defaults are the API's."""

    def flag(field: str, what: str) -> Callable[..., Any]:
        name = _OPTION_OF[field].removeprefix("--")
        return click.option(
            f"--{name}/--no-{name}", field, default=None, help=f"Run {what} or not."
        )

    decorators = [
        click.option("--name", "provider_name", help="A name for people (default: the type)."),
        click.option(
            "--type",
            "provider_type",
            required=adding,
            help="http_api, grpc, mqtt or a plugin's (detectflow plugins lists them).",
        ),
        click.option(
            "--url",
            "endpoint_url",
            help="Where the provider answers; in-process types (such as opencv) need none.",
        ),
        click.option("--dialect", help="http_api wire dialect: detectflow or deepstack."),
        click.option("--api-key", help="Sent to the provider; stored encrypted, never shown."),
        click.option("--timeout", "timeout_seconds", type=float, help="Seconds per frame [30]."),
        click.option("--confidence-threshold", type=float, help="Drop detections below it [0.5]."),
        click.option("--max-retries", type=int, help="Retries of a transient fault [3]."),
        click.option("--max-faces-per-frame", type=int, help="Keep this many faces [10]."),
        flag("enable_person_detection", "person detection"),
        flag("enable_face_detection", "face detection"),
        flag("enable_face_encoding", "face encoding"),
        click.option(
            "--option",
            "options",
            multiple=True,
            metavar="KEY=VALUE",
            callback=_parse_options,
            help="An adapter or routing option (repeatable); VALUE is JSON when it parses, "
            "else text: --option max_workers=4 --option 'cameras=[\"cam-1\"]'.",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print the config as JSON."),
    ]

    def apply(command: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


def _body(values: Mapping[str, Any]) -> dict[str, Any]:
    """The REST body for the options given (None: not given); each option's
    destination is the field's own name."""
    return {field: values[field] for field in _OPTION_OF if values.get(field) is not None}


def _with_dialect(options: dict[str, Any], dialect: str | None) -> dict[str, Any]:
    if dialect is None:
        return options
    if options.get("dialect", dialect) != dialect:
        raise click.BadParameter(
            "--dialect and --option dialect=... disagree; give it once", param_hint="--dialect"
        )
    return {**options, "dialect": dialect}


def _refusal(exc: ApiError) -> click.UsageError:
    """The API's refusal, naming CLI options instead of body fields."""
    text = exc.message.removeprefix("invalid request: ")
    for field, option in _OPTION_OF.items():
        text = text.replace(f"body.{field}", option)
    return click.UsageError(text)


def _validated(body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    from detectflow.server.errors import ApiError
    from detectflow.server.params import Body
    from detectflow.server.providers import read_provider_fields

    try:
        return read_provider_fields(Body(body), creating=creating)
    except ApiError as exc:
        raise _refusal(exc) from None


def _check(settings: Settings, config: ProviderConfig) -> None:
    from detectflow.adapters.urls import allow_link_local
    from detectflow.core.plugins import get_registry
    from detectflow.server.errors import ApiError
    from detectflow.server.providers import check_provider_config

    check = check_provider_config(
        get_registry(settings), config, link_local=allow_link_local(settings)
    )
    try:
        asyncio.run(check)
    except ApiError as exc:
        raise _refusal(exc) from None


def _echo_config(config: ProviderConfig, as_json: bool, note: str) -> None:
    from detectflow.core.serialize import provider_to_dict

    if as_json:
        click.echo(json.dumps(provider_to_dict(config), indent=2))
    else:
        click.echo(note)


def _label(config: ProviderConfig) -> str:
    return f"{config.id} ({config.provider_name})"


# -- the commands -------------------------------------------------------------


@provider_group.command("add")
@_config_options(adding=True)
@click.option("--activate", is_flag=True, help="Make it the active provider.")
@click.pass_context
def provider_add(
    ctx: click.Context,
    /,
    dialect: str | None,
    options: dict[str, Any],
    activate: bool,
    as_json: bool,
    **values: Any,
) -> None:
    """Add a provider configuration (POST /providers).

    --url is required unless the type runs in-process (detectflow plugins
    shows each type). Unset settings take the API's defaults.
    """
    from detectflow.core.ids import new_id
    from detectflow.core.models import utcnow

    settings = settings_of(ctx)
    body = _body(values)
    body.setdefault("provider_name", values["provider_type"])
    body["is_active"] = activate
    body["options"] = _with_dialect(options, dialect)
    fields = _validated(body, creating=True)
    fields.setdefault("endpoint_url", "")
    now = utcnow()
    config = ProviderConfig(id=new_id(), created_at=now, updated_at=now, **fields)
    _check(settings, config)
    with open_database(settings) as database:
        created = database.create_provider(config)
    note = f"added provider {_label(created)}" + (" [active]" if created.is_active else "")
    _echo_config(created, as_json, note)


@provider_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def provider_list(ctx: click.Context, as_json: bool) -> None:
    """List provider configurations (GET /providers; api keys are never shown)."""
    from detectflow.core.serialize import provider_to_dict

    with open_database(settings_of(ctx)) as database:
        providers = [provider_to_dict(p) for p in database.list_providers()]
    if as_json:
        click.echo(json.dumps(providers, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    # The id whole, on one line (show, update and remove take it); the rest fold.
    table = Table()
    longest = max((len(p["id"]) for p in providers), default=2)
    table.add_column("id", no_wrap=True, min_width=longest)
    for column in ("name", "type", "url", "active", "test status"):
        table.add_column(column, overflow="fold")
    for p in providers:
        table.add_row(
            p["id"],
            p["provider_name"],
            p["provider_type"],
            p["endpoint_url"] or "-",
            "yes" if p["is_active"] else "",
            p["test_status"],
        )
    Console().print(table)


@provider_group.command("show")
@click.argument("provider_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the REST JSON.")
@click.pass_context
def provider_show(ctx: click.Context, provider_id: str | None, as_json: bool) -> None:
    """Show one provider configuration (default: the active one), without its api key."""
    from detectflow.core.serialize import provider_to_dict

    with _opened(ctx, provider_id) as (_, config):
        data = provider_to_dict(config)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    echo_fields(data)


@provider_group.command("update")
@click.argument("provider_id", required=False)
@_config_options(adding=False)
@click.option("--clear-api-key", is_flag=True, help="Remove the stored api key.")
@click.option(
    "--remove-option", "removed", multiple=True, metavar="KEY", help="Drop an option (repeatable)."
)
@click.pass_context
def provider_update(
    ctx: click.Context,
    /,
    provider_id: str | None,
    dialect: str | None,
    options: dict[str, Any],
    clear_api_key: bool,
    removed: tuple[str, ...],
    as_json: bool,
    **values: Any,
) -> None:
    """Change the settings given, keep the rest (PUT /providers/{id}; without an
    id, the active provider's, as PUT /provider/config).

    --option KEY=VALUE sets one option and keeps the others (the API's PUT
    replaces them all); --remove-option KEY drops one.
    """
    if clear_api_key and values.get("api_key") is not None:
        raise click.UsageError("--api-key and --clear-api-key exclude each other")
    settings = settings_of(ctx)
    body = _body(values)
    if clear_api_key:
        body["api_key"] = None
    with open_database(settings) as database:
        current = _find(database, provider_id)
        if options or removed or dialect is not None:
            merged = {**current.options, **_with_dialect(options, dialect)}
            body["options"] = {k: v for k, v in merged.items() if k not in removed}
        if not body:
            raise click.UsageError("name at least one setting to change (see --help)")
        fields = _validated(body, creating=False)
        _check(settings, replace(current, **fields))
        updated = database.update_provider(current.id, fields)
    _echo_config(updated, as_json, f"updated provider {_label(updated)}: {', '.join(fields)}")


@provider_group.command("remove")
@click.argument("provider_id")
@click.pass_context
def provider_remove(ctx: click.Context, provider_id: str) -> None:
    """Delete a provider configuration (DELETE /providers/{id})."""
    with _opened(ctx, provider_id) as (database, config):
        database.delete_provider(config.id)
    click.echo(f"removed provider {_label(config)}")


@provider_group.command("activate")
@click.argument("provider_id")
@click.pass_context
def provider_activate(ctx: click.Context, provider_id: str) -> None:
    """Make a provider the active one; the others stop being active."""
    with _opened(ctx, provider_id) as (database, config):
        if config.is_active:
            click.echo(f"provider {_label(config)} is already the active provider")
            return
        database.update_provider(config.id, {"is_active": True})
    click.echo(f"provider {_label(config)} is now the active provider")


@provider_group.command("test")
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
    from detectflow.adapters.probe import build_adapter, probe_provider
    from detectflow.adapters.urls import allow_link_local
    from detectflow.core.plugins import get_registry

    settings = settings_of(ctx)
    with open_database(settings) as database:
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
    if as_json:
        click.echo(json.dumps(_as_dict(config, result), indent=2))
    else:
        _print(config, result)
    if not result.ok:
        ctx.exit(1)


@contextmanager
def _opened(
    ctx: click.Context, provider_id: str | None
) -> Iterator[tuple[Database, ProviderConfig]]:
    """The database and the config named (default: the active one)."""
    with open_database(settings_of(ctx)) as database:
        yield database, _find(database, provider_id)


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
    where = f"{config.provider_type} {config.endpoint_url}".rstrip()
    click.echo(
        f"{config.provider_name} ({config.id}, {where}): "
        f"{verdict} in {result.response_time_ms:.0f} ms"
    )
    click.echo(f"  {result.message}" + (f": {result.error}" if result.error else ""))
