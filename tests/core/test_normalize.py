from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from detectflow.core.errors import NormalizationError
from detectflow.core.ids import detection_id
from detectflow.core.models import BBox, Detection, Frame, RawDetection, utcnow
from detectflow.core.normalize import (
    DEFAULT_LABEL_MAP,
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


def _corners(a: float, b: float, c: float, d: float, fmt: str) -> tuple[float, ...]:
    """The box's corners as the provider meant them (xywh: a corner plus a size)."""
    x0, y0, x1, y1 = (a, b, a + c, b + d) if fmt == "xywh" else (a, b, c, d)
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def _overlap(lo: float, hi: float, size: float) -> tuple[float, float]:
    """The part of [lo, hi] inside [0, size], as fractions of size: (start, length)."""
    start, end = max(lo, 0.0), min(hi, size)
    return start / size, (end - start) / size


def _assert_kept_iff_it_overlaps_the_frame(
    box: BBox | None, corners: tuple[float, ...], width: float, height: float
) -> None:
    """A box is dropped when its overlap with the frame has no area, and kept as that
    overlap when it has some (dust-sized overlaps may round either way)."""
    x0, y0, x1, y1 = corners
    x, w = _overlap(x0, x1, width)
    y, h = _overlap(y0, y1, height)
    if w <= 0.0 or h <= 0.0:
        assert box is None
    elif w > 1e-9 and h > 1e-9:
        assert box is not None, "a box with area inside the frame was dropped"
        _valid(box)
        assert box.x == pytest.approx(x, abs=1e-9) and box.width == pytest.approx(w, abs=1e-9)
        assert box.y == pytest.approx(y, abs=1e-9) and box.height == pytest.approx(h, abs=1e-9)
    elif box is not None:
        _valid(box)


@given(coords, coords, coords, coords, st.sampled_from(["xyxy", "xywh"]), sizes, sizes)
def test_a_pixel_box_is_kept_as_its_overlap_with_the_frame_or_dropped_when_it_has_none(
    a, b, c, d, fmt, width, height
):
    box = normalize_box((a, b, c, d), fmt, "pixel", width, height)
    corners = _corners(a, b, c, d, fmt)
    _assert_kept_iff_it_overlaps_the_frame(box, corners, width, height)


@given(coords, coords, coords, coords, st.sampled_from(["xyxy", "xywh"]))
def test_a_fraction_box_is_kept_as_its_overlap_with_the_frame_or_dropped_when_it_has_none(
    a, b, c, d, fmt
):
    a, b, c, d = a / 1000, b / 1000, c / 1000, d / 1000
    box = normalize_box((a, b, c, d), fmt, "fraction")
    _assert_kept_iff_it_overlaps_the_frame(box, _corners(a, b, c, d, fmt), 1.0, 1.0)


@given(
    st.floats(0, 1),
    st.floats(0, 1),
    st.floats(0, 1),
    st.floats(0, 1),
    st.sampled_from(["xyxy", "xywh"]),
)
def test_a_fraction_box_inside_the_frame_with_area_is_never_dropped(x, y, u, v, fmt):
    """The valid half of the input space: every such box must come out, not just some."""
    if fmt == "xywh":
        u, v = u * (1 - x), v * (1 - y)  # the size that fits from (x, y)
        assume(x + u > x and y + v > y)  # a size too small to move a float has no area
    else:
        assume(u != x and v != y)
    box = normalize_box((x, y, u, v), fmt, "fraction")
    assert box is not None
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


@pytest.mark.parametrize(
    ("width", "height"), [(None, None), (640, None), (None, 480), (640, 0), (0, 480)]
)
def test_pixel_units_need_both_sides_of_the_frame(width, height):
    """A frame with a width but no height cannot place a pixel box: it raises, not guesses."""
    message = r"^pixel boxes need the frame's width and height$"
    with pytest.raises(NormalizationError, match=message):
        normalize_box((1, 1, 5, 5), "xyxy", "pixel", width, height)


def test_fraction_boxes_need_no_frame_size():
    assert normalize_box((0.1, 0.1, 0.5, 0.5), "xyxy", "fraction", None, None) == BBox(
        0.1, 0.1, 0.4, 0.4
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (((0, 0, 1),), r"^a box has 4 numbers, got 3$"),
        (((0, 0, 1, 1, 1),), r"^a box has 4 numbers, got 5$"),
        (((0, 0, math.inf, 1),), r"^box coordinates must be finite numbers, got \(0, 0, inf, 1\)$"),
        (((0, 0, 1, 1), "cxcywh"), r"^unknown box format 'cxcywh'$"),
        (((0, 0, 1, 1), "xyxy", "percent"), r"^unknown box units 'percent'$"),
    ],
)
def test_a_malformed_box_raises_naming_what_is_wrong(args, message):
    with pytest.raises(NormalizationError, match=message):
        normalize_box(*args)


def test_a_box_exactly_on_the_frame_edges_is_the_whole_frame():
    """Clamping leaves 0.0 and 1.0 themselves alone: the edges are inside the frame."""
    assert normalize_box((0.0, 0.0, 1.0, 1.0)) == BBox(0.0, 0.0, 1.0, 1.0)
    assert normalize_box((0, 0, 640, 480), "xyxy", "pixel", 640, 480) == BBox(0.0, 0.0, 1.0, 1.0)
    assert normalize_box((0.0, 0.0, 1.0, 1.0), "xywh") == BBox(0.0, 0.0, 1.0, 1.0)


def test_coordinates_beyond_the_edges_clamp_to_exactly_0_and_1():
    box = normalize_box((-0.25, -3.0, 1.5, 7.0))
    assert box == BBox(0.0, 0.0, 1.0, 1.0)


