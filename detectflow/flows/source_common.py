"""What every streaming frame source shares: options, invalid input, pacing.

The SQL queue, Redis Streams, MQTT and folder sources differ in how frames arrive but
not in how they must behave in the dataflow: claim no more than the detect
engine has room for, read nothing while no provider is active, turn bad
input into a failed result with its reason (never drop it), and end a finite
run only once every frame handed on has come back. :class:`SourceReader`
does all of that once; a source implements :meth:`SourceReader._take`.
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs

from detectflow.core.errors import InvalidFrameError
from detectflow.core.models import Frame, FrameResult, utcnow
from detectflow.core.pipeline import failed_result
from detectflow.core.settings import Settings

if TYPE_CHECKING:
    from detectflow.flows.engine import DetectEngine

__all__ = [
    "MAX_FRAME_ID",
    "SourceOptions",
    "SourceReader",
    "SourceURLError",
    "SourceUnavailableError",
    "fallback_frame_id",
    "invalid_result",
    "optional_fields",
]

log = logging.getLogger(__name__)

N = TypeVar("N", int, float)

MAX_FRAME_ID = 128  # the width of the frame id columns
_MAX_CAMERA_ID = 128
_NAMESPACE = uuid.UUID("0b7e6a52-8a53-4f6e-9d0e-5d1a3c7f2b91")


class SourceURLError(ValueError):
    """A ``--source`` URL that cannot be used; the message says why."""


class SourceUnavailableError(ValueError):
    """The source's server cannot be reached when the flow starts.

    A ``ValueError`` so :func:`~detectflow.flows.dataflow.run_flow` reports
    it as a :class:`~detectflow.flows.dataflow.FlowError`, not a traceback.
    """


class SourceOptions:
    """A source URL's query, checked: unknown names and bad values are refused by name."""

    def __init__(self, source: str, query: str, known: set[str]) -> None:
        self.source = source
        self._query = parse_qs(query, keep_blank_values=True)
        unknown = sorted(set(self._query) - known)
        if unknown:
            raise SourceURLError(f"unknown {source} source option(s): {', '.join(unknown)}")

    def text(self, name: str, default: str) -> str:
        values = self._query.get(name)
        return values[-1] if values else default

    def number(self, name: str, default: N, kind: type[N], low: float, high: float) -> N:
        values = self._query.get(name)
        if not values:
            return default
        try:
            value = kind(values[-1])
        except ValueError:
            raise SourceURLError(
                f"{self.source} source option {name} is not a number: {values[-1]!r}"
            ) from None
        if not math.isfinite(value) or not low <= value <= high:
            raise SourceURLError(
                f"{self.source} source option {name} is out of range "
                f"({low:g}..{high:g}): {values[-1]!r}"
            )
        return value


def fallback_frame_id(*parts: str) -> str:
    """A stable id for input that has no usable frame id of its own."""
    return str(uuid.uuid5(_NAMESPACE, "\x00".join(parts)))


def invalid_result(
    camera_id: str,
    reason: str,
    *,
    frame_id: str,
    frame_number: int | None = None,
    attributes: Mapping[str, str] | None = None,
) -> FrameResult:
    """Refused input as a failed result, so it is recorded (and acknowledged), not lost.

    The camera id is kept as given (cut to the column width) so the failure
    shows up under the camera that sent it; an empty one becomes ``unknown``.
    """
    frame = Frame(
        camera_id=camera_id[:_MAX_CAMERA_ID] or "unknown",
        image=b"",
        frame_id=frame_id,
        timestamp=utcnow(),
        frame_number=frame_number if frame_number is None or frame_number >= 0 else None,
        attributes=dict(attributes or {}),
    )
    return failed_result(frame, f"invalid frame: {reason}")


def optional_fields(values: Mapping[str, str]) -> dict[str, Any]:
    """The optional frame fields a message carries as text, as ``make_frame`` arguments.

    Shared by Redis entries and MQTT user properties, so both refuse a bad
    ``frame_number`` or an over-long ``frame_id`` with the same words.
    """
    fields: dict[str, Any] = {}
    frame_id = values.get("frame_id")
    if frame_id is not None:
        if not 1 <= len(frame_id) <= MAX_FRAME_ID:
            raise InvalidFrameError(f"frame_id must be 1-{MAX_FRAME_ID} characters")
        fields["frame_id"] = frame_id
    for name in ("frame_number", "priority"):
        text = values.get(name)
        if text is None:
            continue
        try:
            fields[name] = int(text)
        except ValueError:
            raise InvalidFrameError(f"{name} is not an integer: {text[:40]!r}") from None
    if "timestamp" in values:
        fields["timestamp"] = values["timestamp"]
    return fields


