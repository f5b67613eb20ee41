"""FailoverAdapter and BreakerBoard over FunctionAdapters (the ready adapter double)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

import pytest

from detectflow.adapters.failover import BreakerBoard, FailoverAdapter
from detectflow.core.adapter import FunctionAdapter
from detectflow.core.breaker import CIRCUIT_CLOSED, CIRCUIT_OPENED, BreakerPolicy, BreakerState
from detectflow.core.errors import PermanentProviderError, TransientProviderError
from detectflow.core.frames import make_frame
from detectflow.core.models import Frame, ProviderConfig, RawDetection
from detectflow.core.pipeline import run_frame
from detectflow.samples import sample_frame

FRAME = make_frame("cam-1", sample_frame("cam", 0, 32, 24), max_bytes=1 << 20, frame_number=0)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def cfg(name: str, threshold: float = 0.5) -> ProviderConfig:
    return ProviderConfig(
        id=name,
        provider_name=name,
        provider_type="function",
        endpoint_url="",
        confidence_threshold=threshold,
    )


def up(confidence: float = 0.9) -> Callable[[Frame], list[RawDetection]]:
    return lambda _: [RawDetection("person", confidence, (0.1, 0.1, 0.5, 0.5))]


def down(_: Frame) -> list[RawDetection]:
    raise TransientProviderError("connection refused")


def failover(
    *members: tuple[ProviderConfig, Callable[[Frame], list[RawDetection]]],
    board: BreakerBoard,
    policy: BreakerPolicy | None = None,
) -> FailoverAdapter:
    group = [(config, FunctionAdapter(handler, config)) for config, handler in members]
    return FailoverAdapter(group, board, lambda _: policy or BreakerPolicy(2, 10.0))


def test_transient_failure_moves_to_the_next_provider_and_opens_after_threshold() -> None:
    clock = Clock()
    board = BreakerBoard(clock=clock)
    adapter = failover((cfg("a"), down), (cfg("b"), up()), board=board)

    for _ in range(3):
        assert len(asyncio.run(adapter.detect(FRAME))) == 1
    snapshot = board.get("a")
    assert snapshot is not None
    assert (snapshot.state, snapshot.failures) == (BreakerState.OPEN, 2)
    assert snapshot.opened_at is not None
    changes = board.take_changes()
    events = [c.event for c in changes if c.event is not None]
    assert [e.event_type for e in events] == [CIRCUIT_OPENED]
    assert events[0].camera_id == "cam-1" and "'a'" in events[0].message
    assert board.take_changes() == []


def test_probe_after_cooldown_closes_the_breaker_with_an_event() -> None:
    clock = Clock()
    board = BreakerBoard(clock=clock)
    calls: list[str] = []

    def flaky(frame: Frame) -> list[RawDetection]:
        calls.append("a")
        if clock.now < 10:
            return down(frame)
        return up()(frame)

    adapter = failover((cfg("a"), flaky), (cfg("b"), up()), board=board)
    for _ in range(4):
        asyncio.run(adapter.detect(FRAME))
    assert calls == ["a", "a"]  # open: no more calls during the cool-down
    clock.now = 10.0
    asyncio.run(adapter.detect(FRAME))
    assert calls == ["a", "a", "a"]
    closed = board.get("a")
    assert closed is not None and closed.state is BreakerState.CLOSED
    events = [c.event.event_type for c in board.take_changes() if c.event is not None]
    assert events == [CIRCUIT_OPENED, CIRCUIT_CLOSED]


def test_each_provider_answers_with_its_own_threshold() -> None:
    board = BreakerBoard()
    adapter = failover((cfg("a", 0.9), down), (cfg("b", 0.2), up(0.3)), board=board)
    assert adapter.config.confidence_threshold == 0.2
    result = asyncio.run(run_frame(FRAME, adapter))
    assert result.ok and len(result.detections) == 1
    strict = failover((cfg("a", 0.9), down), (cfg("b", 0.5), up(0.3)), board=BreakerBoard())
    assert asyncio.run(strict.detect(FRAME)) == []


def test_permanent_error_is_not_failed_over_and_names_the_provider() -> None:
    def refuse(_: Frame) -> list[RawDetection]:
        raise PermanentProviderError("bad image", status=400)

    board = BreakerBoard()
    adapter = failover((cfg("a"), refuse), (cfg("b"), up()), board=board)
    with pytest.raises(PermanentProviderError, match="a: bad image") as info:
        asyncio.run(adapter.detect(FRAME))
    assert info.value.status == 400
    snapshot = board.get("a")
    assert snapshot is not None and snapshot.state is BreakerState.CLOSED


def test_all_failing_is_transient_so_run_frame_retries_the_group() -> None:
    board = BreakerBoard()
    adapter = failover((cfg("a"), down), (cfg("b"), down), board=board)
    for _ in range(2):
        with pytest.raises(TransientProviderError, match="all 2 provider"):
            asyncio.run(adapter.detect(FRAME))
    with pytest.raises(TransientProviderError, match="open circuit breaker"):
        asyncio.run(adapter.detect(FRAME))  # both opened after 2 failures each


def test_a_cancelled_probe_frees_the_half_open_slot() -> None:
    clock = Clock()
    board = BreakerBoard(clock=clock)
    a = cfg("a")
    policy = BreakerPolicy(1, 1.0)
    assert board.allow(a, policy)
    board.failure(a, "cam-1", "refused")
    clock.now = 1.0
    assert board.allow(a, policy)  # the probe
    assert not board.routable("a")
    board.release(a)
    assert board.routable("a")


def test_forget_drops_deleted_providers() -> None:
    board = BreakerBoard()
    board.allow(cfg("a"), BreakerPolicy())
    board.allow(cfg("b"), BreakerPolicy())
    board.forget({"b"})
    assert [s.provider_id for s in board.snapshot()] == ["b"]


def test_an_empty_group_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one provider"):
        FailoverAdapter([], BreakerBoard(), lambda _: BreakerPolicy())


def test_renamed_provider_shows_its_new_name() -> None:
    board = BreakerBoard()
    board.allow(cfg("a"), BreakerPolicy())
    board.allow(replace(cfg("a"), provider_name="renamed"), BreakerPolicy())
    (snapshot,) = board.snapshot()
    assert snapshot.provider_name == "renamed"
