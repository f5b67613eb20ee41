"""The dataflow's steps as plain functions.

Nothing here knows about Bytewax: the wiring lives in
:mod:`detectflow.flows.dataflow`, so the steps can be tested alone and
moved to another engine if Bytewax ever stops being maintained.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Protocol, TypeVar

from detectflow.core.errors import InvalidFrameError
from detectflow.core.frames import make_frame
from detectflow.core.models import Frame, FrameResult
from detectflow.core.pipeline import failed_result

__all__ = [
    "QueuedFrame",
    "camera_key",
    "chunked",
    "queue_item_to_frame",
    "unvalidated_frame",
]

T = TypeVar("T")

_MAX_CAMERA_ID = 128


class QueuedFrame(Protocol):
    """A queue row with its frame: a :class:`~detectflow.core.models.QueueItem`, or
    the :class:`~detectflow.store.queue.ClaimedRow` the SQL source claims (cheaper)."""

    @property
    def id(self) -> str: ...

    @property
    def camera_id(self) -> str: ...

    @property
    def frame_data(self) -> bytes: ...

    @property
    def priority(self) -> int: ...

    @property
    def frame_number(self) -> int | None: ...

    @property
    def frame_timestamp(self) -> datetime: ...


def unvalidated_frame(item: QueuedFrame, attributes: Mapping[str, str] | None = None) -> Frame:
    """A frame that only names a queue row, so a row that failed validation can
    still be recorded as failed (its queue id and an event) without its bytes."""
    camera = item.camera_id if isinstance(item.camera_id, str) else str(item.camera_id)
    return Frame(
        camera_id=camera[:_MAX_CAMERA_ID],
        image=b"",
        frame_id=item.id,
        timestamp=item.frame_timestamp,
        frame_number=item.frame_number,
        priority=item.priority,
        attributes=dict(attributes or {}),
    )


def queue_item_to_frame(
    item: QueuedFrame, *, max_bytes: int, attributes: Mapping[str, str] | None = None
) -> Frame | FrameResult:
    """A claimed queue row as a validated frame, or as a failed result with the reason.

    The frame id is the row id, so the sink finds the row again; a row that
    fails validation never reaches a provider and is not retried.
    """
    try:
        return make_frame(
            item.camera_id,
            item.frame_data,
            max_bytes=max_bytes,
            frame_id=item.id,
            frame_number=item.frame_number,
            timestamp=item.frame_timestamp,
            priority=item.priority,
            attributes=attributes,
        )
    except InvalidFrameError as exc:
        return failed_result(unvalidated_frame(item, attributes), f"invalid frame: {exc}")


def camera_key(frame: Frame) -> str:
    """Route frames by camera, so one camera's frames stay on one worker."""
    return frame.camera_id


def chunked(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most ``size`` items (sinks write in bounded batches)."""
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    for start in range(0, len(items), size):
        yield items[start : start + size]