Batch = list[Frame | FrameResult]


class SourceReader(ABC):
    """One worker's partition of a streaming source; never blocks the worker for long.

    ``next_batch`` hands on what is ready (possibly nothing) and
    ``next_awake`` says when to ask again. Every frame handed on holds one
    engine slot (:meth:`~detectflow.flows.engine.DetectEngine.acquire`);
    failed results go straight to the sinks and hold none. While no provider
    is active nothing is read, so input waits at its source rather than
    failing. With ``until_empty`` the reader ends once :meth:`_take` reports
    nothing left (None) and the engine has nothing outstanding; when
    ``stop`` is set it stops reading and ends the same way.
    """

    source_name = "stream"

    def __init__(
        self,
        engine: DetectEngine,
        settings: Settings,
        *,
        batch_size: int,
        until_empty: bool = False,
        stop: threading.Event | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.batch_size = batch_size
        self.until_empty = until_empty
        self.stop = stop
        self._started = False
        self._draining = False
        self._drain_started = False
        self._awake: datetime | None = None

    # -- what a source implements -----------------------------------------

    def _start(self) -> None:  # noqa: B027
        """Called once, on the first ``next_batch`` (connect, create groups...)."""

    @abstractmethod
    def _take(self, granted: int) -> Batch | None:
        """At most ``granted`` items ready now; None when the input has nothing left.

        May call :meth:`_sleep` to say when the next item is due.
        """

    def _begin_drain(self) -> None:  # noqa: B027
        """Called once when the reader starts to wind down (stop intake)."""

    def _leftover(self, granted: int) -> Batch:
        """Items already received that must still be handed on while draining."""
        return []

    def _minimum_grant(self) -> int:
        """The fewest free engine slots worth a read (1: read whatever fits)."""
        return 1

    # -- the shared state machine -------------------------------------------

    def next_batch(self) -> Batch:
        if not self._started:
            self._started = True
            self._start()
        self._awake = None
        if self._draining or self._stopping:
            return self._drain()
        if not self.engine.has_provider:
            if self.until_empty:
                log.warning(
                    "no active provider configured: stopping the %s source; its input waits",
                    self.source_name,
                )
                self._draining = True
                return self._drain()
            self._sleep(self.settings.poll_interval_seconds)
            return []
        batch = self._reserve(self._take)
        if batch is None:
            if self.until_empty:
                self._draining = True
                return self._drain()
            self._sleep(self.settings.poll_interval_seconds)
            return []
        return batch

    def next_awake(self) -> datetime | None:
        return self._awake

    def close(self) -> None:  # noqa: B027
        """Nothing by default: shared clients belong to the source object."""

    @property
    def _stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def _reserve(self, take: Callable[[int], Batch | None]) -> Batch | None:
        """Call ``take`` with the engine slots it may fill; give back what it did not use."""
        granted = self.engine.acquire(self.batch_size, self._minimum_grant())
        if granted == 0:
            self._sleep(self.engine.wake_interval)
            return []
        try:
            batch = take(granted)
        except Exception:
            self.engine.release(granted)
            log.exception("reading the %s source failed; retrying", self.source_name)
            self._sleep(max(1.0, self.settings.poll_interval_seconds))
            return []
        frames = sum(1 for item in batch or () if isinstance(item, Frame))
        self.engine.release(granted - frames)
        if batch is not None and self._awake is None:
            if not batch:
                self._sleep(self.settings.poll_interval_seconds)
            elif len(batch) < granted:
                self._sleep(self.engine.wake_interval)
        return batch

    def _drain(self) -> Batch:
        """Hand on what was already received, wait for frames to come back, then end."""
        if not self._drain_started:
            self._drain_started = True
            self._begin_drain()
        leftover = self._reserve(self._leftover) if self.engine.has_provider else None
        if leftover:
            return leftover
        if self.engine.outstanding > 0:
            self._sleep(self.engine.wake_interval)
            return []
        if self.until_empty and not self._stopping and self.engine.has_provider:
            # Input may have arrived while draining: take it before ending.
            batch = self._reserve(self._take)
            if batch is not None:
                self._draining = not batch
                return batch
        raise StopIteration

    def _sleep(self, seconds: float) -> None:
        self._awake = datetime.now(UTC) + timedelta(seconds=max(0.0, seconds))
