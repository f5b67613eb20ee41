"""Which decoded frames are sampled, and when each is due: pure, no I/O.

A camera decodes at its stream's rate (25 or 30 fps) and is sampled at its
own ``fps`` (5 by default). Sampling goes by stream time, so a file played
as fast as the flow takes it (``realtime=0``) samples the same frames as
one played at its own rate, and a live stream's jitter does not change how
many frames a second are sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Sampler", "StreamClock"]

_EPSILON = 1e-3
"""Seconds of slack: a 25 fps stream's frame at 0.19999 s counts as due at 0.2 s."""


@dataclass(slots=True)
class Sampler:
    """Says yes to the first frame at or after each multiple of ``1 / fps``.

    A stream that falls behind (a gap, a slow decoder) samples the next
    frame and goes on from there instead of bursting to catch up.
    """

    fps: float
    _due: float | None = field(default=None, init=False)

    def take(self, stream_seconds: float) -> bool:
        if self._due is not None and stream_seconds + _EPSILON < self._due:
            return False
        period = 1.0 / self.fps
        following = (stream_seconds if self._due is None else self._due) + period
        self._due = following if following > stream_seconds else stream_seconds + period
        return True


@dataclass(slots=True)
class StreamClock:
    """Seconds since the first frame of a connection, from presentation times.

    ``pts`` in ``time_base`` units; a frame without one (some MJPEG over
    HTTP) takes ``fallback`` (seconds since connect by the wall clock). A
    timestamp going backwards (a camera resetting its clock) is held at the
    last one, so frame times never decrease within a connection.
    """

    _first: float | None = field(default=None, init=False)
    _last: float = field(default=0.0, init=False)

    def seconds(self, pts: int | None, time_base: float | None, fallback: float) -> float:
        if pts is None or not time_base:
            at = fallback
        else:
            raw = pts * time_base
            if self._first is None:
                self._first = raw
            at = raw - self._first
        self._last = max(self._last, at)
        return self._last
