"""Queue claims are leases: holder, expiry, renewal, expiry sweep, deliveries, adoption.

On SQLite and PostgreSQL (the ``db`` fixture runs each test on both).
"""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import update

from detectflow.core.models import EventType, Frame, QueueStatus
from detectflow.store import Database
from detectflow.store.queue import FrameIdConflictError
from detectflow.store.tables import detection_processing_queue
from tests.store.builders import ago, frame, result

NEVER = timedelta(days=1)


def held(db: Database, owner: str) -> int:
    return db.held_by(owner)


def test_a_claim_names_its_holder_and_counts_a_delivery(db: Database) -> None:
    db.enqueue(frame())
    (row,) = db.claim_rows(1, owner="run-a", lease_seconds=30)
    assert row.deliveries == 1
    assert held(db, "run-a") == 1
    assert held(db, "run-b") == 0


def test_rows_whose_lease_expired_go_back_to_pending_with_an_event_per_holder(
    db: Database,
) -> None:
    for camera in ("cam-1", "cam-1", "cam-2"):
        db.enqueue(frame(camera))
    db.claim(3, owner="crashed-run", lease_seconds=-1)
    db.enqueue(frame("cam-3"))
    db.claim(1, owner="live-run", lease_seconds=3600)

    expired = db.expire_leases(unleased_after=NEVER)

    assert sorted((e.owner, e.camera_id, e.count) for e in expired) == [
        ("crashed-run", "cam-1", 2),
        ("crashed-run", "cam-2", 1),
    ]
    assert db.queue_stats()["pending"] == 3
    assert held(db, "live-run") == 1
    events, total = db.list_events(event_type=EventType.QUEUE_LEASE_EXPIRED)
    assert total == 2
    by_camera = {e.camera_id: e.message for e in events}
    assert "2 frame(s) went back to pending" in by_camera["cam-1"]
    assert "crashed-run" in by_camera["cam-1"]
    assert db.expire_leases(unleased_after=NEVER) == []  # nothing twice


def test_renewal_keeps_a_live_holders_rows(db: Database) -> None:
    db.enqueue(frame())
    db.enqueue(frame())
    db.claim(2, owner="run-a", lease_seconds=0.5)
    time.sleep(0.3)
    assert db.renew_leases("run-a", 30) == 2
    time.sleep(0.4)  # past the first lease, within the renewed one

    assert db.expire_leases(unleased_after=NEVER) == []
    assert held(db, "run-a") == 2


def test_rows_claimed_before_leases_expire_by_their_age(db: Database) -> None:
    old, recent = frame(), frame()
    for f in (old, recent):
        db.enqueue(f)
    db.claim(2)
    with db.engine.begin() as conn:  # as migration 0004 leaves rows claimed before it
        conn.execute(
            update(detection_processing_queue).values(lease_owner=None, lease_expires_at=None)
        )
        conn.execute(
            update(detection_processing_queue)
            .where(detection_processing_queue.c.id == old.frame_id)
            .values(updated_at=ago(120))
        )

    (expired,) = db.expire_leases(unleased_after=timedelta(seconds=60))

    assert (expired.owner, expired.count) == (None, 1)
    item = db.get_queue_item(old.frame_id)
    assert item is not None
    assert item.status == QueueStatus.PENDING


def test_each_claim_after_an_expiry_counts_another_delivery(db: Database) -> None:
    db.enqueue(frame())
    for expected in (1, 2):
        (row,) = db.claim_rows(1, owner="run", lease_seconds=-1)
        assert row.deliveries == expected
        db.expire_leases(unleased_after=NEVER)
    # Two holders lost it: the ordinary claim leaves it to a claim of its own.
    assert db.has_suspects()
    assert db.claim_rows(1, owner="run", lease_seconds=30) == []
    (row,) = db.claim_rows(1, owner="run", lease_seconds=30, suspects=True)
    assert row.deliveries == 3
    assert not db.has_suspects()


def test_final_rows_are_never_adopted_and_held_rows_stay_with_their_holder(
    db: Database,
) -> None:
    done, stale, pending, elsewhere = (frame() for _ in range(4))
    for f, owner in ((done, "dead-run"), (stale, "dead-run"), (elsewhere, "live-run")):
        db.enqueue(f)
        db.claim(1, owner=owner, lease_seconds=3600)
    db.record_results([result(done)])
    db.enqueue(pending)  # the sweep put it back: any holder's now

    adoption = db.adopt(
        [f.frame_id for f in (done, stale, pending, elsewhere)] + ["not-a-queue-frame"],
        owner="new-run",
        lease_seconds=30,
        previous=["dead-run"],
    )

    assert adoption.adopted == {stale.frame_id: 2, pending.frame_id: 1}  # a delivery more
    assert adoption.final == {done.frame_id}
    assert adoption.elsewhere == {elsewhere.frame_id}
    assert held(db, "new-run") == 2
    assert held(db, "live-run") == 1
    item = db.get_queue_item(done.frame_id)
    assert item is not None
    assert item.status == QueueStatus.COMPLETED


def test_unfinished_counts_pending_and_processing(db: Database) -> None:
    for _ in range(3):
        db.enqueue(frame())
    (first, _) = db.claim(2)
    db.record_results([result(db_frame(db, first.id))])
    assert db.unfinished() == {"pending": 1, "processing": 1}


def db_frame(db: Database, frame_id: str) -> Frame:
    item = db.get_queue_item(frame_id)
    assert item is not None
    return frame(item.camera_id, frame_id=item.id)


def test_enqueue_many_queues_a_batch_and_names_each_conflict(db: Database) -> None:
    taken = frame("cam-a", frame_id="shared")
    db.enqueue(taken)
    again = frame("cam-a", frame_id="f-1")
    batch = [again, frame("cam-b", frame_id="shared"), frame("cam-b", frame_id="f-2"), again]

    outcomes = db.enqueue_many(batch)

    assert [getattr(o, "id", None) for o in outcomes] == ["f-1", None, "f-2", "f-1"]
    assert isinstance(outcomes[1], FrameIdConflictError) and "another camera" in str(outcomes[1])
    assert db.queue_stats()["pending"] == 3  # shared (cam-a), f-1 once, f-2
    item = db.get_queue_item("f-2")
    assert item is not None and item.camera_id == "cam-b" and item.frame_data == batch[2].image
