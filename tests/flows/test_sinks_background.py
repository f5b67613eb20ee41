"""The background writer: the worker hands batches over, one thread writes them in order."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest
from sqlalchemy import text

from detectflow import FrameResult
from detectflow.core.pipeline import failed_result
from detectflow.flows.metrics import FlowMetrics
from detectflow.flows.sinks import BackgroundWriter
from detectflow.store import Database
from detectflow.store.recorder import Recorder
from tests.flows.conftest import frames


def failures(count: int, camera: str = "cam-1") -> list[FrameResult]:
    return [failed_result(f, "x") for f in frames(count, cameras=(camera,))]


class GatedStore:
    """Writes to a real database, but only once the test opens the gate."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.batches: list[list[str]] = []

    def record_results(self, results: Sequence[FrameResult]) -> None:
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        self.db.record_results(results)
        self.batches.append([r.frame.frame_id for r in results])


def test_submit_returns_before_the_write_and_flush_waits_for_it(sqlite_db: Database) -> None:
    store = GatedStore(sqlite_db)
    acked: list[str] = []
    writer = Recorder(store, on_stored=lambda rs: acked.extend(r.frame.frame_id for r in rs))
    batch = failures(3)
    with BackgroundWriter(writer) as background:
        background.submit(batch)  # returns although the store is blocked
        assert store.entered.wait(5)
        assert acked == [] and sqlite_db.list_events()[1] == 0
        store.gate.set()
        background.flush()
        assert sqlite_db.list_events()[1] == 3
        assert acked == [r.frame.frame_id for r in batch]  # acknowledged after the commit


def test_batches_queued_meanwhile_are_written_together_in_order(sqlite_db: Database) -> None:
    store = GatedStore(sqlite_db)
    first, second, third = failures(2, "cam-a"), failures(2, "cam-b"), failures(2, "cam-c")
    with BackgroundWriter(Recorder(store)) as background:
        background.submit(first)
        assert store.entered.wait(5)
        background.submit(second)
        background.submit(third)
        store.gate.set()
    ids = [r.frame.frame_id for r in (*first, *second, *third)]
    assert store.batches == [ids[:2], ids[2:]]


def test_submit_blocks_while_max_pending_results_wait(sqlite_db: Database) -> None:
    store = GatedStore(sqlite_db)
    background = BackgroundWriter(Recorder(store), max_pending=2)
    try:
        background.submit(failures(1, "cam-a"))
        assert store.entered.wait(5)
        background.submit(failures(2, "cam-b"))  # fills the queue
        done = threading.Event()
        blocked = threading.Thread(
            target=lambda: (background.submit(failures(1, "cam-c")), done.set())
        )
        blocked.start()
        assert not done.wait(0.2), "submit should wait while the queue is full"
        store.gate.set()
        assert done.wait(5)
        blocked.join(5)
    finally:
        store.gate.set()
        background.close()
    assert sqlite_db.list_events()[1] == 4


def test_a_write_error_is_raised_on_the_worker_and_nothing_is_acknowledged(
    sqlite_db: Database,
) -> None:
    with sqlite_db.engine.begin() as conn:  # a real database refusal
        conn.execute(
            text(
                "CREATE TRIGGER refuse_all BEFORE INSERT ON detection_event_logs "
                "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
            )
        )
    acked: list[FrameResult] = []
    background = BackgroundWriter(Recorder(sqlite_db, on_stored=acked.extend))
    background.submit(failures(2))
    with pytest.raises(Exception, match="disk says no"):
        background.flush()
    with pytest.raises(Exception, match="disk says no"):
        background.submit(failures(1, "cam-2"))
    with pytest.raises(Exception, match="disk says no"):
        background.close()
    assert acked == []


def test_limits_must_be_positive(sqlite_db: Database) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BackgroundWriter(Recorder(sqlite_db), max_pending=0)


def test_a_closed_writer_refuses_more_work(sqlite_db: Database) -> None:
    background = BackgroundWriter(Recorder(sqlite_db))
    background.close()
    with pytest.raises(RuntimeError, match="closed"):
        background.submit(failures(1))


class GatedLive:
    """A live publisher that holds the first announcement until the test opens the gate."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.batches: list[list[str]] = []

    def publish(self, results: Sequence[FrameResult]) -> None:
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        self.batches.append([r.frame.frame_id for r in results])


def test_announcing_a_batch_overlaps_committing_the_next(sqlite_db: Database) -> None:
    live = GatedLive()
    first, second = failures(2, "cam-a"), failures(3, "cam-b")
    with BackgroundWriter(Recorder(sqlite_db, live=live)) as background:
        background.submit(first)
        assert live.entered.wait(5)  # the first batch is committed and being announced
        background.submit(second)
        deadline = time.monotonic() + 5
        while sqlite_db.list_events()[1] < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sqlite_db.list_events()[1] == 5, "the second commit waited for an announcement"
        assert live.batches == []
        live.gate.set()
        background.flush()
    assert live.batches == [
        [r.frame.frame_id for r in first],
        [r.frame.frame_id for r in second],
    ]


class BrokenMetrics(FlowMetrics):
    """Counting that fails: no real fault makes FlowMetrics raise, so this stands in."""

    def record(self, results: Sequence[FrameResult]) -> None:
        raise RuntimeError("metrics broke")


def test_an_announcing_error_is_raised_on_the_worker(sqlite_db: Database) -> None:
    background = BackgroundWriter(Recorder(sqlite_db, observer=BrokenMetrics()))
    background.submit(failures(2))
    with pytest.raises(RuntimeError, match="metrics broke"):
        background.flush()
    assert sqlite_db.list_events()[1] == 2  # committed before the announcement failed
    with pytest.raises(RuntimeError, match="metrics broke"):
        background.submit(failures(1, "cam-2"))
    with pytest.raises(RuntimeError, match="metrics broke"):
        background.close()
