"""``detectflow camera ...``: the cameras table from a shell, and the fleet file.

Every write is read by :func:`~detectflow.server.cameras.read_camera_fields`,
the API's own validation, so the CLI refuses what ``/api/v1/cameras``
refuses, naming the CLI option (or the file's camera) instead of the body
field. URLs are printed as ``display_url`` prints them: the password never.

``camera import FILE`` makes the table match a fleet file
(:mod:`detectflow.core.camera_toml`): it prints what it adds, changes,
removes (with ``--prune``) and leaves alone, then applies all of it in one
transaction, or nothing when any camera in the file is refused. The same
file imported twice changes nothing. ``camera export`` writes the file,
credentials masked unless ``--with-secrets``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from detectflow.cli.context import echo_fields, open_database, settings_of
from detectflow.cli.provider import parse_option
from detectflow.core.cameras import Camera

if TYPE_CHECKING:
    from detectflow.core.camera_sync import SyncPlan
    from detectflow.server.errors import ApiError
    from detectflow.store import Database

__all__ = ["camera_group"]

_OPTION_OF = {
    "id": "--id",
    "name": "--name",
    "url": "--url",
    "fps": "--fps",
    "provider": "--provider",
    "enabled": "--enable/--disable",
    "options": "--option",
}


def _parse_options(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, Any]:
    return dict(parse_option(v) for v in values)


@click.group("camera")
def camera_group() -> None:
    """Cameras as configuration: what /api/v1/cameras does, and fleet files.

    A URL's credentials are stored encrypted and never printed.
    """


def _errors_of(exc: ApiError, rename: Callable[[str], str]) -> list[str]:
    """The API's refusal as lines, each field renamed for where it came from."""
    details = exc.details if isinstance(exc.details, list) else None
    if not details:
        return [exc.message.removeprefix("invalid request: ")]
    return [f"{rename(str(d['field']).removeprefix('body.'))}: {d['message']}" for d in details]


def _option_name(field: str) -> str:
    head, dot, rest = field.partition(".")
    option = _OPTION_OF.get(head, head)
    return f"{option} {rest}" if dot and head == "options" else option + (dot + rest if dot else "")


def _validated(
    database: Database, body: Mapping[str, Any], *, creating: bool, rename: Callable[[str], str]
) -> dict[str, Any]:
    """The API's checks: the fields, then that a named provider exists.
    ValueError holding every problem, one a line."""
    from detectflow.server.cameras import read_camera_fields
    from detectflow.server.errors import ApiError
    from detectflow.server.params import Body

    try:
        fields = read_camera_fields(Body(dict(body)), creating=creating)
    except ApiError as exc:
        raise ValueError("\n".join(_errors_of(exc, rename))) from None
    provider = fields.get("provider")
    if provider is not None and database.get_provider(provider) is None:
        raise ValueError(f"{rename('provider')}: no provider config with id {provider!r}")
    return fields


