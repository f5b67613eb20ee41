"""Put one camera's frames back in frame-time order before tracking.

Many frames are in flight at once, so a later frame's detections often come
back before an earlier one's. Tracking needs them in order (a track's
velocity is a difference of positions over time). A bounded buffer holds
each camera's finished frames and releases them oldest first once either
more than ``capacity`` are waiting or the newest is ``max_delay_seconds``
of frame time ahead of the oldest: the memory is bounded by the first, the
delay a frame can add by the second.

A frame that arrives after a frame with a later time was already released
is *late*: it is handed back at once, marked late and counted, so the caller
still stores it (without associating it). Nothing is dropped. Order is by
``(time, key)``, the key (the frame id) breaking ties, so the order does not
depend on arrival either.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["Released", "ReorderBuffer"]

T = TypeVar("T")
_STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class Released(Generic[T]):
    """What a push let out: ``ready`` in frame-time order, and ``late``, the pushed
    item itself when it came after its turn (None otherwise)."""

    ready: tuple[T, ...]
    late: T | None = None


class ReorderBuffer(Generic[T]):
    """A bounded min-heap on ``(time, key)``. Items should be plain values (tuples,
    lists, strs, numbers) for :meth:`snapshot` to be plain too."""

    def __init__(self, capacity: int = 32, max_delay_seconds: float = 1.0) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
            raise ValueError(f"capacity must be an integer >= 0, got {capacity!r}")
        if not max_delay_seconds >= 0:
            raise ValueError(f"max_delay_seconds must be >= 0, got {max_delay_seconds!r}")
        self.capacity = capacity
        self.max_delay = float(max_delay_seconds)
        self._heap: list[tuple[float, str, T]] = []
        self._waiting: dict[str, float] = {}
        self._released: tuple[float, str] | None = None
        self._newest: float | None = None
        self.late_count = 0

    def __len__(self) -> int:
        return len(self._heap)

    @property
    def released_up_to(self) -> tuple[float, str] | None:
        """The ``(time, key)`` of the last frame let out; anything at or before it is late."""
        return self._released

    def push(self, time: float, key: str, item: T) -> Released[T]:
        """Add a finished frame; returns what may go on now."""
        if self._released is not None and (time, key) <= self._released:
            self.late_count += 1
            return Released((), item)
        if key in self._waiting:
            # Delivered twice while waiting (at-least-once sources): keep the newer copy.
            self._heap = [e for e in self._heap if e[1] != key]
            heapq.heapify(self._heap)
        heapq.heappush(self._heap, (time, key, item))
        self._waiting[key] = time
        if self._newest is None or time > self._newest:
            self._newest = time
        return Released(tuple(self._drain(force=False)))

    def flush(self) -> list[T]:
        """Everything waiting, in order (the camera stopped, or input ended)."""
        return self._drain(force=True)

    def _drain(self, *, force: bool) -> list[T]:
        out: list[T] = []
        heap = self._heap
        newest = self._newest
        while heap and (
            force
            or len(heap) > self.capacity
            or (newest is not None and newest - heap[0][0] >= self.max_delay)
        ):
            time, key, item = heapq.heappop(heap)
            del self._waiting[key]
            self._released = (time, key)
            out.append(item)
        return out

    def snapshot(self) -> dict[str, Any]:
        return {
            "version": _STATE_VERSION,
            "capacity": self.capacity,
            "max_delay": self.max_delay,
            "waiting": [[t, k, item] for t, k, item in sorted(self._heap, key=lambda e: e[:2])],
            "released": None if self._released is None else list(self._released),
            "newest": self._newest,
            "late": self.late_count,
        }

    @classmethod
    def resume(
        cls, state: Any, capacity: int | None = None, max_delay_seconds: float | None = None
    ) -> ReorderBuffer[Any]:
        """Rebuild from :meth:`snapshot`; new bounds apply from the next push."""
        try:
            if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
                raise ValueError(f"unknown state version, expected {_STATE_VERSION}")
            buffer: ReorderBuffer[Any] = cls(
                state["capacity"] if capacity is None else capacity,
                state["max_delay"] if max_delay_seconds is None else max_delay_seconds,
            )
            for t, k, item in state["waiting"]:
                buffer._heap.append((float(t), str(k), item))
                buffer._waiting[str(k)] = float(t)
            heapq.heapify(buffer._heap)
            released = state["released"]
            if released is not None:
                buffer._released = (float(released[0]), str(released[1]))
            newest = state["newest"]
            buffer._newest = None if newest is None else float(newest)
            buffer.late_count = int(state["late"])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"invalid reorder state: {exc}") from exc
        return buffer
