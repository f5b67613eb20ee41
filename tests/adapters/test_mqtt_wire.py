"""The MQTT payload codec, URL parsing and status classification (no broker needed)."""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectflow.adapters.mqtt_wire import (
    MqttEndpoint,
    decode_answer,
    decode_request,
    encode_answer,
    encode_error,
    encode_request,
    error_for_status,
    parse_mqtt_url,
    status_for_error,
)
from detectflow.core.errors import (
    InvalidFrameError,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)
from detectflow.core.models import RawDetection
from tests.adapters.mqtt_support import sample_frame

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
raw_detections = st.builds(
    RawDetection,
    label=st.text(min_size=1, max_size=20),
    confidence=finite,
    box=st.tuples(finite, finite, finite, finite),
    box_format=st.sampled_from(["xyxy", "xywh"]),
    units=st.sampled_from(["fraction", "pixel"]),
    person_id=st.none() | st.text(max_size=10),
    person_name=st.none() | st.text(max_size=10),
)


@given(st.lists(raw_detections, max_size=5))
def test_answers_round_trip(detections: list[RawDetection]) -> None:
    assert decode_answer(encode_answer(detections)) == detections


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_fail_permanently(payload: bytes) -> None:
    with contextlib.suppress(PermanentProviderError):
        decode_answer(payload)


@given(
    st.recursive(
        st.none() | st.booleans() | finite | st.text(max_size=5),
        lambda kids: (
            st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_any_json_decodes_or_fails_permanently(value: object) -> None:
    for body in (value, {"detections": value}, {"detections": [value]}):
        with contextlib.suppress(PermanentProviderError):
            decode_answer(json.dumps(body).encode())


def test_answer_defaults_and_unknown_fields() -> None:
    payload = (
        b'{"detections": [{"label": "car", "confidence": 1, "box": [1, 2, 3, 4], "x": 5}],'
        b' "inferenceMs": 3}'
    )
    assert decode_answer(payload) == [RawDetection("car", 1.0, (1.0, 2.0, 3.0, 4.0))]


@pytest.mark.parametrize(
    "item",
    [
        {"label": "", "confidence": 0.5, "box": [0, 0, 1, 1]},
        {"label": "a", "confidence": True, "box": [0, 0, 1, 1]},
        {"label": "a", "confidence": 0.5, "box": [0, 0, 1]},
        {"label": "a", "confidence": 0.5, "box": [0, 0, 1, "1"]},
        {"label": "a", "confidence": 0.5, "box": [0, 0, 1, 1], "format": "cxcywh"},
        {"label": "a", "confidence": 0.5, "box": [0, 0, 1, 1], "units": "percent"},
        {"label": "a", "confidence": 0.5, "box": [0, 0, 1, 1], "person_id": 7},
    ],
)
def test_bad_detection_items_are_permanent(item: dict[str, object]) -> None:
    with pytest.raises(PermanentProviderError, match=r"detections\[0\]"):
        decode_answer(json.dumps({"detections": [item]}).encode())


def test_request_round_trips_through_the_responder_codec() -> None:
    frame = sample_frame(5)
    decoded, min_confidence = decode_request(encode_request(frame, 0.4), max_bytes=1 << 20)
    assert min_confidence == 0.4
    assert decoded == frame


def test_request_body_is_the_http_detectflow_dialect() -> None:
    frame = sample_frame(1)
    body = json.loads(encode_request(frame, 0.5))
    assert set(body) == {
        "camera_id",
        "frame_id",
        "frame_number",
        "timestamp",
        "image",
        "width",
        "height",
        "min_confidence",
    }
    assert base64.b64decode(body["image"]) == frame.image
    assert body["timestamp"].endswith("Z")
    assert (body["width"], body["height"]) == (40, 20)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"nope", "not JSON"),
        (b"[]", "JSON object"),
        (b'{"camera_id": "c"}', "base64 'image'"),
        (b'{"camera_id": "c", "image": "***"}', "base64"),
        (b'{"camera_id": "c", "image": "aGVsbG8="}', "JPEG, PNG or WebP"),
        (b'{"camera_id": "c", "image": "", "frame_number": "1"}', "frame_number"),
        (b'{"camera_id": "c", "image": "", "min_confidence": "x"}', "min_confidence"),
    ],
)
def test_bad_requests_are_invalid_frames(payload: bytes, match: str) -> None:
    with pytest.raises(InvalidFrameError, match=match):
        decode_request(payload, max_bytes=1 << 20)


@given(st.integers(100, 599), st.none() | st.text(max_size=20))
def test_status_classification(code: int, message: str | None) -> None:
    error = error_for_status(str(code), message)
    if 200 <= code < 300:
        assert error is None
    elif code >= 500 or code == 429:
        assert isinstance(error, TransientProviderError)
        assert error.status == code
    else:
        assert isinstance(error, PermanentProviderError)
        assert str(code) in error.message


def test_missing_status_is_success_and_garbage_status_is_permanent() -> None:
    assert error_for_status(None, None) is None
    assert isinstance(error_for_status("OK", None), PermanentProviderError)


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (TransientProviderError("x"), 503),
        (PermanentProviderError("x"), 422),
        (ProviderError("x", status=418), 418),
        (InvalidFrameError("x"), 400),
        (KeyError("x"), 500),
    ],
)
def test_status_for_handler_errors(exc: Exception, status: int) -> None:
    assert status_for_error(exc) == status


def test_error_body_is_json() -> None:
    assert json.loads(encode_error(401, "no")) == {"error": {"status": 401, "message": "no"}}


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("mqtt://h/a/b", MqttEndpoint("h", 1883, "a/b")),
        ("mqtts://h/a", MqttEndpoint("h", 8883, "a", tls=True)),
        ("mqtt://u:p%40ss@h:1884/a%20b", MqttEndpoint("h", 1884, "a b", False, "u", "p@ss")),
    ],
)
def test_parse_mqtt_url(url: str, endpoint: MqttEndpoint) -> None:
    assert parse_mqtt_url(url) == endpoint


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("tcp://h/a", "mqtt:// or mqtts://"),
        ("mqtt://h", "no topic"),
        ("mqtt:///a", "no host"),
        ("mqtt://h/a/#", "wildcards"),
        ("mqtt://h:99999/a", "invalid MQTT URL"),
        ("mqtt://h/a?qos=2", "no query"),
    ],
)
def test_bad_mqtt_urls(url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_mqtt_url(url)
