"""A frame its source stamped on arrival, delivered twice, is stored once.

MQTT frames may carry no time; they are stamped when they arrive, so a
broker's redelivery after a crash comes with a later timestamp. Rows are
keyed (id, frame time) (day partitions on PostgreSQL), so without a lookup
by id the second copy would be stored beside the first.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from detectflow.core.frames import TIME_OF_ARRIVAL
from detectflow.core.models import utcnow
from detectflow.store import Database
from tests.store.builders import frame, result


def _totals(db: Database) -> tuple[int, int, int]:
    windows, _ = db.list_window_stats(kind="tumbling", limit=100)
    return db.list_detections(limit=100)[1], db.list_events()[1], sum(w.count for _, w in windows)


def test_a_redelivered_frame_stamped_on_arrival_is_stored_once(db: Database) -> None:
    first = frame("cam-1", timestamp=utcnow() - timedelta(minutes=3))
    first = replace(first, attributes={TIME_OF_ARRIVAL: "1"})
    again = replace(first, timestamp=first.timestamp + timedelta(seconds=40))

    db.record_results([result(first, detections=2)])
    db.record_results([result(again, detections=2), result(frame("cam-1"), detections=1)])

    assert _totals(db) == (3, 2, 3)


def test_both_copies_in_one_batch_are_stored_once(db: Database) -> None:
    """After a crash the resumed flow's copy (from its snapshot) and the broker's
    redelivery of the same frame can reach the recorder together."""
    first = frame("cam-1", timestamp=utcnow() - timedelta(minutes=3))
    first = replace(first, attributes={TIME_OF_ARRIVAL: "1"})
    again = replace(first, timestamp=first.timestamp + timedelta(seconds=40))

    db.record_results([result(first, detections=2), result(again, detections=2)])

    assert _totals(db) == (2, 1, 2)