def test_a_box_one_step_inside_an_edge_keeps_its_coordinates():
    inside = math.nextafter(1.0, 0.0)
    box = normalize_box((math.nextafter(0.0, 1.0), 0.5, inside, 1.0))
    assert box is not None
    assert box.x == math.nextafter(0.0, 1.0)
    assert box.x + box.width == pytest.approx(inside, abs=0)


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ((0.6, 0.2, 0.2, 0.4), BBox(0.2, 0.2, pytest.approx(0.4), pytest.approx(0.2))),
        ((0.2, 0.8, 0.4, 0.4), BBox(0.2, 0.4, pytest.approx(0.2), pytest.approx(0.4))),
    ],
    ids=["x-only", "y-only"],
)
def test_each_axis_is_reordered_on_its_own(box, expected):
    assert normalize_box(box) == expected


def test_a_zero_size_box_on_an_edge_is_dropped():
    assert normalize_box((1.0, 0.2, 1.0, 0.6)) is None
    assert normalize_box((0.2, 0.0, 0.6, 0.0)) is None


@pytest.mark.parametrize("value", [0.0, -0.0, 0.5, 1.0, 1])
def test_confidence_at_the_ends_of_the_unit_interval_is_accepted(value):
    assert check_confidence(value) == value
    assert type(check_confidence(value)) is float


@pytest.mark.parametrize(
    "value",
    [math.nextafter(1.0, 2.0), 1.5, 2.0, math.nextafter(0.0, -1.0), -1.0, math.nan, math.inf],
)
def test_confidence_just_outside_the_unit_interval_is_rejected(value):
    with pytest.raises(NormalizationError, match=r"^confidence must be within \[0, 1\], got "):
        check_confidence(value)


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


def test_labels_are_matched_trimmed_and_case_blind():
    assert detection_type_for("  Truck \n") == "vehicle"
    assert detection_type_for(" Dog ") == "dog"


@pytest.mark.parametrize("label", ["people", "pedestrian", "vehicle", "motorbike"])
def test_the_default_label_map_covers_the_common_synonyms(label):
    assert detection_type_for(label) == DEFAULT_LABEL_MAP[label]
    assert DEFAULT_LABEL_MAP[label] in {"person", "vehicle"}


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


def test_a_detection_carries_the_frame_the_raw_answer_and_one_stamp():
    frame = Frame(
        camera_id="cam-7",
        image=b"",
        frame_id="f-7",
        timestamp=datetime(2025, 11, 5, 8, tzinfo=UTC),
        frame_number=42,
        width=200,
        height=100,
    )
    now = datetime(2025, 11, 5, 9, tzinfo=UTC)
    raws = [
        RawDetection("dropped", 0.9, (0.5, 0.5, 0.5, 0.9)),
        RawDetection(
            "Face",
            0.75,
            (25, 25, 75, 75),
            units="pixel",
            person_id="p-1",
            person_name="Ada",
            face_encoding="enc",
        ),
    ]
    (detection,) = normalize_detections(frame, raws, now=now).detections
    assert detection == Detection(
        id=detection_id("f-7", 1),  # the raw's position, counting the dropped one
        camera_id="cam-7",
        frame_id="f-7",
        detection_type="face",
        label="Face",
        confidence=0.75,
        bbox=BBox(0.125, 0.25, 0.25, 0.5),  # fractions exact in binary
        person_name="Ada",
        person_id="p-1",
        face_encoding="enc",
        frame_number=42,
        frame_timestamp=datetime(2025, 11, 5, 8, tzinfo=UTC),
        created_at=now,
        updated_at=now,
    )


def test_without_a_given_time_a_frame_s_detections_share_one_current_stamp():
    before = utcnow()
    raws = [RawDetection("person", 0.9, (0.1, 0.1, 0.2, 0.2))] * 3
    detections = normalize_detections(_frame(), raws).detections
    after = utcnow()
    stamps = {d.created_at for d in detections} | {d.updated_at for d in detections}
    assert len(stamps) == 1
    assert before <= stamps.pop() <= after


def test_the_default_threshold_keeps_every_confidence_and_equal_is_enough():
    raws = [RawDetection("person", c, (0.1, 0.1, 0.2, 0.2)) for c in (0.0, 0.4, 0.5)]
    assert len(normalize_detections(_frame(), raws).detections) == 3
    at_threshold = normalize_detections(_frame(), raws, confidence_threshold=0.4)
    assert [d.confidence for d in at_threshold.detections] == [0.4, 0.5]
    assert at_threshold.below_threshold == 1


def test_every_dropped_box_and_every_low_confidence_is_counted():
    raws = [
        RawDetection("a", 0.9, (0.5, 0.5, 0.5, 0.9)),
        RawDetection("b", 0.9, (2.0, 2.0, 3.0, 3.0)),
        RawDetection("c", 0.1, (0.1, 0.1, 0.2, 0.2)),
        RawDetection("d", 0.2, (0.1, 0.1, 0.2, 0.2)),
        RawDetection("e", 0.3, (0.1, 0.1, 0.2, 0.2)),
    ]
    result = normalize_detections(_frame(), raws, confidence_threshold=0.5)
    assert (result.detections, result.dropped_boxes, result.below_threshold) == ((), 2, 3)


def test_a_label_map_reaches_every_detection():
    raws = [RawDetection("pickup", 0.9, (0.1, 0.1, 0.2, 0.2))]
    (detection,) = normalize_detections(_frame(), raws, label_map={"pickup": "vehicle"}).detections
    assert (detection.detection_type, detection.label) == ("vehicle", "pickup")


def test_a_nan_confidence_makes_the_answer_malformed():
    with pytest.raises(NormalizationError):
        normalize_detections(_frame(), [RawDetection("person", math.nan, (0, 0, 1, 1))])
