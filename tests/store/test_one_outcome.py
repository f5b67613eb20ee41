"""A queue frame has exactly one final outcome, however many holders report it.

A holder whose lease expired while it was slow and the run that took the
frame over may both come back with a result (issue: crash recovery). The
first to finish the row records; the other records nothing.
"""

from __future__ import annotations

import dataclasses

import pytest

from detectflow.core.models import Frame, FrameResult
from detectflow.core.windows import TUMBLING
from detectflow.store import Database
from detectflow.store.queue import LEASE_ATTR
from tests.store.builders import frame, record_concurrently, result


def held_by(f: Frame, owner: str) -> Frame:
    return dataclasses.replace(f, attributes={LEASE_ATTR: owner})


def outcome(db: Database, f: Frame) -> tuple[str, int, list[str], int]:
    item = db.get_queue_item(f.frame_id)
    assert item is not None
    _, detections = db.list_detections(camera_id=f.camera_id, limit=100)
    events, _ = db.list_events(camera_id=f.camera_id, limit=100)
    windows, _ = db.list_window_stats(camera_id=f.camera_id, kind=TUMBLING, limit=100)
    return (
        str(item.status),
        detections,
        sorted(str(e.event_type) for e in events),
        sum(w.count for _, w in windows),
    )


@pytest.mark.parametrize("first", ["completed", "failed"])
def test_the_first_holder_to_finish_a_frame_decides_its_outcome(db: Database, first: str) -> None:
    f = frame("cam-1")
    db.enqueue(f)
    ok = result(held_by(f, "run-a"), detections=2)
    failed = result(held_by(f, "run-b"), error="provider timed out")
    ordered = [ok, failed] if first == "completed" else [failed, ok]

    for r in ordered:
        db.record_results([r])

    status, detections, events, counted = outcome(db, f)
    assert status == first
    if first == "completed":
        assert (detections, events, counted) == (2, ["detection_completed"], 2)
    else:
        assert (detections, events, counted) == (0, ["detection_failed"], 0)


@pytest.mark.parametrize("first", ["completed", "failed"])
def test_two_holders_results_in_one_batch_leave_the_first_outcome(db: Database, first: str) -> None:
    """The dataflow's objects step may hand a resumed holder's result on in the same
    batch as the taking-over run's result for the same frame."""
    f = frame("cam-1")
    db.enqueue(f)
    ok = result(held_by(f, "run-a"), detections=2)
    failed = result(held_by(f, "run-b"), error="provider timed out")

    db.record_results([ok, failed] if first == "completed" else [failed, ok])

    status, detections, events, counted = outcome(db, f)
    assert status == first
    if first == "completed":
        assert (detections, events, counted) == (2, ["detection_completed"], 2)
    else:
        assert (detections, events, counted) == (0, ["detection_failed"], 0)


def test_a_replayed_result_of_a_finished_frame_changes_nothing(db: Database) -> None:
    f = frame("cam-1")
    db.enqueue(f)
    db.record_results([result(held_by(f, "run-a"), detections=3)])
    before = outcome(db, f)
    db.record_results([result(held_by(f, "run-a"), detections=3)])
    assert outcome(db, f) == before == ("completed", 3, ["detection_completed"], 3)


def test_unclaimed_results_are_recorded_as_before(db: Database) -> None:
    """Frames from Redis, MQTT or send-frame carry no lease: nothing to guard."""
    f = frame("cam-2")
    db.record_results([result(f, detections=1)])
    _, detections = db.list_detections(camera_id="cam-2", limit=10)
    assert detections == 1


@pytest.mark.postgres
def test_two_holders_finishing_at_once_leave_one_outcome(
    postgres_url: str, secret_key: str
) -> None:
    """Real concurrency: each holder writes in its own transaction on its own
    connection; the guarded UPDATE's row lock lets only one of them record."""
    from tests.databases import migrated_database

    with migrated_database(postgres_url, secret_key) as db:
        frames = [frame(f"cam-{i}", frame_id=f"f-{i}") for i in range(40)]
        for f in frames:
            db.enqueue(f)
        batches: list[list[FrameResult]] = [
            [result(held_by(f, "run-a"), detections=2) for f in frames],
            [result(held_by(f, "run-b"), error="late holder") for f in reversed(frames)],
        ]
        record_concurrently(db, batches)
        for f in frames:
            status, detections, events, counted = outcome(db, f)
            assert len(events) == 1, f.frame_id
            if status == "completed":
                assert (detections, counted) == (2, 2)
            else:
                assert (status, detections, counted) == ("failed", 0, 0)
