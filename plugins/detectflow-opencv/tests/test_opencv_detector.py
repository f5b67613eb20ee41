"""detectflow_opencv.detector: real OpenCV on real images."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from detectflow import PermanentProviderError, ProviderConfig
from hypothesis import given
from hypothesis import strategies as st

from detectflow_opencv.detector import DetectorSettings, OpenCVDetector, decode_image, squash

W, H = 512, 512


def faces(found):
    return [d for d in found if d.label == "face"]


@pytest.mark.parametrize("encoding", ["astronaut_png", "astronaut_jpeg"])
def test_astronaut_face_is_found_in_the_upper_middle(request, encoding, is_astronaut_face):
    found = OpenCVDetector().detect(request.getfixturevalue(encoding))
    [face] = faces(found)
    assert face.units == "pixel" and face.box_format == "xywh"
    x, y, w, h = face.box
    assert is_astronaut_face(x / W, y / H, w / W, h / H), face.box
    assert face.confidence > 0.95


def test_blank_image_has_no_faces_and_no_people(blank_png):
    assert OpenCVDetector().detect(blank_png) == []


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage bytes",
        b"\x89PNG\r\n\x1a\n" + b"junk" * 10,
        b"\xff\xd8\xff\xe0" + b"\x00" * 64,
    ],
    ids=["empty", "garbage", "png-magic-then-junk", "jpeg-magic-then-zeros"],
)
def test_undecodable_bytes_raise_a_permanent_error(data):
    with pytest.raises(PermanentProviderError, match="image"):
        OpenCVDetector().detect(data)


def test_truncated_png_is_a_permanent_error(astronaut_png):
    with pytest.raises(PermanentProviderError):
        decode_image(astronaut_png[: len(astronaut_png) // 50])


def test_people_are_reported_as_pixel_boxes_with_confidence_from_the_svm_margin(astronaut_png):
    # HOG finds one (false) pedestrian in the astronaut's lower right; what
    # matters here is its shape: label, units, a >= 0.5 confidence.
    people = [d for d in OpenCVDetector().detect(astronaut_png) if d.label == "person"]
    assert people
    for person in people:
        assert person.units == "pixel" and person.box_format == "xywh"
        assert 0.5 <= person.confidence <= 1.0
        _, _, w, h = person.box
        assert h == pytest.approx(2 * w, rel=0.05)  # HOG windows are 64x128 scaled


def test_faces_and_people_can_each_be_turned_off(astronaut_png):
    only_people = OpenCVDetector(DetectorSettings(faces=False)).detect(astronaut_png)
    only_faces = OpenCVDetector(DetectorSettings(people=False)).detect(astronaut_png)
    assert only_people and {d.label for d in only_people} == {"person"}
    assert only_faces and {d.label for d in only_faces} == {"face"}


def test_max_faces_keeps_the_most_confident(astronaut_png, is_astronaut_face):
    loose = DetectorSettings(people=False).with_options({"min_neighbors": 1})
    everything = OpenCVDetector(loose).detect(astronaut_png)
    assert len(everything) >= 2  # the real face and weaker false hits
    confidences = [d.confidence for d in everything]
    assert confidences == sorted(confidences, reverse=True)
    [best] = OpenCVDetector(DetectorSettings(people=False, max_faces=1, min_neighbors=1)).detect(
        astronaut_png
    )
    x, y, w, h = best.box
    assert is_astronaut_face(x / W, y / H, w / W, h / H)
    assert OpenCVDetector(DetectorSettings(max_faces=0, people=False)).detect(astronaut_png) == []


def test_weak_cascade_hits_score_below_one_half_and_the_face_near_one(astronaut_png):
    loose = DetectorSettings(people=False).with_options({"min_neighbors": 1})
    scores = sorted(
        (d.confidence for d in OpenCVDetector(loose).detect(astronaut_png)), reverse=True
    )
    assert scores[0] > 0.99
    assert all(s < 0.5 for s in scores[1:])


def test_large_images_are_shrunk_and_boxes_scaled_back(astronaut_bgr, is_astronaut_face):
    big = cv2.resize(astronaut_bgr, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    detector = OpenCVDetector(DetectorSettings(people=False, max_side=512))
    [face] = detector.detect_array(np.asarray(big, dtype=np.uint8))
    x, y, w, h = face.box
    assert is_astronaut_face(x / 2048, y / 2048, w / 2048, h / 2048), face.box
    assert w > 300  # in the big image's pixels, not the shrunk one's


def test_one_detector_is_safe_to_share_between_threads(astronaut_png):
    # A cascade shared between threads corrupts its per-call state; faces only, to stay quick.
    detector = OpenCVDetector(DetectorSettings(people=False))
    expected = detector.detect(astronaut_png)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: detector.detect(astronaut_png), range(4)))
    assert all(result == expected for result in results)


def test_settings_follow_the_provider_config():
    config = ProviderConfig(
        id="p",
        provider_name="cv",
        provider_type="opencv",
        endpoint_url="local",
        enable_face_detection=False,
        max_faces_per_frame=3,
        options={"min_neighbors": 2, "scale_factor": 1.2, "max_side": 0},
    )
    settings = DetectorSettings.from_config(config)
    assert (settings.faces, settings.people, settings.max_faces) == (False, True, 3)
    assert (settings.min_neighbors, settings.scale_factor, settings.max_side) == (2, 1.2, 0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_neigbors": 3}, "unknown opencv option"),
        ({"faces": False}, "unknown opencv option"),
        ({"scale_factor": 1.0}, "scale_factor must be > 1"),
        ({"scale_factor": "1.1"}, "scale_factor must be a number"),
        ({"hog_scale": math.nan}, "hog_scale must be > 1"),
        ({"min_neighbors": -1}, "min_neighbors must be >= 0"),
        ({"min_face_size": 2.5}, "min_face_size must be an integer"),
        ({"hog_stride": True}, "hog_stride must be an integer"),
    ],
)
def test_bad_options_are_refused_with_a_message(options, message):
    with pytest.raises(PermanentProviderError, match=message):
        DetectorSettings().with_options(options)


def test_a_negative_max_faces_is_refused():
    config = ProviderConfig(
        id="p", provider_name="cv", provider_type="opencv", endpoint_url="", max_faces_per_frame=-1
    )
    with pytest.raises(PermanentProviderError, match="max_faces_per_frame"):
        DetectorSettings.from_config(config)


def test_squash_maps_the_decision_boundary_to_one_half_and_extremes_to_the_ends():
    assert squash(0.0) == 0.5
    assert squash(math.inf) == 1.0
    assert squash(-math.inf) == 0.0
    assert squash(math.nan) == 0.0
    assert squash(1e308) == 1.0


@given(st.floats(allow_nan=False), st.floats(allow_nan=False))
def test_squash_is_a_monotonic_confidence(a, b):
    low, high = sorted((a, b))
    assert 0.0 <= squash(low) <= squash(high) <= 1.0
