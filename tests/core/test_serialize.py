"""The client JSON shapes: timestamps, and the compact bus form of a frame's detections."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from detectflow.core.models import BBox, Detection
from detectflow.core.serialize import (
    FRAME_DETECTIONS,
    detection_message,
    detection_messages,
    frame_detections_message,
    isoformat,
)


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def test_isoformat_writes_every_offset_as_the_same_utc_instant_with_a_z() -> None:
    instant = datetime(2025, 11, 5, 12, 34, 56, tzinfo=UTC)
    forms = [
        instant,
        instant.replace(tzinfo=None),
        instant.astimezone(timezone(timedelta(hours=-3))),
    ]
    assert {isoformat(f) for f in forms} == {"2025-11-05T12:34:56Z"}
    assert isoformat(instant.replace(microsecond=5)) == "2025-11-05T12:34:56.000005Z"
    assert isoformat(None) is None


names = st.none() | st.text(max_size=8)
unit = st.floats(0, 1)


@st.composite
def frame_detections(draw: st.DrawFn) -> list[Detection]:
    stamp = draw(st.datetimes(timezones=st.just(UTC)))
    created = draw(st.datetimes(timezones=st.just(UTC)))
    with_frame_time = draw(st.booleans())
    return [
        Detection(
            id=f"d-{i}",
            camera_id="cam-é",
            frame_id="f-1",
            detection_type=draw(st.sampled_from(["person", "face", "vehicle"])),
            label="x",
            confidence=draw(unit),
            bbox=BBox(draw(unit), draw(unit), draw(unit), draw(unit)),
            person_name=draw(names),
            person_id=draw(names),
            frame_timestamp=stamp if with_frame_time else None,
            created_at=created,
            updated_at=created,
        )
        for i in range(draw(st.integers(1, 4)))
    ]


@given(detections=frame_detections())
def test_a_frame_message_expands_to_the_very_text_of_each_detection_message(
    detections: list[Detection],
) -> None:
    stamp = "2025-11-05T12:34:56.123456Z"
    wire = json.loads(_compact(frame_detections_message(detections, stamp)))
    assert wire["type"] == FRAME_DETECTIONS
    expanded = [_compact(m) for m in detection_messages(wire)]
    assert expanded == [_compact(detection_message(d, published_at=stamp)) for d in detections]


def test_published_at_may_be_a_datetime_or_its_text() -> None:
    moment = datetime(2025, 11, 5, 12, 0, tzinfo=UTC)
    d = Detection(
        id="d", camera_id="c", frame_id="f", detection_type="person", label="p",
        confidence=0.5, bbox=BBox(0.1, 0.1, 0.2, 0.2), created_at=moment, updated_at=moment,
    )  # fmt: skip
    assert detection_message(d, moment) == detection_message(d, isoformat(moment))
    assert frame_detections_message([d], moment) == frame_detections_message([d], isoformat(moment))
    assert "published_at" not in detection_message(d)