def _checked(database: Database, body: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    try:
        return _validated(database, body, creating=creating, rename=_option_name)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _echo(camera: Camera, as_json: bool, note: str) -> None:
    from detectflow.core.serialize import camera_to_dict

    click.echo(json.dumps(camera_to_dict(camera), indent=2) if as_json else note)


def _label(camera: Camera) -> str:
    shown = camera.shown_url or "no url"
    return f"{camera.id} ({shown})" + ("" if camera.enabled else " [disabled]")


@contextmanager
def _opened(ctx: click.Context) -> Iterator[Database]:
    with open_database(settings_of(ctx)) as database:
        yield database


def _find(database: Database, camera_id: str) -> Camera:
    camera = database.get_camera(camera_id)
    if camera is None:
        raise click.ClickException(f"no camera with id {camera_id!r} (detectflow camera list)")
    return camera


_JSON = click.option("--json", "as_json", is_flag=True, help="Print the camera as JSON.")
_OPTIONS = click.option(
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_parse_options,
    help="A reader or objects option (repeatable); VALUE is JSON when it parses, else "
    'text: --option transport=tcp --option \'zones={"dock": {"polygon": [[0,0],[1,0],[1,1]]}}\'.',
)


@camera_group.command("add")
@click.option("--id", "camera_id", required=True, help="The camera_id of its detections.")
@click.option("--url", help="rtsp://user:pass@host/..., http(s)://..., file:///clip.mp4.")
@click.option("--fps", type=float, help="Frames sampled per second for detection [5].")
@click.option("--name", help="A name for people.")
@click.option("--provider", help="A provider config id (default: the routing rules).")
@click.option("--disabled", is_flag=True, help="Add it without reading it yet.")
@_OPTIONS
@_JSON
@click.pass_context
def camera_add(
    ctx: click.Context,
    camera_id: str,
    url: str | None,
    fps: float | None,
    name: str | None,
    provider: str | None,
    disabled: bool,
    options: dict[str, Any],
    as_json: bool,
) -> None:
    """Add a camera (POST /api/v1/cameras)."""
    from detectflow.core.models import utcnow
    from detectflow.store.cameras import CameraExistsError

    given = {"id": camera_id, "url": url, "fps": fps, "name": name, "provider": provider}
    body: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    body["enabled"] = not disabled
    if options:
        body["options"] = options
    with _opened(ctx) as database:
        fields = _checked(database, body, creating=True)
        now = utcnow()
        try:
            created = database.create_camera(Camera(created_at=now, updated_at=now, **fields))
        except CameraExistsError as exc:
            raise click.ClickException(f"{exc} (detectflow camera update changes it)") from None
    _echo(created, as_json, f"added camera {_label(created)}")


@camera_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def camera_list(ctx: click.Context, as_json: bool) -> None:
    """List cameras (GET /api/v1/cameras), by id."""
    from detectflow.core.serialize import camera_to_dict

    with _opened(ctx) as database:
        cameras = [camera_to_dict(c) for c in database.list_cameras()]
    if as_json:
        click.echo(json.dumps(cameras, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table()
    longest = max((len(c["id"]) for c in cameras), default=2)
    table.add_column("id", no_wrap=True, min_width=longest)
    for column in ("name", "url", "enabled", "fps", "provider", "last error"):
        table.add_column(column, overflow="fold")
    for c in cameras:
        table.add_row(
            c["id"],
            c["name"],
            c["display_url"] or "-",
            "yes" if c["enabled"] else "no",
            f"{c['fps']:g}",
            c["provider"] or "-",
            c["last_error"] or "",
        )
    Console().print(table)


@camera_group.command("show")
@click.argument("camera_id")
@click.option("--json", "as_json", is_flag=True, help="Print the REST JSON.")
@click.pass_context
def camera_show(ctx: click.Context, camera_id: str, as_json: bool) -> None:
    """Show one camera (its URL's password masked)."""
    from detectflow.core.serialize import camera_to_dict

    with _opened(ctx) as database:
        data = camera_to_dict(_find(database, camera_id))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    echo_fields(data)


@camera_group.command("update")
@click.argument("camera_id")
@click.option("--url", help="A new URL (with its credentials, if any).")
@click.option("--clear-url", is_flag=True, help="No URL: frames come through the API.")
@click.option("--fps", type=float, help="Frames sampled per second.")
@click.option("--name", help="A name for people.")
@click.option("--provider", help="A provider config id.")
@click.option("--clear-provider", is_flag=True, help="Let the routing rules choose.")
@click.option("--enable/--disable", "enabled", default=None, help="Read it or not.")
@_OPTIONS
@click.option(
    "--remove-option", "removed", multiple=True, metavar="KEY", help="Drop an option (repeatable)."
)
@_JSON
@click.pass_context
def camera_update(
    ctx: click.Context,
    camera_id: str,
    url: str | None,
    clear_url: bool,
    fps: float | None,
    name: str | None,
    provider: str | None,
    clear_provider: bool,
    enabled: bool | None,
    options: dict[str, Any],
    removed: tuple[str, ...],
    as_json: bool,
) -> None:
    """Change the settings given, keep the rest (PUT /api/v1/cameras/{id}).

    --option KEY=VALUE sets one option and keeps the others; --remove-option
    KEY drops one.
    """
    if clear_url and url is not None:
        raise click.UsageError("--url and --clear-url exclude each other")
    if clear_provider and provider is not None:
        raise click.UsageError("--provider and --clear-provider exclude each other")
    given = {"url": url, "fps": fps, "name": name, "provider": provider, "enabled": enabled}
    body: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if clear_url:
        body["url"] = None
    if clear_provider:
        body["provider"] = None
    with _opened(ctx) as database:
        current = _find(database, camera_id)
        if options or removed:
            merged = {**current.options, **options}
            body["options"] = {k: v for k, v in merged.items() if k not in removed}
        if not body:
            raise click.UsageError("name at least one setting to change (see --help)")
        fields = _checked(database, body, creating=False)
        updated = database.update_camera(current.id, fields)
    _echo(updated, as_json, f"updated camera {_label(updated)}: {', '.join(fields)}")


@camera_group.command("remove")
@click.argument("camera_id")
@click.pass_context
def camera_remove(ctx: click.Context, camera_id: str) -> None:
    """Delete a camera (its detections and events stay)."""
    with _opened(ctx) as database:
        camera = _find(database, camera_id)
        database.delete_camera(camera.id)
    click.echo(f"removed camera {_label(camera)}")


def _set_enabled(ctx: click.Context, camera_id: str, enabled: bool) -> None:
    with _opened(ctx) as database:
        camera = _find(database, camera_id)
        if camera.enabled != enabled:
            camera = database.set_camera_enabled(camera.id, enabled)
    click.echo(f"camera {camera.id} is {'enabled' if enabled else 'disabled'}")


@camera_group.command("enable")
@click.argument("camera_id")
@click.pass_context
def camera_enable(ctx: click.Context, camera_id: str) -> None:
    """Read the camera (a running flow picks it up within seconds)."""
    _set_enabled(ctx, camera_id, True)


@camera_group.command("disable")
@click.argument("camera_id")
@click.pass_context
def camera_disable(ctx: click.Context, camera_id: str) -> None:
    """Stop reading the camera; it keeps its settings."""
    _set_enabled(ctx, camera_id, False)


# -- the fleet file ---------------------------------------------------------------


@camera_group.command("export")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Default: stdout."
)
@click.option(
    "--with-secrets",
    is_flag=True,
    help="Write URLs with their credentials (a backup; keep it out of version control).",
)
@click.pass_context
def camera_export(ctx: click.Context, output: Path | None, with_secrets: bool) -> None:
    """Write every camera as a fleet file (TOML).

    Without --with-secrets passwords read ***: such a file imports back
    unchanged (*** keeps the stored credential), and a new camera's secret
    can be written as ${ENV_VAR}.
    """
    from detectflow.core.camera_toml import dump_cameras

    with _opened(ctx) as database:
        text = dump_cameras(database.list_cameras(), with_secrets=with_secrets)
    if output is None:
        click.echo(text, nl=False)
        return
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if with_secrets else 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    click.echo(f"wrote {output}", err=True)


@camera_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--prune", is_flag=True, help="Also remove cameras the file does not name.")
@click.option("--dry-run", is_flag=True, help="Print what would change; change nothing.")
@click.pass_context
def camera_import(ctx: click.Context, file: Path, prune: bool, dry_run: bool) -> None:
    """Make the cameras table match a fleet file (TOML), in one transaction.

    A field a camera's table leaves out takes its default. In a url,
    ${NAME} is read from the environment and *** keeps the stored
    credential. Prints what is added (+), changed (~), removed (-) and
    unchanged (=); the same file twice changes nothing.
    """
    from detectflow.core.camera_sync import plan_sync
    from detectflow.core.camera_toml import load_cameras

    try:
        entries = load_cameras(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeError) as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    with _opened(ctx) as database:
        stored = {c.id: c for c in database.list_cameras()}
        wanted, problems = _wanted(database, entries, stored)
        if problems:
            raise click.ClickException(f"{file}: nothing imported:\n  " + "\n  ".join(problems))
        try:
            plan = plan_sync(list(stored.values()), wanted, prune=prune)
        except ValueError as exc:
            raise click.ClickException(f"{file}: {exc}") from None
        _print_plan(plan)
        if plan.changes and not dry_run:
            database.sync_cameras(plan)
    if dry_run:
        click.echo("dry run: nothing changed")


def _wanted(
    database: Database, entries: list[dict[str, Any]], stored: Mapping[str, Camera]
) -> tuple[list[Camera], list[str]]:
    """The file's cameras, validated as the API would; and every problem, by camera."""
    from detectflow.core.camera_toml import expand_env
    from detectflow.core.cameras import unmask_url

    wanted: list[Camera] = []
    problems: list[str] = []
    for index, entry in enumerate(entries):
        named = entry.get("id")
        where = f"cameras[{index}]" + (f" ({named})" if isinstance(named, str) else "")
        body = dict(entry)
        url = body.get("url")
        if isinstance(url, str):
            before = stored.get(str(named))
            try:
                stored_url = None if before is None else before.url
                body["url"] = unmask_url(expand_env(url, os.environ), stored_url)
            except ValueError as exc:
                problems.append(f"{where}.url: {exc}")
                continue
        prefix = where

        def rename(field: str, prefix: str = prefix) -> str:
            return f"{prefix}.{field}"

        try:
            fields = _validated(database, body, creating=True, rename=rename)
        except ValueError as exc:
            problems.extend(str(exc).splitlines())
            continue
        wanted.append(replace(Camera(id=fields.pop("id")), **fields))
    return wanted, problems


def _print_plan(plan: SyncPlan) -> None:
    for camera in plan.added:
        click.echo(f"+ {camera.id}: added")
    for change in plan.changed:
        click.echo(f"~ {change.camera.id}: {', '.join(change.fields)} changed")
    for camera_id in plan.removed:
        click.echo(f"- {camera_id}: removed")
    for camera_id in plan.unchanged:
        click.echo(f"= {camera_id}: unchanged")
    for camera_id in plan.kept:
        click.echo(f"  {camera_id}: not in the file, kept (--prune removes it)")
    click.echo(
        f"{len(plan.added)} added, {len(plan.changed)} changed, {len(plan.removed)} removed, "
        f"{len(plan.unchanged)} unchanged"
    )
