"""Maintenance jobs: batched cleanup, the provider round trip, the schedule and the CLI."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from detectflow.cli import maintenance as jobs
from detectflow.cli.maintenance import Job, NoProviderError, maintenance, run_schedule
from detectflow.core.models import ProviderConfig, TestStatus, utcnow
from detectflow.core.object_config import ObjectsConfig
from detectflow.core.plugins import get_registry
from detectflow.core.settings import Settings
from detectflow.flows.objects import CameraStep
from detectflow.simulator import Simulator, run_in_thread
from detectflow.store import Database
from detectflow.store.maintenance import delete_in_batches
from detectflow.store.recorder import Recorder
from detectflow.store.snapshots import FileSnapshots
from tests.object_frames import scene_results
from tests.store.builders import frame, result


@pytest.fixture
def env(sqlite_url: str, secret_key: str, tmp_path: Path) -> dict[str, str]:
    return {
        "DETECTFLOW_DATABASE_URL": sqlite_url,
        "DETECTFLOW_SECRET_KEY": secret_key,
        "DETECTFLOW_DATA_DIR": str(tmp_path),
        "DETECTFLOW_DISABLE_PLUGIN_AUTOLOAD": "1",
    }


@pytest.fixture
def simulator() -> Iterator[str]:
    with run_in_thread(Simulator()) as running:
        yield running.detect_url()


def provider(url: str, *, active: bool = True, ident: str = "p1") -> ProviderConfig:
    return ProviderConfig(
        id=ident,
        provider_name=f"sim {ident}",
        provider_type="http_api",
        endpoint_url=url,
        timeout_seconds=5,
        is_active=active,
    )


def age(db: Database, hours: float, count: int, *, first: int = 0) -> None:
    """Record ``count`` frames (2 detections, 1 event each) written ``hours`` ago."""
    made = [frame(frame_id=f"f-{hours}-{first + i}") for i in range(count)]
    for made_frame in made:
        db.enqueue(made_frame)
    db.record_results([result(f, created_at=utcnow() - timedelta(hours=hours)) for f in made])


# -- cleanup -------------------------------------------------------------------------


def test_cleanup_deletes_old_rows_in_batches_and_keeps_the_rest(db: Database) -> None:
    age(db, 48, 5)
    age(db, 0, 2, first=100)
    db.enqueue(frame(frame_id="waiting"))
    batches: list[tuple[str, int]] = []

    report = jobs.cleanup(db, 1, batch_size=3, on_batch=lambda t, n: batches.append((t, n)))

    # Two days old: on PostgreSQL in the default partition (upgrade makes yesterday on).
    counts = report.deleted
    assert counts["detections"] == 10
    assert counts["events"] == 5
    # Queue rows age by updated_at, which record_results set to now: none is old yet.
    assert counts["queue"] == 0
    assert [n for t, n in batches if t == "detections"] == [3, 3, 3, 1]
    assert db.list_detections(limit=100)[1] == 4
    assert db.get_queue_item("waiting") is not None


def test_cleanup_with_zero_days_takes_finished_queue_rows_but_never_unfinished(
    db: Database,
) -> None:
    age(db, 0, 3)
    db.enqueue(frame(frame_id="pending-one"))
    time.sleep(0.01)  # the cutoff must be after the rows' timestamps

    counts = jobs.cleanup(db, 0, batch_size=2).deleted

    # PostgreSQL drops whole days: today's partition stays until its day is over.
    kept_today = db.is_postgres
    assert counts["detections"] == (0 if kept_today else 6)
    assert counts["events"] == (0 if kept_today else 3)
    assert counts["queue"] == 3
    assert (counts["windows"] == 0) == kept_today  # the recorder's tallies go with them
    assert db.queue_stats() == {**db.queue_stats(), "pending": 1, "total": 1}


def test_cleanup_refuses_a_negative_age_or_an_empty_batch(sqlite_db: Database) -> None:
    with pytest.raises(ValueError, match="days"):
        jobs.cleanup(sqlite_db, -1)
    with pytest.raises(ValueError, match="batch_size"):
        delete_in_batches(sqlite_db.engine, utcnow(), batch_size=0)


def test_cleanup_command_reports_what_it_deleted(sqlite_db: Database, env: dict[str, str]) -> None:
    age(sqlite_db, 24 * 40, 2)
    outcome = CliRunner().invoke(
        maintenance, ["cleanup", "--days", "30", "--batch-size", "1"], env=env
    )
    assert outcome.exit_code == 0, outcome.output
    assert (
        "deleted 4 detection(s), 2 event(s), 0 window row(s), 0 finished queue row(s) "
        "and 0 ended object(s)" in outcome.output
    )
    assert sqlite_db.list_detections()[1] == 0


def test_partitions_command_reports_what_it_made(
    postgres_url: str, secret_key: str, tmp_path: Path
) -> None:
    env = {
        "DETECTFLOW_DATABASE_URL": postgres_url,
        "DETECTFLOW_SECRET_KEY": secret_key,
        "DETECTFLOW_DATA_DIR": str(tmp_path),
        "DETECTFLOW_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    outcome = CliRunner().invoke(maintenance, ["partitions", "--days-ahead", "4"], env=env)
    assert outcome.exit_code == 0, outcome.output
    # Upgrade made yesterday to two days ahead; days 3 and 4 ahead, for three tables.
    assert "made 6 day partition(s); rolled up 0 day(s)" in outcome.output


def test_cleanup_command_refuses_bad_options_with_a_message(env: dict[str, str]) -> None:
    outcome = CliRunner().invoke(maintenance, ["cleanup", "--days", "-3"], env=env)
    assert outcome.exit_code == 2
    assert "Invalid value for '--days'" in outcome.output
    assert "Traceback" not in outcome.output


# -- test-provider ---------------------------------------------------------------------


def test_provider_round_trip_records_success(
    sqlite_db: Database, simulator: str, tmp_path: Path
) -> None:
    sqlite_db.create_provider(provider(simulator))
    registry = get_registry(Settings(data_dir=tmp_path, disable_plugin_autoload=True))

    config, outcome = jobs.run_provider_test(sqlite_db, registry)

    assert config.id == "p1"
    assert outcome.ok, outcome
    stored = sqlite_db.get_provider("p1")
    assert stored is not None
    assert stored.test_status == TestStatus.SUCCESS
    assert stored.last_tested is not None


def test_provider_round_trip_to_nothing_records_the_failure(
    sqlite_db: Database, free_port: int, tmp_path: Path
) -> None:
    sqlite_db.create_provider(provider(f"http://127.0.0.1:{free_port}/detect", active=False))
    registry = get_registry(Settings(data_dir=tmp_path, disable_plugin_autoload=True))

    _, outcome = jobs.run_provider_test(sqlite_db, registry, "p1")

    assert not outcome.ok
    stored = sqlite_db.get_provider("p1")
    assert stored is not None
    assert stored.test_status == TestStatus.FAILED
    assert stored.last_error


def test_provider_test_without_a_provider_says_so(sqlite_db: Database, tmp_path: Path) -> None:
    registry = get_registry(Settings(data_dir=tmp_path, disable_plugin_autoload=True))
    with pytest.raises(NoProviderError, match="no active provider"):
        jobs.run_provider_test(sqlite_db, registry)
    with pytest.raises(NoProviderError, match="'nope'"):
        jobs.run_provider_test(sqlite_db, registry, "nope")


def test_test_provider_command_succeeds_against_a_live_provider(
    sqlite_db: Database, simulator: str, env: dict[str, str]
) -> None:
    sqlite_db.create_provider(provider(simulator))
    outcome = CliRunner().invoke(maintenance, ["test-provider"], env=env)
    assert outcome.exit_code == 0, outcome.output
    assert "sim p1 (p1): Connection successful" in outcome.output


def test_test_provider_command_exits_1_when_the_provider_is_down(
    sqlite_db: Database, free_port: int, env: dict[str, str]
) -> None:
    sqlite_db.create_provider(provider(f"http://127.0.0.1:{free_port}/detect", ident="down"))
    outcome = CliRunner().invoke(maintenance, ["test-provider", "down"], env=env)
    assert outcome.exit_code == 1
    assert "Connection failed" in outcome.output


def test_test_provider_command_with_an_unknown_id_is_a_clear_error(
    sqlite_db: Database, env: dict[str, str]
) -> None:
    outcome = CliRunner().invoke(maintenance, ["test-provider", "ghost"], env=env)
    assert outcome.exit_code == 1
    assert "Error: no provider with id 'ghost'" in outcome.output


# -- the schedule ----------------------------------------------------------------------


@dataclass
class FakeStack:
    settings: Settings
    database: Database
    stop: threading.Event = field(default_factory=threading.Event)


def test_schedule_runs_each_job_on_its_interval_and_survives_a_failing_one(
    sqlite_db: Database, tmp_path: Path
) -> None:
    stack = FakeStack(Settings(data_dir=tmp_path), sqlite_db)
    runs: dict[str, int] = {"fast": 0, "broken": 0, "later": 0}

    def count(name: str) -> None:
        runs[name] += 1
        if name == "broken":
            raise RuntimeError("job bug")

    schedule = [
        Job("fast", 0.05, lambda: count("fast")),
        Job("broken", 0.05, lambda: count("broken")),
        Job("later", 60, lambda: count("later"), first=60),
    ]
    thread = threading.Thread(target=run_schedule, args=(stack, schedule))
    thread.start()
    time.sleep(0.4)
    stack.stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert 4 <= runs["fast"] <= 10
    assert runs["broken"] >= 4  # the exception did not end the schedule
    assert runs["later"] == 0


def test_schedule_refuses_a_job_without_an_interval(sqlite_db: Database, tmp_path: Path) -> None:
    stack = FakeStack(Settings(data_dir=tmp_path), sqlite_db)
    with pytest.raises(ValueError, match="every"):
        run_schedule(stack, [Job("never", 0, lambda: None)])


def test_default_schedule_tests_the_active_provider_at_once_and_cleans_up_later(
    sqlite_db: Database, simulator: str, tmp_path: Path
) -> None:
    sqlite_db.create_provider(provider(simulator))
    age(sqlite_db, 24 * 31, 1)
    stack = FakeStack(Settings(data_dir=tmp_path, disable_plugin_autoload=True), sqlite_db)
    default = jobs.default_jobs(stack)
    assert [(j.name, j.every) for j in default] == [
        ("test-provider", 3600),
        ("partitions", 3600),
        ("cleanup", 86400),
    ]

    thread = threading.Thread(target=run_schedule, args=(stack,))
    thread.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stored = sqlite_db.get_provider("p1")
        if stored is not None and stored.test_status != TestStatus.UNTESTED:
            break
        time.sleep(0.02)
    stack.stop.set()
    thread.join(10)
    assert not thread.is_alive()
    stored = sqlite_db.get_provider("p1")
    assert stored is not None and stored.test_status == TestStatus.SUCCESS
    assert sqlite_db.list_detections()[1] == 2  # the first cleanup waits a minute

    deleted = default[2].run().deleted
    assert (deleted["detections"], deleted["events"], deleted["queue"]) == (2, 1, 0)
    made, _rolled = default[1].run()
    assert made == []  # SQLite: plain tables, no partitions


def test_cleanup_deletes_ended_objects_with_their_snapshots_and_keeps_the_rest(
    sqlite_db: Database, tmp_path: Path
) -> None:
    snapshots = FileSnapshots(tmp_path / "snapshots")
    ended = CameraStep("cam-1", ObjectsConfig())
    going = CameraStep("cam-2", ObjectsConfig())
    results = ended.push(scene_results("cam-1")) + ended.stop()
    results += going.push(scene_results("cam-2")) + going.flush()  # still in progress
    Recorder(sqlite_db, snapshots=snapshots).record(results)
    kept = {o.id: o.snapshot_path for o in sqlite_db.page_objects().items}
    assert len(kept) == 4 and all(snapshots.load(k) for k in kept.values() if k)

    report = jobs.cleanup(sqlite_db, 0, snapshots=snapshots)

    assert report.deleted["objects"] == 2
    left = sqlite_db.page_objects().items
    assert {o.camera_id for o in left} == {"cam-2"} and all(o.in_progress for o in left)
    gone = [k for oid, k in kept.items() if oid not in {o.id for o in left}]
    assert gone and all(snapshots.load(k) is None for k in gone)
