"""Letterbox, the inverse mapping, NMS and the decoders: pure numpy, property-tested."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from detectflow.adapters.kserve.decoders import (
    BoxesDecoder,
    Suppression,
    YoloV5Decoder,
    YoloV8Decoder,
    to_xyxy,
)
from detectflow.adapters.kserve.nms import iou, nms
from detectflow.adapters.kserve.preprocess import (
    PAD_VALUE,
    decode_rgb,
    image_tensor,
    letterbox_geometry,
    letterbox_image,
    to_input,
    to_source,
)
from detectflow.core.errors import InvalidFrameError, PermanentProviderError

sides = st.integers(min_value=1, max_value=4000)


@given(sides, sides, sides, sides)
def test_the_letterboxed_frame_fits_is_centred_and_keeps_its_aspect(
    src_w: int, src_h: int, dst_w: int, dst_h: int
) -> None:
    box = letterbox_geometry(src_w, src_h, dst_w, dst_h)
    assert 1 <= box.new_w <= dst_w and 1 <= box.new_h <= dst_h
    assert box.new_w == dst_w or box.new_h == dst_h  # fills one side
    assert box.pad_x == (dst_w - box.new_w) // 2 and box.pad_y == (dst_h - box.new_h) // 2
    # aspect kept to within the rounding of one pixel on each side
    assert abs(box.new_w * src_h - box.new_h * src_w) <= src_w + src_h


@given(sides, sides, sides, sides, st.lists(st.floats(0, 1), min_size=4, max_size=4))
def test_boxes_map_back_onto_the_frame_exactly(
    src_w: int, src_h: int, dst_w: int, dst_h: int, corners: list[float]
) -> None:
    box = letterbox_geometry(src_w, src_h, dst_w, dst_h)
    x1, x2 = sorted(corners[:2])
    y1, y2 = sorted(corners[2:])
    on_frame = np.array([[x1 * src_w, y1 * src_h, x2 * src_w, y2 * src_h]])
    np.testing.assert_allclose(to_source(to_input(on_frame, box), box), on_frame, atol=1e-6)


def test_boxes_in_the_padding_are_clipped_to_the_frame() -> None:
    box = letterbox_geometry(200, 100, 100, 100)  # 100x50 inside, 25 px bands above and below
    assert (box.pad_x, box.pad_y, box.new_w, box.new_h) == (0, 25, 100, 50)
    mapped = to_source(np.array([[-5, 0, 50, 25], [0, 25, 100, 75]]), box)
    assert mapped.tolist() == [[0, 0, 100, 0], [0, 0, 200, 100]]


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, "PNG")
    return out.getvalue()


def test_the_input_is_the_frame_resized_on_grey_114_in_rgb() -> None:
    frame = np.zeros((50, 100, 3), dtype=np.uint8)
    frame[..., 0] = 200  # red
    rgb = decode_rgb(png(frame))
    box = letterbox_geometry(100, 50, 64, 64)
    canvas = letterbox_image(rgb, box)
    assert canvas.shape == (64, 64, 3)
    assert (canvas[: box.pad_y] == PAD_VALUE).all() and (
        canvas[box.pad_y + box.new_h :] == 114
    ).all()
    inside = canvas[box.pad_y : box.pad_y + box.new_h]
    assert (inside[..., 0] == 200).all() and (inside[..., 1:] == 0).all()


@pytest.mark.parametrize(
    ("layout", "dtype", "shape", "first"),
    [
        ("NCHW", np.float32, (3, 2, 4), 1.0),
        ("NHWC", np.float16, (2, 4, 3), 1.0),
        ("NCHW", np.uint8, (3, 2, 4), 255),
    ],
)
def test_image_tensors_take_the_models_layout_and_float_inputs_are_scaled_to_one(
    layout: str, dtype: type, shape: tuple[int, ...], first: float
) -> None:
    canvas = np.zeros((2, 4, 3), dtype=np.uint8)
    canvas[..., 0] = 255
    tensor = image_tensor(canvas, layout, np.dtype(dtype))  # type: ignore[arg-type]
    assert tensor.shape == shape and tensor.dtype == dtype
    red = tensor[0] if layout == "NCHW" else tensor[..., 0]
    assert (red == first).all()


def test_a_frame_that_is_no_image_is_an_invalid_frame() -> None:
    with pytest.raises(InvalidFrameError):
        decode_rgb(b"not an image")


# -- NMS ------------------------------------------------------------------------

coords = st.floats(0, 100, allow_nan=False)


@st.composite
def detections(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(0, 25))
    boxes = []
    for _ in range(n):
        x, y = draw(coords), draw(coords)
        boxes.append([x, y, x + draw(st.floats(1, 50)), y + draw(st.floats(1, 50))])
    scores = draw(st.lists(st.floats(0.01, 1), min_size=n, max_size=n, unique=True))
    classes = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    return np.array(boxes).reshape(-1, 4), np.array(scores), np.array(classes)


def brute_force_nms(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, t: float
) -> list[int]:
    kept: list[int] = []
    for i in sorted(range(len(boxes)), key=lambda i: -scores[i]):
        if all(classes[k] != classes[i] or iou(boxes[k], boxes[i])[0, 0] <= t for k in kept):
            kept.append(i)
    return kept


@given(detections(), st.floats(0.1, 0.9))
def test_nms_keeps_what_a_brute_force_greedy_nms_keeps(
    found: tuple[np.ndarray, np.ndarray, np.ndarray], threshold: float
) -> None:
    boxes, scores, classes = found
    assert nms(boxes, scores, classes, threshold).tolist() == brute_force_nms(
        boxes, scores, classes, threshold
    )


@given(detections())
def test_no_two_kept_boxes_of_one_class_overlap_past_the_threshold(
    found: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    boxes, scores, classes = found
    kept = nms(boxes, scores, classes, 0.45)
    for a, b in itertools.combinations(kept, 2):
        if classes[a] == classes[b]:
            assert iou(boxes[a], boxes[b])[0, 0] <= 0.45


def test_boxes_of_different_classes_never_suppress_each_other() -> None:
    same_place = np.array([[0, 0, 10, 10], [0, 0, 10, 10]])
    assert nms(same_place, np.array([0.9, 0.8]), np.array([0, 1])).tolist() == [0, 1]
    assert nms(same_place, np.array([0.9, 0.8]), np.array([1, 1])).tolist() == [0]


# -- decoders -------------------------------------------------------------------


def yolov8_output(boxes: list[tuple[float, float, float, float, int, float]], anchors: int = 20):
    out = np.zeros((84, anchors), dtype=np.float32)
    for slot, (cx, cy, w, h, cls, score) in enumerate(boxes):
        out[0:4, slot] = (cx, cy, w, h)
        out[4 + cls, slot] = score
    return out


def test_yolov8_decodes_channels_first_and_transposed_alike() -> None:
    found = [(50, 60, 20, 40, 2, 0.9), (51, 60, 20, 40, 2, 0.8), (10, 10, 4, 4, 0, 0.2)]
    out = yolov8_output(found, anchors=100)
    for decoder, tensor in (
        (YoloV8Decoder("o", channels_first=True), out),
        (YoloV8Decoder("o", channels_first=False), out.T),
        (YoloV8Decoder("o", channels_first=None), out),  # guessed: anchors outnumber channels
        (YoloV8Decoder("o", channels_first=None), out.T),
    ):
        decoded = decoder.decode({"o": tensor}, threshold=0.5)
        assert decoded.classes.tolist() == [2]  # the duplicate suppressed, the weak one dropped
        assert decoded.boxes.tolist() == [[40, 40, 60, 80]]
        assert decoded.scores.tolist() == pytest.approx([0.9])


def test_yolov5_multiplies_objectness_by_the_class_score() -> None:
    preds = np.zeros((3, 85), dtype=np.float32)
    preds[0, :5] = (50, 50, 10, 10, 0.9)
    preds[0, 5 + 7] = 0.8  # truck: 0.72
    preds[1, :5] = (10, 10, 4, 4, 0.5)
    preds[1, 5] = 0.5  # person: 0.25, under the threshold
    decoded = YoloV5Decoder("o").decode({"o": preds}, threshold=0.5)
    assert decoded.classes.tolist() == [7]
    assert decoded.scores.tolist() == pytest.approx([0.72])
    assert decoded.boxes.tolist() == [[45, 45, 55, 55]]


@pytest.mark.parametrize(
    ("box_format", "box", "xyxy"),
    [
        ("xyxy", [1, 2, 3, 4], [1, 2, 3, 4]),
        ("yxyx", [2, 1, 4, 3], [1, 2, 3, 4]),
        ("cxcywh", [2, 3, 2, 2], [1, 2, 3, 4]),
        ("xywh", [1, 2, 2, 2], [1, 2, 3, 4]),
    ],
)
def test_every_box_format_becomes_corners(
    box_format: str, box: list[float], xyxy: list[float]
) -> None:
    assert to_xyxy(np.array([box]), box_format).tolist() == [xyxy]


def test_the_boxes_decoder_reads_fractions_honours_the_count_and_sorts_by_score() -> None:
    outputs = {
        "b": np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 1.0, 1.0], [0, 0, 1, 1]]),
        "s": np.array([0.6, 0.9, 0.99]),
        "c": np.array([1.0, 3.0, 5.0]),
        "n": np.array([2.0]),
    }
    decoder = BoxesDecoder("b", "s", "c", "n", "yxyx", fractions=True)
    decoded = decoder.decode(outputs, threshold=0.5, input_size=(200, 100))
    assert decoded.classes.tolist() == [3, 1]  # the third is past the count
    np.testing.assert_allclose(decoded.boxes, [[100, 50, 200, 100], [40, 10, 80, 30]])


def test_decoders_refuse_outputs_that_do_not_fit_their_layout() -> None:
    with pytest.raises(PermanentProviderError, match="no output 'o'"):
        YoloV8Decoder("o").decode({}, 0.5)
    with pytest.raises(PermanentProviderError, match="expected 2 dimensions"):
        YoloV8Decoder("o").decode({"o": np.zeros((2, 84, 3))}, 0.5)
    with pytest.raises(PermanentProviderError, match="do not line up"):
        BoxesDecoder("b", "s", "c").decode(
            {"b": np.zeros((3, 4)), "s": np.zeros(2), "c": np.zeros(3)}, 0.5
        )


def test_suppression_caps_the_number_of_detections() -> None:
    boxes = np.array([[i * 20, 0, i * 20 + 10, 10] for i in range(10)], dtype=float)
    out = Suppression(0.45, 3).apply(boxes, np.linspace(1, 0.5, 10), np.zeros(10))
    assert len(out.boxes) == 3
