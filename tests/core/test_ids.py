"""Deterministic ids: the fast UUIDv5 must equal the standard library's, always."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from detectflow.core.ids import _NAMESPACE, _uuid5, detection_id, event_id, frame_id_for
from detectflow.core.models import EventType


@given(st.text())
def test_uuid5_matches_the_standard_library(name: str) -> None:
    assert _uuid5(name) == str(uuid.uuid5(_NAMESPACE, name))


@given(st.uuids(), st.integers(min_value=0, max_value=10_000))
def test_detection_ids_are_version_5_and_stable(frame: uuid.UUID, index: int) -> None:
    made = detection_id(str(frame), index)
    parsed = uuid.UUID(made)
    assert parsed.version == 5
    assert parsed.variant == uuid.RFC_4122
    assert detection_id(str(frame), index) == made
    assert detection_id(str(frame), index + 1) != made


def test_ids_keep_their_values_across_releases() -> None:
    # Replays after an upgrade must write the same rows: pin a few ids.
    assert frame_id_for("cam-1", 7, b"") == str(uuid.uuid5(_NAMESPACE, "frame:cam-1:7"))
    assert detection_id("f", 0) == str(uuid.uuid5(_NAMESPACE, "detection:f:0"))
    assert event_id("f", EventType.DETECTION_COMPLETED) == str(
        uuid.uuid5(_NAMESPACE, "event:f:detection_completed:")
    )


def test_frame_ids_without_a_number_come_from_the_bytes() -> None:
    assert frame_id_for("cam", None, b"a") == frame_id_for("cam", None, b"a")
    assert frame_id_for("cam", None, b"a") != frame_id_for("cam", None, b"b")
    assert frame_id_for("cam", None, b"a") != frame_id_for("other", None, b"a")
