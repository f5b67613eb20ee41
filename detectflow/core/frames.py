"""Validate and build frames, the same way for every source.

Every source (SQL queue, Redis Streams, MQTT, files, REST) funnels its input
through :func:`make_frame`, so a bad camera id or a non-image is refused with
the same reason wherever it came from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

from detectflow.core.errors import InvalidFrameError
from detectflow.core.ids import frame_id_for
from detectflow.core.images import probe_image
from detectflow.core.models import Frame, utcnow

__all__ = [
    "CAMERA_ID_PATTERN",
    "MAX_FRAME_ID_LENGTH",
    "TIME_OF_ARRIVAL",
    "make_frame",
    "parse_timestamp",
    "validate_camera_id",
]

CAMERA_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
MAX_FRAME_ID_LENGTH = 128  # the store's column width for frame and queue ids

TIME_OF_ARRIVAL = "detectflow.time_of_arrival"
"""A frame attribute: its source gave no time, so its timestamp is when it arrived.
Rows are keyed by (id, frame time) on PostgreSQL, so a redelivery of such a
frame would not meet its first copy's rows by key; the recorder looks for
them by id instead (:func:`detectflow.store.results.record_results`)."""


def validate_camera_id(camera_id: object) -> str:
    if not isinstance(camera_id, str) or not CAMERA_ID_PATTERN.fullmatch(camera_id):
        raise InvalidFrameError("camera_id must be 1-128 characters of letters, digits and _ . : -")
    return camera_id


def parse_timestamp(value: str | datetime | None) -> datetime:
    """RFC 3339 to an aware UTC datetime; naive input is taken as UTC."""
    if value is None:
        return utcnow()
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidFrameError(f"timestamp is not RFC 3339: {value!r}") from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:01:00+10:20 falls before year 1 in UTC
        raise InvalidFrameError(f"timestamp is out of range: {value.isoformat()}") from None


def make_frame(
    camera_id: object,
    image: bytes,
    *,
    max_bytes: int,
    frame_id: str | None = None,
    frame_number: int | None = None,
    timestamp: str | datetime | None = None,
    priority: int = 5,
    attributes: Mapping[str, str] | None = None,
) -> Frame:
    """Build a validated :class:`Frame` or raise :class:`InvalidFrameError`."""
    camera = validate_camera_id(camera_id)
    if not image:
        raise InvalidFrameError("frame has no image bytes")
    if len(image) > max_bytes:
        raise InvalidFrameError(f"frame is {len(image)} bytes; the limit is {max_bytes}")
    probed = probe_image(image)
    if probed is None:
        raise InvalidFrameError("frame is not a JPEG, PNG or WebP image")
    if frame_id is not None and not 0 < len(frame_id) <= MAX_FRAME_ID_LENGTH:
        raise InvalidFrameError(f"frame_id must be 1-{MAX_FRAME_ID_LENGTH} characters")
    if frame_number is not None and frame_number < 0:
        raise InvalidFrameError("frame_number must be >= 0")
    if not 1 <= priority <= 10:
        raise InvalidFrameError("priority must be between 1 and 10")
    return Frame(
        camera_id=camera,
        image=image,
        frame_id=frame_id or frame_id_for(camera, frame_number, image),
        timestamp=parse_timestamp(timestamp),
        frame_number=frame_number,
        priority=priority,
        width=probed[1],
        height=probed[2],
        attributes=dict(attributes) if attributes else {},
    )
