from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from detectflow.core.errors import NormalizationError
from detectflow.core.models import Frame, RawDetection
from detectflow.core.normalize import (
    check_confidence,
    detection_type_for,
    normalize_box,
    normalize_detections,
    pixel_corners,
)

coords = st.floats(min_value=-5000, max_value=5000, allow_nan=False, allow_infinity=False)
sizes = st.integers(min_value=1, max_value=8192)


def _frame(width: int | None = 640, height: int | None = 480) -> Frame:
    return Frame(
        camera_id="cam-1",
        image=b"",
        frame_id="f-1",
        timestamp=datetime(2025, 11, 5, tzinfo=UTC),
        width=width,
        height=height,
    )


def _valid(box: object) -> None:
    assert box is not None
    x, y, w, h = box.x, box.y, box.width, box.height  # type: ignore[attr-defined]
    assert 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0
    assert w > 0.0 and h > 0.0
    assert x + w <= 1.0 + 1e-12 and y + h <= 1.0 + 1e-12


@given(coords, coords, coords, coords, st.sampled_from(["xyxy", "xywh"]), sizes, sizes)
def test_any_pixel_box_is_dropped_or_a_valid_fraction(a, b, c, d, fmt, width, height):
    box = normalize_box((a, b, c, d), fmt, "pixel", width, height)
    if box is not None:
        _valid(box)


@given(coords, coords, coords, coords, st.sampled_from(["xyxy", "xywh"]))
def test_any_fraction_box_is_dropped_or_valid(a, b, c, d, fmt):
    box = normalize_box((a / 1000, b / 1000, c / 1000, d / 1000), fmt, "fraction")
    if box is not None:
        _valid(box)


@given(st.integers(0, 639), st.integers(0, 479), st.integers(1, 640), st.integers(1, 480))
def test_pixel_corners_inside_the_frame_divide_exactly(x0, y0, w, h):
    assume(x0 + w <= 640 and y0 + h <= 480)
    box = normalize_box((x0, y0, x0 + w, y0 + h), "xyxy", "pixel", 640, 480)
    assert box is not None
    assert box.x == pytest.approx(x0 / 640)
    assert box.y == pytest.approx(y0 / 480)
    assert box.width == pytest.approx(w / 640)
    assert box.height == pytest.approx(h / 480)


@given(sizes, sizes, st.data())
def test_pixel_corners_give_back_the_integer_pixel_box_normalized(width, height, data):
    """What the DeepStack gateway answers is exactly the provider's pixel box."""
    x0 = data.draw(st.integers(0, width - 1))
    y0 = data.draw(st.integers(0, height - 1))
    x1 = data.draw(st.integers(x0 + 1, width))
    y1 = data.draw(st.integers(y0 + 1, height))
    box = normalize_box((x0, y0, x1, y1), "xyxy", "pixel", width, height)
    assert box is not None
    assert pixel_corners(box, width, height) == (x0, y0, x1, y1)


def test_pixel_corners_need_an_image_size():
    box = normalize_box((0.1, 0.1, 0.5, 0.5))
    assert box is not None
    with pytest.raises(NormalizationError):
        pixel_corners(box, 0, 480)


@given(st.floats(0, 0.9), st.floats(0, 0.9), st.floats(0.01, 0.1), st.floats(0.01, 0.1))
def test_xywh_and_xyxy_describe_the_same_box(x, y, w, h):
    a = normalize_box((x, y, w, h), "xywh", "fraction")
    b = normalize_box((x, y, x + w, y + h), "xyxy", "fraction")
    assert a is not None and b is not None
    assert a.x == pytest.approx(b.x) and a.y == pytest.approx(b.y)
    assert a.width == pytest.approx(b.width) and a.height == pytest.approx(b.height)


@given(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1))
def test_normalizing_twice_changes_nothing(a, b, c, d):
    once = normalize_box((a, b, c, d))
    assume(once is not None)
    assert once is not None
    twice = normalize_box((once.x, once.y, once.width, once.height), "xywh")
    assert twice is not None
    assert twice.x == pytest.approx(once.x) and twice.width == pytest.approx(once.width)


def test_swapped_corners_are_reordered():
    box = normalize_box((0.6, 0.8, 0.2, 0.4))
    assert box is not None
    assert (box.x, box.y) == (0.2, 0.4)
    assert box.width == pytest.approx(0.4) and box.height == pytest.approx(0.4)


def test_box_partly_outside_is_clamped():
    box = normalize_box((-10, -10, 320, 240), "xyxy", "pixel", 640, 480)
    assert box is not None
    assert (box.x, box.y, box.width, box.height) == (0.0, 0.0, 0.5, 0.5)


@pytest.mark.parametrize(
    "box",
    [(0.2, 0.2, 0.2, 0.5), (0.1, 0.3, 0.4, 0.3), (1.2, 0.1, 1.5, 0.4), (-0.5, -0.5, -0.1, -0.1)],
)
def test_degenerate_boxes_are_dropped(box):
    assert normalize_box(box) is None


@pytest.mark.parametrize("bad", [(math.nan, 0, 1, 1), (0, 0, math.inf, 1)])
def test_non_finite_coordinates_raise(bad):
    with pytest.raises(NormalizationError):
        normalize_box(bad)


def test_pixel_units_need_the_frame_size():
    with pytest.raises(NormalizationError, match="width and height"):
        normalize_box((1, 1, 5, 5), "xyxy", "pixel", None, None)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_confidence_outside_unit_interval_or_nan_is_rejected(value):
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        with pytest.raises(NormalizationError):
            check_confidence(value)
    else:
        assert check_confidence(value) == value


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("person", "person"),
        ("Person", "person"),
        ("face", "face"),
        ("car", "vehicle"),
        ("truck", "vehicle"),
        ("bus", "vehicle"),
        ("motorcycle", "vehicle"),
        ("bicycle", "vehicle"),
        ("dog", "dog"),
    ],
)
def test_labels_map_to_detection_types(label, expected):
    assert detection_type_for(label) == expected


def test_label_map_can_be_extended():
    assert detection_type_for("pickup", {"pickup": "vehicle"}) == "vehicle"


def test_normalize_detections_counts_drops_and_threshold_and_keeps_stable_ids():
    raws = [
        RawDetection("person", 0.9, (64, 48, 320, 240), units="pixel"),
        RawDetection("car", 0.2, (0.1, 0.1, 0.3, 0.3)),
        RawDetection("truck", 0.8, (0.5, 0.5, 0.5, 0.9)),  # zero width
        RawDetection("truck", 0.8, (0.5, 0.5, 0.2, 0.2), box_format="xywh"),
    ]
    first = normalize_detections(_frame(), raws, confidence_threshold=0.5)
    second = normalize_detections(_frame(), raws, confidence_threshold=0.5)
    assert [d.detection_type for d in first.detections] == ["person", "vehicle"]
    assert first.dropped_boxes == 1
    assert first.below_threshold == 1
    assert [d.id for d in first.detections] == [d.id for d in second.detections]
    assert first.detections[0].bbox.x == pytest.approx(0.1)
    assert first.detections[0].bbox.width == pytest.approx(0.4)


def test_a_nan_confidence_makes_the_answer_malformed():
    with pytest.raises(NormalizationError):
        normalize_detections(_frame(), [RawDetection("person", math.nan, (0, 0, 1, 1))])
