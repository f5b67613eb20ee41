"""Maintenance jobs: retention cleanup and the provider round trip, by hand or on a schedule.

The guide runs these as Celery beat tasks (``cleanup_old_detections`` daily
with 30 days kept, ``test_detection_provider`` hourly on the active config).
detectflow has no task queue, so they are plain functions with three ways
in: ``detectflow maintenance cleanup`` / ``test-provider`` for an operator
or a cron job, and :func:`run_schedule` for ``detectflow up``, which runs
them in a background thread of the process that already holds the database.

Cleanup drops whole day partitions on PostgreSQL and deletes in batches
elsewhere (:func:`detectflow.store.maintenance.cleanup`), one short
transaction each, so it can run beside a busy dataflow. A third job, hourly,
makes the day partitions of the coming week and sums closed days of window
statistics into day rows (what ``/summary`` reads), as ``maintenance
partitions`` does by hand.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

import click

from detectflow.cli.context import settings_of
from detectflow.core.models import ProbeResult, ProviderConfig
from detectflow.core.plugins import PluginRegistry, get_registry
from detectflow.core.settings import Settings
from detectflow.store import Database, open_database
from detectflow.store.maintenance import DEFAULT_BATCH_SIZE, CleanupReport
from detectflow.store.partitions import DAYS_AHEAD
from detectflow.store.snapshots import SnapshotStore, snapshot_store

__all__ = [
    "CLEANUP_EVERY_SECONDS",
    "DEFAULT_RETENTION_DAYS",
    "PARTITIONS_EVERY_SECONDS",
    "TEST_PROVIDER_EVERY_SECONDS",
    "Job",
    "NoProviderError",
    "cleanup",
    "default_jobs",
    "maintenance",
    "prepare_days",
    "run_provider_test",
    "run_schedule",
]

log = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 30
CLEANUP_EVERY_SECONDS = 86_400.0
TEST_PROVIDER_EVERY_SECONDS = 3_600.0
PARTITIONS_EVERY_SECONDS = 3_600.0


class NoProviderError(LookupError):
    """No provider with that id, or no active one: nothing to test."""


def cleanup(
    database: Database,
    days: float,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[str, int], None] | None = None,
    snapshots: SnapshotStore | None = None,
) -> CleanupReport:
    """Remove detections, events, window statistics and finished queue rows older
    than ``days`` (>= 0; 0 removes everything finished), and tracked objects that
    ended before then with their snapshots. On PostgreSQL whole day partitions
    go, so the cutoff rounds down to midnight UTC.
    """
    if days < 0:
        raise ValueError(f"days must be >= 0, got {days}")
    report = database.cleanup(timedelta(days=days), batch_size=batch_size, on_batch=on_batch)
    # Ended objects go with their snapshots; objects in progress stay, however old.
    keys = database.delete_ended_objects(timedelta(days=days))
    report.deleted["objects"] = len(keys)
    if snapshots is not None:
        snapshots.delete(keys)
    return report


def prepare_days(database: Database, *, days_ahead: int = DAYS_AHEAD) -> tuple[list[str], int]:
    """Make the day partitions up to ``days_ahead`` days ahead and roll closed days of
    window statistics up into day rows; returns (partitions made, days rolled up)."""
    made = database.ensure_partitions(days_ahead=days_ahead)
    rolled = database.roll_up_windows()
    return made, len(rolled)


def run_provider_test(
    database: Database,
    registry: PluginRegistry,
    provider_id: str | None = None,
) -> tuple[ProviderConfig, ProbeResult]:
    """Round-trip the probe frame through a provider (default: the active one) and
    store the outcome as its test status, as the server's test-provider does.

    Raises :class:`NoProviderError` when there is nothing to test.
    """
    import anyio

    from detectflow.adapters.probe import build_adapter, probe_provider

    if provider_id is None:
        config = database.active_provider()
        if config is None:
            raise NoProviderError("no active provider configured")
    else:
        config = database.get_provider(provider_id)
        if config is None:
            raise NoProviderError(f"no provider with id {provider_id!r}")

    async def probe() -> ProbeResult:
        return await probe_provider(config, open_adapter=build_adapter(registry), recorder=database)

    return config, anyio.run(probe)


# -- the schedule ----------------------------------------------------------------


@dataclass
class Job:
    """A job run every ``every`` seconds; the first run is ``first`` seconds after start."""

    name: str
    every: float
    run: Callable[[], object]
    first: float = 0.0


class _Stack(Protocol):
    """What :func:`run_schedule` needs of :class:`detectflow.cli.runner.Stack`."""

    settings: Settings
    database: Database
    stop: threading.Event


def default_jobs(
    stack: _Stack,
    *,
    retention_days: float = DEFAULT_RETENTION_DAYS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    registry: PluginRegistry | None = None,
) -> list[Job]:
    """The guide's beat table (test the active provider hourly, clean up daily) and
    the storage job (partitions ahead and day rollups, hourly).

    The provider test runs once right away, so a misconfigured provider
    shows on the first health check; the first cleanup waits a minute, so
    starting a deployment does not start with a large delete.
    """

    def run_cleanup() -> CleanupReport:
        report = cleanup(
            stack.database,
            retention_days,
            batch_size=batch_size,
            snapshots=snapshot_store(stack.settings),
        )
        log.info("maintenance cleanup (older than %g days): %s", retention_days, report)
        return report

    def run_prepare() -> tuple[list[str], int]:
        made, rolled = prepare_days(stack.database)
        log.info("maintenance partitions: made %s, rolled up %d day(s)", made, rolled)
        return made, rolled

    def run_test() -> ProbeResult | None:
        try:
            config, result = run_provider_test(
                stack.database, registry or get_registry(stack.settings)
            )
        except NoProviderError:
            log.info("maintenance test-provider: no active provider configured")
            return None
        level = logging.INFO if result.ok else logging.WARNING
        log.log(
            level,
            "provider %r test: %s %s",
            config.provider_name,
            result.message,
            result.error or "",
        )
        return result

    return [
        Job("test-provider", TEST_PROVIDER_EVERY_SECONDS, run_test, first=0.0),
        Job("partitions", PARTITIONS_EVERY_SECONDS, run_prepare, first=0.0),
        Job("cleanup", CLEANUP_EVERY_SECONDS, run_cleanup, first=60.0),
    ]


def run_schedule(
    stack: _Stack,
    jobs: Sequence[Job] | None = None,
    *,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Run ``jobs`` (default :func:`default_jobs`) until ``stop`` (default ``stack.stop``) is set.

    Meant for a background thread of ``detectflow up``. A job that raises is
    logged and runs again at its next time: one failed cleanup must not end
    the schedule. Jobs run one at a time, in this thread.
    """
    stop = stop or stack.stop
    jobs = list(jobs) if jobs is not None else default_jobs(stack)
    for job in jobs:
        if job.every <= 0:
            raise ValueError(f"job {job.name!r}: every must be > 0, got {job.every}")
    start = clock()
    due = {job.name: start + max(0.0, job.first) for job in jobs}
    while not stop.is_set():
        now = clock()
        for job in jobs:
            if stop.is_set():
                return
            if now < due[job.name]:
                continue
            try:
                job.run()
            except Exception:
                log.exception(
                    "maintenance job %s failed; it runs again in %g s", job.name, job.every
                )
            due[job.name] = max(due[job.name] + job.every, clock())
        stop.wait(max(0.0, min(due.values()) - clock()))


