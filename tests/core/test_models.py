"""The domain models (detectflow/core/models.py): their copying helpers."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from detectflow.core.models import BBox, Detection, with_track_id


def test_with_track_id_sets_the_track_and_keeps_every_other_field() -> None:
    # with_track_id builds its copy field by field: a field added to Detection must
    # not be left behind.
    stamp = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    d = Detection(
        "d-1", "cam", "f-1", "person", "man", 0.5, BBox(0.1, 0.2, 0.3, 0.4), "Ann", "p-1",
        "enc", False, "pending", 7, stamp, stamp, stamp, "old",
    )  # fmt: skip
    assert all(getattr(d, f.name) != f.default for f in dataclasses.fields(Detection) if f.init), (
        "give every Detection field a non-default value here"
    )
    assert with_track_id(d, "t-1") == dataclasses.replace(d, track_id="t-1")
