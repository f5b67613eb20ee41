"""``detectflow flow run``: the dataflow command, with its scale-out and recovery options.

Kept apart from :mod:`detectflow.cli` so the options that only the dataflow
has (cluster, recovery, backpressure) live next to each other; ``cli.py``
attaches :data:`flow_run` to its ``flow`` group. ``python -m
detectflow.cli.flow`` runs the same command on its own.
"""

from __future__ import annotations

from pathlib import Path

import click

from detectflow.core.settings import Settings, SettingsError

__all__ = ["flow_run"]


def _addresses(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    """``--addresses`` repeated or comma-separated: both read the same."""
    return tuple(a.strip() for v in value for a in v.split(",") if a.strip())


@click.command("run")
@click.option(
    "--source",
    "source_url",
    default="sql",
    show_default=True,
    help="Where frames come from: sql (the processing queue, default); "
    "redis://HOST:6379/0?stream=frames&group=detectflow; "
    "mqtt://HOST:1883/detectflow/frames/+; file:///folder (images) or "
    "file:///clip.mp4 (a video); rtsp:// or rtsps:// (a camera stream); "
    "http(s)://HOST/video.mjpg (MJPEG or other video over HTTP); "
    "cameras (every enabled camera of the cameras table); or a plugin's scheme. "
    "docs/sources.md has each one's options.",
)
@click.option(
    "--camera-id",
    help="The camera id of a single video source (rtsp, http, a video file); "
    "default: the file's name or the host.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Bytewax workers (threads) in this process.",
)
@click.option(
    "--process-id",
    type=click.IntRange(0, 1023),
    help="This process's index in --addresses (a multi-process Bytewax cluster).",
)
@click.option(
    "--addresses",
    multiple=True,
    callback=_addresses,
    metavar="HOST:PORT[,...]",
    help="Every cluster process's host:port, in process-id order (repeat or comma-separate).",
)
@click.option(
    "--recovery-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="DETECTFLOW_RECOVERY_DIR",
    help="Snapshot state here; a restart resumes frames in flight [env DETECTFLOW_RECOVERY_DIR].",
)
@click.option(
    "--snapshot-interval",
    type=click.FloatRange(0.01, 86_400),
    help="Seconds between recovery snapshots [env DETECTFLOW_SNAPSHOT_INTERVAL_SECONDS; 10].",
)
@click.option(
    "--latest-frame-wins",
    is_flag=True,
    default=None,
    help="Skip a camera's stale frames when its backlog passes --backlog (recorded as skipped).",
)
@click.option(
    "--backlog",
    type=click.IntRange(1, 100_000),
    help="Frames waiting per camera before older ones are skipped "
    "[env DETECTFLOW_FRAME_BACKLOG; 4].",
)
@click.option(
    "--objects-config",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help='Zones, masks, lines and filters per camera: a JSON file {"cam-1": {"zones": ...}, '
    '"*": {...}} ("*": every other camera). Default: every label tracked, no zones.',
)
@click.option(
    "--tracking/--no-tracking",
    default=True,
    show_default=True,
    help="Track objects (track ids, object events, snapshots) or only record boxes.",
)
@click.option(
    "--until-empty",
    is_flag=True,
    help="Stop once the source has nothing left (the SQL queue: nothing pending or "
    "processing); exit 1 if frames were left unfinished, saying how many and why.",
)
@click.option(
    "--publish-mqtt",
    "publish_mqtt",
    metavar="mqtt://HOST:PORT/PREFIX",
    help="Publish object events and counts in Frigate's topic layout (docs/mqtt.md) "
    "[env DETECTFLOW_PUBLISH_MQTT_URL].",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Serve the flow's Prometheus metrics on 127.0.0.1:PORT/metrics.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
    help="What the flow logs to stderr (info: connections, subscriptions, recoveries).",
)
def flow_run(
    source_url: str,
    camera_id: str | None,
    workers: int,
    process_id: int | None,
    addresses: tuple[str, ...],
    recovery_dir: Path | None,
    snapshot_interval: float | None,
    latest_frame_wins: bool | None,
    backlog: int | None,
    objects_config: Path | None,
    tracking: bool,
    until_empty: bool,
    publish_mqtt: str | None,
    metrics_port: int | None,
    log_level: str,
) -> None:
    """Run the dataflow: frames -> provider -> detections in the database.

    Without --until-empty it runs until interrupted (Ctrl-C or SIGTERM
    finishes the frames in flight first). With DETECTFLOW_REDIS_URL set,
    results also go live to Redis for servers in other processes.
    """
    import logging
    import signal
    import threading

    from detectflow.flows import FlowError, FlowOptions, run_flow
    from detectflow.flows.metrics import FlowMetrics
    from detectflow.flows.objects import objects_configs_from
    from detectflow.flows.observe import FlowStatus, expected_frames, serve_flow_metrics
    from detectflow.store.backends import close_cache_and_bus, open_cache_and_bus
    from detectflow.store.live import LiveView

    try:
        settings = Settings.from_env().with_overrides(
            latest_frame_wins=latest_frame_wins,
            frame_backlog=backlog,
            publish_mqtt_url=publish_mqtt,
        )
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    configs = None
    if objects_config is not None:
        import json

        try:
            configs = objects_configs_from(json.loads(objects_config.read_text()))
        except ValueError as exc:  # json.JSONDecodeError is one
            raise click.UsageError(f"--objects-config: {exc}") from None
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = threading.Event()
    metrics = FlowMetrics()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    cache, bus = open_cache_and_bus(settings)
    total = expected_frames(source_url, settings) if until_empty else None
    exporter = serve_flow_metrics(metrics, metrics_port) if metrics_port else None
    try:
        with FlowStatus(metrics, total=total):
            options = FlowOptions(
                source_url=source_url,
                workers=workers,
                until_empty=until_empty,
                process_id=process_id,
                addresses=addresses or None,
                recovery_dir=recovery_dir,
                snapshot_interval=snapshot_interval,
                camera_id=camera_id,
                tracking=tracking,
            )
            run_flow(
                settings,
                options,
                live=LiveView(cache, bus),
                metrics=metrics,
                stop=stop,
                objects_config=configs,
            )
    except FlowError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        stop.set()
    finally:
        close_cache_and_bus(cache, bus)
        if exporter is not None:
            exporter.close()
    click.echo(metrics.summary())


if __name__ == "__main__":
    flow_run.main(prog_name="detectflow flow run")
