"""A crash leaves no queued frame behind: leases, not a start-up sweep.

Acceptance tests of the issue "A crash leaves queued frames stuck in
processing": real ``flow run`` processes on real SQLite and PostgreSQL,
the simulated provider on loopback, SIGKILL. Frames are queued with
:meth:`Database.enqueue` (what ``send-frame?mode=queue`` calls). Leases are
short here (``lease_seconds`` of a few seconds, the default is 30) so a
test waits seconds, not minutes, for a dead run's leases to lapse.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from detectflow.core.frames import make_frame
from detectflow.core.ids import new_id
from detectflow.core.models import EventType, Frame, ProviderConfig
from detectflow.samples import sample_frame
from detectflow.store import Database
from tests.flows.flow_processes import (
    FlowProcess,
    finished_frames,
    flow_env,
    provider,
    unique_detections,
    wait_for,
)
from tests.flows.poison_flow import POISON_FRAME_ID, POISON_TYPE

LEASE_SECONDS = 3


def _queue(db: Database, count: int, tag: str) -> list[str]:
    """``count`` frames over 4 cameras, queued; their ids."""
    frames = [
        make_frame(
            f"cam-{tag}-{i % 4}",
            sample_frame(f"cam-{tag}-{i % 4}", i, 32, 24),
            max_bytes=1 << 20,
            frame_id=f"{tag}-{i:05d}",
            frame_number=i,
        )
        for i in range(count)
    ]
    for frame in frames:
        db.enqueue(frame)
    return [f.frame_id for f in frames]


def _counts(db: Database) -> dict[str, int]:
    return db.queue_stats()


def _done(db: Database) -> int:
    stats = _counts(db)
    return stats["completed"] + stats["failed"] + stats["skipped"]


def _assert_one_outcome_each(db: Database, frame_ids: list[str]) -> None:
    stats = _counts(db)
    assert stats["pending"] == stats["processing"] == 0, stats
    done = finished_frames(db, frame_ids)
    missing = [f for f in frame_ids if f not in done]
    assert not missing, f"{len(missing)} frame(s) without a final event, e.g. {missing[:3]}"
    twice = {f: kinds for f, kinds in done.items() if len(kinds) != 1}
    assert not twice, f"frames with two final events: {list(twice.items())[:3]}"
    total, distinct = unique_detections(db)
    assert total == distinct, "a replay wrote a detection twice"


def _lease_expired_holders(db: Database) -> str:
    events, _ = db.list_events(event_type=EventType.QUEUE_LEASE_EXPIRED, limit=1000)
    return " ".join(e.message for e in events)


@pytest.mark.slow
def test_a_run_sigkilled_and_restarted_at_once_finishes_every_frame(
    db: Database, database_url: str, secret_key: str, tmp_path: Path
) -> None:
    frame_ids = _queue(db, 400, "k")
    env = flow_env(database_url, secret_key, tmp_path)
    run = FlowProcess("flow", ["--source", f"sql://?lease_seconds={LEASE_SECONDS}"], env, tmp_path)
    try:
        with provider(db, latency=0.3):
            run.start()
            wait_for(
                lambda: _done(db) >= 40, timeout=60, what="the run to get going", processes=(run,)
            )
            assert run.kill() == -9
            stuck = _counts(db)["processing"]
            assert stuck > 0, "nothing was in flight at the kill"
            killed_at = time.monotonic()
            run.start()  # at once, and without a recovery directory

            wait_for(
                lambda: _counts(db)["processing"] + _counts(db)["pending"] == 0,
                timeout=120,
                what="every frame to finish",
                processes=(run,),
            )
            took = time.monotonic() - killed_at
            run.stop()
    finally:
        run.cleanup()
    assert _counts(db)["completed"] == 400
    _assert_one_outcome_each(db, frame_ids)
    # The dead run's rows came back through lease expiry, named in the event log.
    assert "stopped renewing its lease" in _lease_expired_holders(db)
    print(f"{stuck} frame(s) stuck at the kill; all 400 done {took:.1f} s after it")


@pytest.mark.slow
@pytest.mark.postgres
def test_the_surviving_process_finishes_the_frames_of_a_dead_one(
    pg: Database, postgres_url: str, secret_key: str, tmp_path: Path
) -> None:
    db = pg
    frame_ids = _queue(db, 300, "s")
    env = flow_env(postgres_url, secret_key, tmp_path)
    source = ["--source", f"sql://?lease_seconds={LEASE_SECONDS}"]
    survivor = FlowProcess("survivor", source, env, tmp_path)
    victim = FlowProcess("victim", source, env, tmp_path)
    processes = (survivor, victim)
    try:
        with provider(db, latency=0.1):
            for p in processes:
                p.start()
            wait_for(
                lambda: _done(db) >= 60 and _holders(db) == 2,
                timeout=60,
                what="both processes to hold frames",
                processes=processes,
            )
            assert victim.kill() == -9  # and never restarted
            wait_for(
                lambda: _counts(db)["processing"] + _counts(db)["pending"] == 0,
                timeout=120,
                what="the survivor to finish every frame",
                processes=(survivor,),
            )
            survivor.stop()
    finally:
        for p in processes:
            p.cleanup()
    assert _counts(db)["completed"] == 300
    _assert_one_outcome_each(db, frame_ids)
    assert "stopped renewing its lease" in _lease_expired_holders(db)


def _holders(db: Database) -> int:
    with db.engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(DISTINCT lease_owner) FROM detection_processing_queue "
                    "WHERE status = 'processing'"
                )
            ).scalar_one()
        )


@pytest.mark.slow
@pytest.mark.postgres
def test_a_chaotic_backfill_killed_and_resumed_until_empty_ends_only_when_done(
    pg: Database, postgres_url: str, secret_key: str, tmp_path: Path
) -> None:
    db = pg
    frame_ids = _queue(db, 1500, "c")
    env = flow_env(
        postgres_url,
        secret_key,
        tmp_path,
        DETECTFLOW_MAX_IN_FLIGHT="32",
        DETECTFLOW_BATCH_SIZE="32",
    )
    recovery = ["--recovery-dir", str(tmp_path / "recovery"), "--snapshot-interval", "0.5"]
    source = ["--source", f"sql://?lease_seconds={LEASE_SECONDS}"]
    run = FlowProcess("chaos", [*source, *recovery], env, tmp_path)
    try:
        with provider(
            db,
            latency=0.02,
            timeout_seconds=0.5,
            max_retries=2,
            error_rate=0.2,
            timeout_rate=0.1,
            malformed_rate=0.05,
            hang_seconds=3.0,
        ):
            run.start()
            wait_for(
                lambda: _done(db) >= 150, timeout=60, what="the run to get going", processes=(run,)
            )
            assert run.kill() == -9
            assert _done(db) < 1500, "killed after the run ended"
            resumed = subprocess.run(
                [*run.command, *source, *recovery, "--until-empty"],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            after_exit = _counts(db)
    finally:
        run.cleanup()
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Task was destroyed but it is pending" not in resumed.stderr
    assert after_exit["pending"] + after_exit["processing"] == 0, after_exit
    assert after_exit["completed"] + after_exit["failed"] == 1500, after_exit
    assert after_exit["failed"] > 0, "the provider's faults failed no frame"
    with db.engine.connect() as conn:
        no_reason = conn.execute(
            text(
                "SELECT count(*) FROM detection_processing_queue "
                "WHERE status = 'failed' AND (error_message IS NULL OR error_message = '')"
            )
        ).scalar_one()
    assert no_reason == 0
    _assert_one_outcome_each(db, frame_ids)


@pytest.mark.slow
def test_a_poison_frame_is_failed_after_max_deliveries_and_the_others_complete(
    db: Database, database_url: str, secret_key: str, tmp_path: Path
) -> None:
    frames: list[Frame] = [
        make_frame(
            "cam-p",
            sample_frame("cam-p", i, 32, 24),
            max_bytes=1 << 20,
            frame_id=POISON_FRAME_ID if i == 3 else f"p-{i:03d}",
            frame_number=i,
        )
        for i in range(24)
    ]
    for frame in frames:
        db.enqueue(frame)
    db.create_provider(
        ProviderConfig(
            id=new_id(),
            provider_name="poison",
            provider_type=POISON_TYPE,
            endpoint_url="inprocess://poison",
            is_active=True,
        )
    )
    env = flow_env(database_url, secret_key, tmp_path)
    command = [sys.executable, "-m", "tests.flows.poison_flow"]
    args = ["--source", "sql://?lease_seconds=1&max_deliveries=5", "--until-empty"]
    kills = 0
    outcome: subprocess.CompletedProcess[str] | None = None
    for _ in range(10):
        outcome = subprocess.run(
            [*command, *args], env=env, capture_output=True, text=True, timeout=120
        )
        if outcome.returncode != -9:
            break
        kills += 1
    assert outcome is not None
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    assert kills == 5  # once per delivery, then never again
    poisoned = db.get_queue_item(POISON_FRAME_ID)
    assert poisoned is not None
    assert poisoned.status == "failed"
    assert poisoned.error_message is not None
    assert "abandoned after 5 deliveries" in poisoned.error_message
    stats = _counts(db)
    assert (stats["completed"], stats["failed"]) == (23, 1), stats
    _assert_one_outcome_each(db, [f.frame_id for f in frames])
