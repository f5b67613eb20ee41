"""The windows step and its sink, engine-agnostic (the Bytewax wiring is in dataflow.py).

One :class:`CameraWindows` per camera key holds a tumbling and a sliding
:class:`~detectflow.core.windows.WindowAggregator` for the life of the flow:
their state is never dropped, because a fresh aggregator would start again
at revision 1 and its rows would lose to (or, revised, overwrite) the larger
totals already stored. Event time is the frame's timestamp, so frames with
no detections still move the watermark, and at the end of input every open
window is flushed.

A camera that goes quiet would leave its last windows open forever, so
after ``idle_tick`` of wall-clock silence its event time is moved on by the
wall-clock time elapsed (an idle tick): its windows close as if the camera
were still sending empty frames.

A window closes a minute or more after it starts (its length plus the
allowed lateness), and statistics are read from the stored rows, so every
``peek_every`` (10 s) of wall-clock time the open windows that changed are
written too, as provisional rows (``final=False``) that their final rows
replace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any, Protocol

from detectflow.core.models import Detection, FrameResult, utcnow
from detectflow.core.windows import WindowAggregator, WindowOutput, WindowSpec
from detectflow.flows.steps import chunked
from detectflow.store.stats import SLIDING, TUMBLING, KindedOutput

__all__ = [
    "DEFAULT_WINDOW_SPECS",
    "IDLE_TICK",
    "PEEK_EVERY",
    "SLIDING_SPEC",
    "TUMBLING_SPEC",
    "CameraWindows",
    "StatsCache",
    "StatsStore",
    "StatsWriter",
    "WindowInput",
    "window_input",
]

log = logging.getLogger(__name__)

TUMBLING_SPEC = WindowSpec.tumbling(timedelta(minutes=1))
SLIDING_SPEC = WindowSpec.sliding(timedelta(minutes=5), timedelta(minutes=1))
DEFAULT_WINDOW_SPECS: Mapping[str, WindowSpec] = {TUMBLING: TUMBLING_SPEC, SLIDING: SLIDING_SPEC}
"""The windows every flow computes, by kind (settings may override them later)."""

IDLE_TICK = timedelta(seconds=5)
PEEK_EVERY = timedelta(seconds=10)

_STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class WindowInput:
    """What the windows need of a processed frame: no image, no events."""

    timestamp: datetime
    detections: tuple[Detection, ...]


def window_input(result: FrameResult) -> tuple[str, WindowInput]:
    """Key a result by camera and keep only its event time and detections.

    Failed frames count too: they carry no detections but do move event time.
    """
    return result.frame.camera_id, WindowInput(result.frame.timestamp, result.detections)


class CameraWindows:
    """Every window kind of one camera: feed inputs, get rows to upsert.

    ``rejected`` counts detections the aggregators refused as invalid (logged
    one by one), so a bad value from a transform plugin cannot stop the flow
    nor vanish unnoticed.
    """

    def __init__(
        self,
        specs: Mapping[str, WindowSpec] = DEFAULT_WINDOW_SPECS,
        *,
        clock: Callable[[], datetime] = utcnow,
        idle_tick: timedelta = IDLE_TICK,
        peek_every: timedelta | None = PEEK_EVERY,
        aggregators: Mapping[str, WindowAggregator] | None = None,
    ) -> None:
        if not specs:
            raise ValueError("at least one window spec is needed")
        self._clock = clock
        self._idle_tick = idle_tick
        self._aggs = dict(aggregators or {kind: WindowAggregator(s) for kind, s in specs.items()})
        if set(self._aggs) != set(specs):
            raise ValueError(f"window state is for {sorted(self._aggs)}, not {sorted(specs)}")
        if len({agg.camera_id for agg in self._aggs.values()}) > 1:
            raise ValueError("window state holds several cameras: one camera per CameraWindows")
        self._event: datetime | None = None  # newest event time seen
        self._wall = clock()  # wall-clock time of the last input or tick
        self._peek_every = peek_every
        self._peeked = self._wall  # wall-clock time of the last provisional rows
        self.rejected = 0

    @classmethod
    def resume(
        cls,
        state: Any,
        specs: Mapping[str, WindowSpec] = DEFAULT_WINDOW_SPECS,
        **kwargs: Any,
    ) -> CameraWindows:
        """From :meth:`snapshot` (Bytewax recovery), or new when ``state`` is None.

        State made under other window specs is refused (ValueError), since
        continuing it would write rows that mix two configurations.
        """
        if state is None:
            return cls(specs, **kwargs)
        if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
            raise ValueError(f"invalid window state: unknown version, expected {_STATE_VERSION}")
        saved = state.get("aggregators")
        if not isinstance(saved, dict) or set(saved) != set(specs):
            raise ValueError(f"invalid window state: kinds differ from {sorted(specs)}")
        aggs = {kind: WindowAggregator.restore(saved[kind], specs[kind]) for kind in specs}
        windows = cls(specs, aggregators=aggs, **kwargs)
        event = state.get("event")
        windows._event = event if isinstance(event, datetime) else None
        rejected = state.get("rejected", 0)
        windows.rejected = rejected if isinstance(rejected, int) else 0
        return windows

    def add(self, inputs: Iterable[WindowInput]) -> list[KindedOutput]:
        out: list[KindedOutput] = []
        fed = False
        for item in inputs:
            fed = True
            if item.detections and self._add_frame(item, out):
                self._seen(item.timestamp)  # the aggregators are at this event time already
            else:
                out.extend(self._advance(item.timestamp))
        if fed:
            self._wall = self._clock()  # once per batch, not per frame
            self._peek(self._wall, out)
        return out

    def tick(self) -> list[KindedOutput]:
        """Close the windows of a camera that has been silent for ``idle_tick``."""
        now = self._clock()
        idle = now - self._wall
        if self._event is None or idle < self._idle_tick:
            return []
        self._wall = now
        out = self._advance(self._event + idle)
        self._peek(now, out)
        return out

    def flush(self) -> list[KindedOutput]:
        """End of input: close every open window."""
        return [(kind, row) for kind, agg in self._aggs.items() for row in agg.flush()]

    def next_tick(self) -> datetime | None:
        """When to call :meth:`tick`; None while no window is open."""
        if self._event is None or not any(agg.has_open_windows for agg in self._aggs.values()):
            return None
        return self._wall + self._idle_tick

    def snapshot(self) -> dict[str, Any]:
        return {
            "version": _STATE_VERSION,
            "aggregators": {kind: agg.snapshot() for kind, agg in self._aggs.items()},
            "event": self._event,
            "rejected": self.rejected,
        }

    def _add_frame(self, item: WindowInput, out: list[KindedOutput]) -> bool:
        """Count a frame's detections in every aggregator at once; False if an invalid
        detection or event time made it go detection by detection, skipping those."""
        tagged: list[tuple[int, str, WindowOutput]] = []
        try:
            for kind, agg in self._aggs.items():
                rows = agg.add_frame(item.detections, item.timestamp)
                if rows:
                    tagged.extend((i, kind, row) for i, row in rows)
        except ValueError:
            # Nothing was counted: the aggregators hold one camera, so the first one
            # refuses whatever another would.
            self._add_each(item, out)
            return False
        if tagged:
            # Each detection's rows of every kind, then the next detection's (stable sort).
            tagged.sort(key=itemgetter(0))
            out.extend((kind, row) for _, kind, row in tagged)
        return True

    def _add_each(self, item: WindowInput, out: list[KindedOutput]) -> None:
        for detection in item.detections:
            try:
                for kind, agg in self._aggs.items():
                    out.extend((kind, row) for row in agg.add(detection, item.timestamp))
            except ValueError as exc:
                self.rejected += 1
                log.error("window statistics skip detection %s: %s", detection.id, exc)

    def _advance(self, when: datetime) -> list[KindedOutput]:
        try:
            rows: list[KindedOutput] = [
                (kind, row) for kind, agg in self._aggs.items() for row in agg.advance(when)
            ]
        except ValueError as exc:  # a naive timestamp from a third-party source
            self.rejected += 1
            log.error("window statistics skip event time %r: %s", when, exc)
            return []
        self._seen(when)
        return rows

    def _peek(self, now: datetime, out: list[KindedOutput]) -> None:
        """Add the provisional rows of changed open windows, once per ``peek_every``."""
        if self._peek_every is None or now - self._peeked < self._peek_every:
            return
        self._peeked = now
        out.extend((kind, row) for kind, agg in self._aggs.items() for row in agg.peek())

    def _seen(self, when: datetime) -> None:
        if self._event is None or when > self._event:
            self._event = when


class StatsStore(Protocol):
    """The part of :class:`detectflow.store.Database` the stats sink needs."""

    def record_window_stats(self, items: Sequence[KindedOutput]) -> None: ...


class StatsCache(Protocol):
    """The part of :class:`detectflow.store.live.StatsView` the stats sink needs."""

    def invalidate(self, camera_ids: Iterable[str]) -> None: ...


class StatsWriter:
    """Writes window rows to SQL in bounded batches, then drops the cached statistics
    of the cameras they belong to.

    SQL errors propagate (the flow stops loudly); the cache is best effort:
    a failed invalidation leaves statistics at most ``STATS_TTL`` old.
    """

    def __init__(
        self, store: StatsStore, *, cache: StatsCache | None = None, max_batch: int = 500
    ) -> None:
        self.store = store
        self.cache = cache
        self.max_batch = max_batch

    def write(self, items: Sequence[KindedOutput]) -> None:
        if not items:
            return
        for chunk in chunked(items, self.max_batch):
            self.store.record_window_stats(chunk)
        if self.cache is not None:
            try:
                self.cache.invalidate({row.camera_id for _, row in items})
            except Exception:
                log.exception("invalidating cached statistics failed")
