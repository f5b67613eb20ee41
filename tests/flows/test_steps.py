"""The engine-agnostic steps."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from hypothesis import example, given
from hypothesis import strategies as st

from detectflow import Frame, FrameResult
from detectflow.core.frames import CAMERA_ID_PATTERN
from detectflow.core.images import image_info
from detectflow.core.models import QueueItem, strip_image
from detectflow.core.object_events import FrameObjects
from detectflow.core.pipeline import failed_result
from detectflow.flows.steps import (
    camera_key,
    chunked,
    queue_item_to_frame,
)
from detectflow.samples import sample_frame
from detectflow.store.queue import ClaimedRow

PNG = sample_frame("cam", 0, 16, 12)


def item(**changes: object) -> QueueItem:
    fields: dict[str, object] = {
        "id": "row-1",
        "camera_id": "cam-1",
        "frame_data": PNG,
        "frame_number": 7,
        "priority": 8,
        "frame_timestamp": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    fields.update(changes)
    return QueueItem(**fields)  # type: ignore[arg-type]


def test_valid_row_becomes_a_frame_keyed_by_the_row_id() -> None:
    frame = queue_item_to_frame(item(), max_bytes=1 << 20)
    assert not isinstance(frame, FrameResult)
    assert (frame.frame_id, frame.camera_id, frame.frame_number, frame.priority) == (
        "row-1",
        "cam-1",
        7,
        8,
    )
    assert (frame.width, frame.height) == (16, 12)
    assert camera_key(frame) == "cam-1"


def test_a_claimed_row_becomes_the_same_frame_as_its_queue_item() -> None:
    queued = item()
    row = ClaimedRow(
        queued.id,
        queued.camera_id,
        queued.frame_data,
        queued.priority,
        queued.frame_number,
        queued.frame_timestamp,
        queued.retry_count,
        queued.max_retries,
        queued.created_at,
        1,
    )
    assert queue_item_to_frame(row, max_bytes=1 << 20) == queue_item_to_frame(
        queued, max_bytes=1 << 20
    )
    bad = row._replace(camera_id="no spaces allowed")
    result = queue_item_to_frame(bad, max_bytes=1 << 20)
    assert isinstance(result, FrameResult)
    assert result.error is not None and result.error.startswith("invalid frame: camera_id")
    assert result.frame.frame_id == "row-1"


def test_oversized_row_fails_with_the_limit_in_the_reason() -> None:
    result = queue_item_to_frame(item(), max_bytes=10)
    assert isinstance(result, FrameResult)
    assert result.error == f"invalid frame: frame is {len(PNG)} bytes; the limit is 10"
    assert result.frame.frame_id == "row-1"


@example(camera="0", data=b"\xff\xd8\xff")  # a JPEG signature passes the header check
@given(camera=st.text(max_size=300), data=st.binary(max_size=64))
def test_any_row_becomes_a_frame_or_a_failure_naming_the_row(camera: str, data: bytes) -> None:
    result = queue_item_to_frame(item(camera_id=camera, frame_data=data), max_bytes=1 << 20)
    if not isinstance(result, FrameResult):
        # Only a valid camera id with bytes that start like an image becomes a frame.
        assert result.frame_id == "row-1"
        assert CAMERA_ID_PATTERN.fullmatch(camera)
        assert image_info(data) is not None
        return
    assert result.frame.frame_id == "row-1"
    assert len(result.frame.camera_id) <= 128
    assert result.error is not None
    assert result.error.startswith("invalid frame: ")
    assert result.events[0].event_type == "detection_failed"


def test_strip_image_drops_bytes_and_keeps_the_rest() -> None:
    frame = queue_item_to_frame(item(), max_bytes=1 << 20)
    assert not isinstance(frame, FrameResult)
    result = failed_result(frame, "x")
    stripped = strip_image(result)
    assert stripped.frame.image == b""
    assert stripped.frame.frame_id == frame.frame_id
    assert strip_image(stripped) is stripped


def test_strip_image_keeps_every_other_field() -> None:
    # strip_image builds its copies field by field: a field added to Frame or
    # FrameResult must not be left behind.
    stamp = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    frame = Frame("cam", b"img", "f-1", stamp, 7, 9, 640, 480, {"k": "v"})
    assert all(getattr(frame, f.name) != f.default for f in dataclasses.fields(Frame) if f.init), (
        "give every Frame field a non-default value here"
    )
    objects = FrameObjects("f-1", 1.0, late=True, track_ids=())
    result = FrameResult(frame, (), (), "why", 3, 120, 2, objects)
    assert all(getattr(result, f.name) != f.default for f in dataclasses.fields(FrameResult)), (
        "give every FrameResult field a non-default value here"
    )
    stripped = strip_image(result)
    assert stripped == dataclasses.replace(result, frame=dataclasses.replace(frame, image=b""))


@given(items=st.lists(st.integers(), max_size=50), size=st.integers(1, 20))
def test_chunked_keeps_order_and_bounds_size(items: list[int], size: int) -> None:
    chunks = list(chunked(items, size))
    assert [x for chunk in chunks for x in chunk] == items
    assert all(1 <= len(chunk) <= size for chunk in chunks)
