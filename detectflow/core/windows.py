"""Per-camera window statistics as exact, additive tallies.

Every detection recorded for the first time adds to the windows that hold
its frame time (event time, not arrival): one 1-minute tumbling window and
five 5-minute sliding ones. The recorder tallies each batch here and the
store adds the tallies to the stored rows in the same transaction as the
detections themselves, counting only rows that were new. So the totals are
exact however many processes record a camera's frames, in whatever order
and however late: a replayed batch adds nothing, a late frame adds to its
old window (and is counted as late there), and nothing is ever refused.

An earlier design kept windows as state in a Bytewax step with a watermark;
it could only count what the dataflow saw (inline ``send-frame`` frames
were left out) and had to refuse data older than its retention. Tallies
have neither limit and cost one upsert per touched window per batch.

Pure: no I/O. Times are kept as integer microseconds from ``align_to`` so
window boundaries are exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from detectflow.core.models import Detection

__all__ = [
    "DEFAULT_WINDOW_SPECS",
    "EPOCH",
    "SLIDING",
    "TUMBLING",
    "WINDOW_KINDS",
    "PersonDay",
    "Tally",
    "WindowKey",
    "WindowSpec",
    "WindowStats",
    "event_time",
    "person_days",
    "tally",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

TUMBLING = "tumbling"
SLIDING = "sliding"
WINDOW_KINDS = (TUMBLING, SLIDING)


def _require_aware(value: datetime, what: str) -> None:
    if not isinstance(value, datetime):
        raise ValueError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got naive {value.isoformat()}")


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """Which windows to count, and when one counts as closed.

    ``step == length`` gives tumbling windows; ``step < length`` sliding ones,
    where each event falls into ``length / step`` windows (so ``length`` must
    be a whole multiple of ``step``). Windows are half-open ``[start, end)``
    with starts at ``align_to + k * step``. A window is *final* once
    ``allowed_lateness`` has passed since its end; detections added after
    that still count, and are counted as late too.
    """

    length: timedelta = timedelta(minutes=1)
    step: timedelta = timedelta(minutes=1)
    align_to: datetime = EPOCH
    allowed_lateness: timedelta = timedelta(minutes=1)

    def __post_init__(self) -> None:
        _require_aware(self.align_to, "align_to")
        object.__setattr__(self, "align_to", self.align_to.astimezone(UTC))
        zero = timedelta(0)
        if self.length <= zero or self.step <= zero:
            raise ValueError(
                f"window length and step must be positive, got {self.length} and {self.step}"
            )
        if self.length % self.step:
            raise ValueError(
                f"window length {self.length} must be a whole multiple of step {self.step}"
            )
        if self.allowed_lateness < zero:
            raise ValueError(f"allowed_lateness must be >= 0, got {self.allowed_lateness}")

    @classmethod
    def tumbling(
        cls,
        length: timedelta = timedelta(minutes=1),
        *,
        align_to: datetime = EPOCH,
        allowed_lateness: timedelta = timedelta(minutes=1),
    ) -> WindowSpec:
        return cls(length, length, align_to, allowed_lateness)

    @classmethod
    def sliding(
        cls,
        length: timedelta = timedelta(minutes=5),
        step: timedelta = timedelta(minutes=1),
        *,
        align_to: datetime = EPOCH,
        allowed_lateness: timedelta = timedelta(minutes=1),
    ) -> WindowSpec:
        return cls(length, step, align_to, allowed_lateness)

    @property
    def windows_per_event(self) -> int:
        return self.length // self.step

    def windows_containing(self, event_time: datetime) -> list[tuple[datetime, datetime]]:
        """The ``(start, end)`` of every window ``event_time`` belongs to, oldest first."""
        _require_aware(event_time, "event_time")
        return self._windows_of_step((event_time - self.align_to) // self.step)

    def _windows_of_step(self, k: int) -> list[tuple[datetime, datetime]]:
        """The windows holding the events of step ``k`` (``[align_to + k*step, +step)``)."""
        n = self.windows_per_event
        return [
            (self.align_to + j * self.step, self.align_to + j * self.step + self.length)
            for j in range(k - n + 1, k + 1)
        ]

    def is_final(self, window_end: datetime, now: datetime) -> bool:
        return now >= window_end + self.allowed_lateness


DEFAULT_WINDOW_SPECS: Mapping[str, WindowSpec] = {
    TUMBLING: WindowSpec.tumbling(timedelta(minutes=1)),
    SLIDING: WindowSpec.sliding(timedelta(minutes=5), timedelta(minutes=1)),
}
"""The windows every recorder counts, by kind."""


@dataclass(frozen=True, slots=True, order=True)
class WindowKey:
    """Which stored row a tally adds to (the table's primary key)."""

    camera_id: str
    detection_type: str
    kind: str
    window_start: datetime
    window_end: datetime


@dataclass(slots=True)
class Tally:
    """What one batch adds to one window."""

    count: int = 0
    confidence_sum: float = 0.0
    max_confidence: float = 0.0

    def add(self, confidence: float) -> None:
        self.count += 1
        self.confidence_sum += confidence
        if confidence > self.max_confidence:
            self.max_confidence = confidence

    def merge(self, other: Tally) -> None:
        self.count += other.count
        self.confidence_sum += other.confidence_sum
        if other.max_confidence > self.max_confidence:
            self.max_confidence = other.max_confidence


def event_time(detection: Detection) -> datetime:
    """The frame's own time when the source gave one, else when it was detected."""
    return detection.frame_timestamp or detection.created_at


def tally(
    detections: Iterable[Detection], specs: Mapping[str, WindowSpec] = DEFAULT_WINDOW_SPECS
) -> dict[WindowKey, Tally]:
    """Every window the detections add to, with what they add.

    Detections are first grouped by camera, type and the finest step of
    the specs, so a batch of thousands costs one integer division each and
    the windows are expanded once per group, not once per detection.
    """
    finest = min(spec.step for spec in specs.values())
    align = next(iter(specs.values())).align_to
    if any(spec.step % finest or (spec.align_to - align) % finest for spec in specs.values()):
        raise ValueError("every window step and alignment must be a multiple of the finest step")
    groups: dict[tuple[str, str, int], Tally] = {}
    for detection in detections:
        when = event_time(detection)
        _require_aware(when, "event time")
        key = (detection.camera_id, detection.detection_type, (when - align) // finest)
        group = groups.get(key)
        if group is None:
            group = groups[key] = Tally()
        group.add(detection.confidence)
    out: dict[WindowKey, Tally] = {}
    for (camera_id, detection_type, k), group in groups.items():
        start = align + k * finest
        for kind, spec in specs.items():
            step_index = (start - spec.align_to) // spec.step
            for window_start, window_end in spec._windows_of_step(step_index):
                window = WindowKey(camera_id, detection_type, kind, window_start, window_end)
                into = out.get(window)
                if into is None:
                    out[window] = Tally(group.count, group.confidence_sum, group.max_confidence)
                else:
                    into.merge(group)
    return out


PersonDay = tuple[str, str, datetime]
"""(camera_id, person_id, start of the UTC day): one stored person count."""


def person_days(detections: Iterable[Detection]) -> dict[PersonDay, int]:
    """Detections per recognised person, camera and UTC day of their event time.

    Window rows keep no person ids, yet ``most_detected_person`` must not
    count raw detection rows: these per-day counts sum to it, at most one
    row per camera, person and day.
    """
    out: dict[PersonDay, int] = {}
    for detection in detections:
        if detection.person_id is None:
            continue
        when = event_time(detection)
        _require_aware(when, "event time")
        day = when.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        key = (detection.camera_id, detection.person_id, day)
        out[key] = out.get(key, 0) + 1
    return out


@dataclass(frozen=True, slots=True)
class WindowStats:
    """One stored window's totals, as read back.

    ``revision`` counts the batches that added to it; ``late_count`` the
    detections added once it was final; ``final`` says whether it is (at
    the time it was read).
    """

    camera_id: str
    detection_type: str
    window_start: datetime
    window_end: datetime
    count: int
    confidence_sum: float
    max_confidence: float
    late_count: int
    revision: int
    final: bool

    @property
    def mean_confidence(self) -> float:
        return self.confidence_sum / self.count if self.count else 0.0

    @property
    def key(self) -> tuple[str, str, datetime, datetime]:
        """The end is part of it so tumbling and sliding rows never collide."""
        return (self.camera_id, self.detection_type, self.window_start, self.window_end)
