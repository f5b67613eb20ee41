"""The ``detectflow`` command line.

Each command is a thin shell over a library function, so everything the CLI
does can also be done from Python. Heavy modules are imported inside the
commands that need them: ``detectflow --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import click

from detectflow.cli.context import open_database
from detectflow.core.settings import Settings, SettingsError

__all__ = ["main"]


class _State:
    """Settings, read once per command and only when a command needs them."""

    def __init__(self) -> None:
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
    ctx.obj = _State()


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
    registry.load_sources()  # listed too, though a server never loads them
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
    with open_database(state.settings):  # opening migrates
        pass
    click.echo(f"database at {_redact(state.settings.sql_url)} is up to date")


# -- api keys --------------------------------------------------------------


@cli.group("keys")
def keys_group() -> None:
    """API keys for the server (scopes: read < write < admin).

    Reads are open unless DETECTFLOW_AUTH_MODE=required; writes need a
    write key, provider configuration an admin key.
    """


@keys_group.command("create")
@click.option(
    "--scope", required=True, type=click.Choice(["read", "write", "admin"]), help="What it may do."
)
@click.option("--name", help="A label for people, shown by `keys list`.")
@click.option(
    "--camera",
    help="The camera its clients send for when they name none (an NVR through the "
    "DeepStack gateway sends only the picture).",
)
@pass_state
def keys_create(state: _State, scope: str, name: str | None, camera: str | None) -> None:
    """Create a key and print it, ONCE: only its hash is stored.

    The key alone goes to stdout (KEY=$(detectflow keys create --scope read)),
    the notes to stderr.
    """
    with open_database(state.settings) as database:
        try:
            key, plaintext = database.create_api_key(scope, name, camera_id=camera)
        except ValueError as exc:
            hint = "--camera" if "camera" in str(exc) else "--name"
            raise click.BadParameter(str(exc), param_hint=hint) from None
    click.echo(plaintext)
    label = f" ({key.name})" if key.name else ""
    label += f" for camera {key.camera_id}" if key.camera_id else ""
    click.echo(
        f"created {key.scope} key {key.id}{label}; store it now, it cannot be shown again",
        err=True,
    )


@keys_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_state
def keys_list(state: _State, as_json: bool) -> None:
    """List keys: id, name, scope, created, revoked (never the keys themselves)."""
    from detectflow.core.serialize import isoformat

    with open_database(state.settings) as database:
        keys = database.list_api_keys()
    rows = [
        {
            "id": k.id,
            "name": k.name,
            "scope": k.scope.value,
            "camera_id": k.camera_id,
            "created_at": isoformat(k.created_at),
            "revoked_at": isoformat(k.revoked_at),
        }
        for k in keys
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "name", "scope", "camera", "created", "revoked")
    for row in rows:
        table.add_row(
            row["id"],
            row["name"] or "",
            row["scope"],
            row["camera_id"] or "",
            row["created_at"] or "",
            row["revoked_at"] or "",
        )
    Console().print(table)


@keys_group.command("revoke")
@click.argument("key_id")
@pass_state
def keys_revoke(state: _State, key_id: str) -> None:
    """Revoke a key by its id (or the whole key); it stops working at once."""
    from detectflow.store.keys import key_id_of

    ident = key_id_of(key_id.strip())
    if ident is None:
        raise click.BadParameter(
            "expected a key id (12 hex characters, see `detectflow keys list`) or a whole key",
            param_hint="KEY_ID",
        )
    with open_database(state.settings) as database:
        before = database.get_api_key(ident)
        revoked = database.revoke_api_key(ident)
    if revoked is None:
        raise click.ClickException(f"no API key with id {ident!r}")
    if before is not None and before.revoked:
        click.echo(f"key {ident} was already revoked")
    else:
        click.echo(f"revoked key {ident}")


# -- running ---------------------------------------------------------------

_host_option = click.option(
    "--host", envvar="DETECTFLOW_HOST", help="Listen address [env DETECTFLOW_HOST; 127.0.0.1]."
)
_port_option = click.option(
    "--port",
    envvar="DETECTFLOW_PORT",
    type=click.IntRange(1, 65535),
    help="Listen port [env DETECTFLOW_PORT; 8000].",
)


_deepstack_api_option = click.option(
    "--deepstack-api/--no-deepstack-api",
    default=None,
    help="Serve the DeepStack / CodeProject.AI detection API at /v1/vision/... "
    "for NVRs (Frigate, Blue Iris, Home Assistant) [env DETECTFLOW_DEEPSTACK_API; off].",
)
_deepstack_port_option = click.option(
    "--deepstack-port",
    type=click.IntRange(1, 65535),
    help="Also serve on this port (DeepStack's usual is 5000); implies --deepstack-api "
    "[env DETECTFLOW_DEEPSTACK_PORT].",
)


def _with_server_options(
    settings: Settings,
    host: str | None,
    port: int | None,
    deepstack_api: bool | None,
    deepstack_port: int | None,
) -> Settings:
    settings = settings.with_overrides(
        host=host, port=port, deepstack_api=deepstack_api, deepstack_port=deepstack_port
    )
    if settings.deepstack_port is not None and deepstack_api is None:
        settings = settings.with_overrides(deepstack_api=True)
    if settings.deepstack_port == settings.port:
        raise click.BadParameter("must differ from --port", param_hint="--deepstack-port")
    return settings


def _listening(settings: Settings) -> str:
    where = f"http://{settings.host}:{settings.port}"
    if settings.deepstack_api:
        port = settings.deepstack_port or settings.port
        where += f"; DeepStack API on http://{settings.host}:{port}/v1/vision/detection"
    return where


@cli.group("flow")
def flow_group() -> None:
    """The Bytewax dataflow."""


def _attach_commands() -> None:
    """Commands that live in their own modules, next to what they run."""
    from detectflow.cli.camera import camera_group
    from detectflow.cli.flow import flow_run
    from detectflow.cli.maintenance import maintenance
    from detectflow.cli.provider import provider_group

    flow_group.add_command(flow_run)
    cli.add_command(provider_group)
    cli.add_command(camera_group)
    cli.add_command(maintenance)


_attach_commands()


@cli.command("up")
@_host_option
@_port_option
@_deepstack_api_option
@_deepstack_port_option
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option(
    "--schedule/--no-schedule",
    default=True,
    show_default=True,
    help="Run the maintenance jobs: provider test hourly, 30-day cleanup daily.",
)
@click.option(
    "--recovery-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Snapshot the dataflow's state here "
    "[env DETECTFLOW_RECOVERY_DIR; default: DATA_DIR/recovery].",
)
@click.option(
    "--no-recovery",
    is_flag=True,
    help="Keep no snapshots: a crash then loses open window statistics (never frames).",
)
@click.option(
    "--publish-mqtt",
    "publish_mqtt",
    metavar="mqtt://HOST:PORT/PREFIX",
    help="Publish object events and counts to MQTT (docs/mqtt.md) "
    "[env DETECTFLOW_PUBLISH_MQTT_URL].",
)
@pass_state
def up(
    state: _State,
    host: str | None,
    port: int | None,
    deepstack_api: bool | None,
    deepstack_port: int | None,
    workers: int,
    schedule: bool,
    recovery_dir: Path | None,
    no_recovery: bool,
    publish_mqtt: str | None,
) -> None:
    """Run the API server and the dataflow together, for real deployments.

    Reads the processing queue and every enabled camera of the cameras table
    (added, changed or disabled ones within 10 s). Uses the configured
    database and the active provider; no simulator and no sample frames
    (see `detectflow demo` for those). Crash-safe by
    default: queued frames are leased, and the dataflow's state is
    snapshotted under the data dir (see --no-recovery).
    """
    from detectflow.cli.runner import default_recovery_dir, open_stack

    if no_recovery and recovery_dir is not None:
        raise click.UsageError("--recovery-dir and --no-recovery contradict each other")
    settings = _with_server_options(state.settings, host, port, deepstack_api, deepstack_port)
    if no_recovery:
        settings = dataclasses.replace(settings, recovery_dir=None)
    settings = settings.with_overrides(publish_mqtt_url=publish_mqtt)
    stack = open_stack(settings)
    recovery = None if no_recovery else recovery_dir or default_recovery_dir(settings)
    stack.start_flow(workers=workers, recovery_dir=recovery)
    reads_cameras = stack.start_camera_flow(workers=workers, recovery_dir=recovery)
    if schedule:
        from detectflow.cli.maintenance import run_schedule

        stack.spawn(lambda: run_schedule(stack), "detectflow-maintenance")
    click.echo(f"detectflow up on {_listening(settings)} (Ctrl-C stops)")
    if not reads_cameras:
        click.echo("cameras table not read: PyAV is missing (pip install 'detectflow[video]')")
    stack.serve(settings.host, settings.port)


@cli.command("serve")
@_host_option
@_port_option
@_deepstack_api_option
@_deepstack_port_option
@pass_state
def serve(
    state: _State,
    host: str | None,
    port: int | None,
    deepstack_api: bool | None,
    deepstack_port: int | None,
) -> None:
    """Run only the API server (the dataflow runs elsewhere)."""
    from detectflow.cli.runner import run_server
    from detectflow.server.app import create_app

    settings = _with_server_options(state.settings, host, port, deepstack_api, deepstack_port)
    click.echo(f"detectflow serving on {_listening(settings)} (Ctrl-C stops)")
    run_server(create_app(settings), settings)


@cli.command("demo")
@_host_option
@_port_option
@click.option(
    "--fps",
    type=click.FloatRange(0.1, 100),
    default=2.0,
    show_default=True,
    help="Frames per second per camera.",
)
@click.option(
    "--latency",
    type=click.FloatRange(0, 10),
    default=0.05,
    show_default=True,
    help="The simulated provider's answer latency, in seconds.",
)
@click.option(
    "--provider",
    default="simulator",
    show_default=True,
    help="simulator, or an installed in-process provider type such as opencv.",
)
@pass_state
def demo(
    state: _State, host: str | None, port: int | None, fps: float, latency: float, provider: str
) -> None:
    """Everything in one process: server, dataflow, a SIMULATED provider,
    sample frames from 3 cameras and a video camera playing a generated clip.
    Nothing to install, nothing real detected (--provider opencv runs the
    OpenCV plugin on the frames instead)."""
    from detectflow.cli.demo import run_demo
    from detectflow.core.plugins import get_registry

    settings = state.settings.with_overrides(host=host, port=port)
    if provider != "simulator" and provider not in get_registry(settings).provider_types():
        raise click.BadParameter(
            f"no installed provider type {provider!r}", param_hint="--provider"
        )
    run_demo(settings, fps=fps, latency=latency, provider=provider)


# -- helpers ---------------------------------------------------------------


def _redact(url: str) -> str:
    """Hide a password in a database URL before printing it."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url


def _attach_simulator() -> None:
    from detectflow.cli.simulate import simulate

    cli.add_command(simulate)


_attach_simulator()


def main(argv: list[str] | None = None) -> None:
    from detectflow.core.redact import install_log_redaction

    install_log_redaction()  # flows and commands log provider URLs, which may hold credentials
    try:
        cli.main(args=argv, prog_name="detectflow")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
