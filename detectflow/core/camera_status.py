"""How a camera is doing right now: the report a reader writes and the API shows.

A camera's reader (the video source, one per camera in a cluster) and the
flow that detects its frames count what happens to it in a
:class:`CameraMeter`; its :meth:`~CameraMeter.snapshot` is a
:class:`CameraStatus`, which :mod:`detectflow.store.camera_status` keeps in the
cache so the server, another process, can show it. Frigate's ``/api/stats``
is the model: decode, sampled and detect rates, skipped frames, inference
time, frames in flight, the last error.

Rates are averaged over the last ``window_seconds`` (10 by default: long
enough to be steady at 1 fps, short enough to show a stall within a few
reports), over less while the meter is younger than that, so a camera that
just connected does not look slow. Inference times are the ones of the same
window, at most :data:`MAX_SAMPLES` of them.

Pure: time comes from injected clocks, so tests step through windows without
sleeping. Not thread-safe: :class:`~detectflow.store.camera_status.CameraStatusBoard`
serializes access.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from detectflow.core.errors import DetectflowError
from detectflow.core.frames import parse_timestamp
from detectflow.core.models import utcnow
from detectflow.core.redact import redact_text
from detectflow.core.serialize import isoformat

__all__ = [
    "DEFAULT_WINDOW_SECONDS",
    "MAX_SAMPLES",
    "CameraMeter",
    "CameraStatus",
    "percentile",
]

DEFAULT_WINDOW_SECONDS = 10.0
MAX_SAMPLES = 1000
"""Inference times kept per camera for the percentiles (a 60 fps camera's 10 s is 600)."""


@dataclass(frozen=True, slots=True)
class CameraStatus:
    """One camera's report. ``online`` is the reader's view (frames flow);
    whoever shows it also checks that ``reported_at`` is recent, since a
    reader that died reports nothing more."""

    camera_id: str
    online: bool
    reported_at: datetime
    last_frame_time: datetime | None = None
    decode_fps: float = 0.0
    sampled_fps: float = 0.0
    skipped_per_second: float = 0.0
    detect_fps: float = 0.0
    inference_ms_p50: float | None = None
    inference_ms_p95: float | None = None
    in_flight: int = 0
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The cache entry (what :meth:`from_dict` reads back)."""
        return {
            "camera_id": self.camera_id,
            "online": self.online,
            "reported_at": isoformat(self.reported_at),
            "last_frame_time": isoformat(self.last_frame_time),
            "decode_fps": self.decode_fps,
            "sampled_fps": self.sampled_fps,
            "skipped_per_second": self.skipped_per_second,
            "detect_fps": self.detect_fps,
            "inference_ms_p50": self.inference_ms_p50,
            "inference_ms_p95": self.inference_ms_p95,
            "in_flight": self.in_flight,
            "last_error": self.last_error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CameraStatus | None:
        """None for an entry this version cannot read (treated as no report)."""
        try:
            last_frame = data.get("last_frame_time")
            error = data.get("last_error")
            return cls(
                camera_id=str(data["camera_id"]),
                online=bool(data["online"]),
                reported_at=parse_timestamp(str(data["reported_at"])),
                last_frame_time=None if last_frame is None else parse_timestamp(str(last_frame)),
                decode_fps=_number(data.get("decode_fps", 0.0)),
                sampled_fps=_number(data.get("sampled_fps", 0.0)),
                skipped_per_second=_number(data.get("skipped_per_second", 0.0)),
                detect_fps=_number(data.get("detect_fps", 0.0)),
                inference_ms_p50=_optional_number(data.get("inference_ms_p50")),
                inference_ms_p95=_optional_number(data.get("inference_ms_p95")),
                in_flight=int(data.get("in_flight", 0)),
                last_error=None if error is None else str(error),
            )
        except (KeyError, TypeError, ValueError, DetectflowError):
            return None


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"not a number: {value!r}")
    return float(value)


def _optional_number(value: Any) -> float | None:
    return None if value is None else _number(value)


def percentile(values: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile of ``values`` (None when empty): a value that
    was measured, never an interpolation between two."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class _Rate:
    """Events per second over the last ``window`` seconds of a monotonic clock."""

    def __init__(self, window: float) -> None:
        self._window = window
        self._events: deque[tuple[float, int]] = deque()
        self._count = 0

    def add(self, at: float, count: int) -> None:
        self._events.append((at, count))
        self._count += count

    def per_second(self, now: float, span: float) -> float:
        """``span`` is at least a second (see :meth:`CameraMeter.snapshot`)."""
        self.trim(now)
        return self._count / span

    def trim(self, now: float) -> None:
        while self._events and self._events[0][0] <= now - self._window:
            self._count -= self._events.popleft()[1]


class CameraMeter:
    """Counts one camera's frames and detections; :meth:`snapshot` reports them.

    The reader calls :meth:`connected`, :meth:`disconnected`, :meth:`decoded`,
    :meth:`sampled` and :meth:`skipped`; the flow calls :meth:`submitted` when
    a sampled frame goes to a provider and :meth:`completed` when its result
    is in.
    """

    def __init__(
        self,
        camera_id: str,
        *,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if window_seconds <= 0:
            raise ValueError("window_seconds must be > 0")
        self.camera_id = camera_id
        self._window = window_seconds
        self._clock = clock
        self._wall = wall_clock
        self._started = clock()
        self._decoded = _Rate(window_seconds)
        self._sampled = _Rate(window_seconds)
        self._skipped = _Rate(window_seconds)
        self._detected = _Rate(window_seconds)
        self._inference: deque[tuple[float, float]] = deque(maxlen=MAX_SAMPLES)
        self._online = False
        self._last_frame_time: datetime | None = None
        self._last_error: str | None = None
        self._in_flight = 0

    def connected(self) -> None:
        """Frames flow (again): online, and the last error is history."""
        self._online = True
        self._last_error = None

    def disconnected(self, reason: str) -> None:
        """The stream failed or stalled: offline, with the reason (credentials redacted)."""
        self._online = False
        self._last_error = redact_text(reason)

    def decoded(self, frame_time: datetime | None = None, count: int = 1) -> None:
        """``count`` frames decoded; ``frame_time`` is the newest one's stream time."""
        self._decoded.add(self._clock(), count)
        if frame_time is not None:
            self._last_frame_time = frame_time

    def sampled(self, count: int = 1) -> None:
        """Frames handed to the flow at the camera's fps."""
        self._sampled.add(self._clock(), count)

    def skipped(self, count: int = 1) -> None:
        """Decoded frames never handed to the flow (a newer one replaced them)."""
        self._skipped.add(self._clock(), count)

    def submitted(self, count: int = 1) -> None:
        self._in_flight += count

    def completed(self, inference_ms: float | None = None) -> None:
        """A frame's result is in; ``inference_ms`` is the provider's time for it
        (None when it failed without an answer)."""
        now = self._clock()
        self._in_flight = max(0, self._in_flight - 1)
        self._detected.add(now, 1)
        if inference_ms is not None and math.isfinite(inference_ms) and inference_ms >= 0:
            self._inference.append((now, float(inference_ms)))

    def snapshot(self) -> CameraStatus:
        now = self._clock()
        span = min(self._window, max(now - self._started, 1.0))
        while self._inference and self._inference[0][0] <= now - self._window:
            self._inference.popleft()
        times = [ms for _, ms in self._inference]
        return CameraStatus(
            camera_id=self.camera_id,
            online=self._online,
            reported_at=self._wall(),
            last_frame_time=self._last_frame_time,
            decode_fps=self._decoded.per_second(now, span),
            sampled_fps=self._sampled.per_second(now, span),
            skipped_per_second=self._skipped.per_second(now, span),
            detect_fps=self._detected.per_second(now, span),
            inference_ms_p50=percentile(times, 0.5),
            inference_ms_p95=percentile(times, 0.95),
            in_flight=self._in_flight,
            last_error=self._last_error,
        )