# -- the CLI ----------------------------------------------------------------------


def _open(settings: Settings) -> Database:
    database = open_database(settings)
    try:
        database.upgrade()
    except BaseException:
        database.dispose()
        raise
    return database


@click.group("maintenance")
def maintenance() -> None:
    """Retention cleanup and provider tests (the guide's periodic jobs).

    `detectflow up` runs both on a schedule; these commands run them once,
    for a cron job or by hand.
    """


@maintenance.command("cleanup")
@click.option(
    "--days",
    type=click.FloatRange(min=0),
    default=DEFAULT_RETENTION_DAYS,
    show_default=True,
    help="Keep this many days; older detections, events and finished queue rows go.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 1_000_000),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Rows deleted per transaction.",
)
@click.pass_context
def cleanup_cmd(ctx: click.Context, days: float, batch_size: int) -> None:
    """Delete old detections, events and finished queue rows, in batches."""
    database = _open(settings_of(ctx))
    started = time.perf_counter()
    try:
        report = cleanup(
            database, days, batch_size=batch_size, snapshots=snapshot_store(settings_of(ctx))
        )
    finally:
        database.dispose()
    took_ms = (time.perf_counter() - started) * 1000
    counts = report.deleted
    click.echo(
        f"deleted {counts['detections']} detection(s), {counts['events']} event(s), "
        f"{counts['windows']} window row(s), {counts['queue']} finished queue row(s) "
        f"and {counts['objects']} ended object(s) older than {days:g} day(s)"
    )
    dropped = sum(report.dropped.values())
    if dropped:
        rows = sum(report.dropped_rows.values())
        click.echo(f"dropped {dropped} day partition(s) holding about {rows} row(s)")
    click.echo(f"took {took_ms:.0f} ms")


@maintenance.command("partitions")
@click.option(
    "--days-ahead",
    type=click.IntRange(0, 366),
    default=DAYS_AHEAD,
    show_default=True,
    help="Make day partitions up to this many days ahead (PostgreSQL).",
)
@click.pass_context
def partitions_cmd(ctx: click.Context, days_ahead: int) -> None:
    """Make the coming days' partitions and roll closed days of window statistics up.

    `detectflow up` runs this hourly; run it from cron otherwise (daily is enough).
    """
    database = _open(settings_of(ctx))
    try:
        made, rolled = prepare_days(database, days_ahead=days_ahead)
    finally:
        database.dispose()
    click.echo(f"made {len(made)} day partition(s); rolled up {rolled} day(s) of window statistics")


@maintenance.command("test-provider")
@click.argument("provider_id", required=False)
@click.pass_context
def test_provider_cmd(ctx: click.Context, provider_id: str | None) -> None:
    """Send the built-in probe image to a provider (default: the active one).

    Stores the outcome as the provider's test status; exits 1 if it failed.
    """
    settings = settings_of(ctx)
    database = _open(settings)
    try:
        config, result = run_provider_test(database, get_registry(settings), provider_id)
    except NoProviderError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        database.dispose()
    took = f"{result.response_time_ms:.0f} ms"
    line = f"{config.provider_name} ({config.id}): {result.message} in {took}"
    if result.ok:
        click.echo(line)
        return
    click.echo(f"{line}: {result.error}", err=True)
    ctx.exit(1)
