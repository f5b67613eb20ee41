"""DeepStack answers, server side and client side: what one encodes the other reads back."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectflow.adapters._http_dialects import (
    decode_deepstack,
    deepstack_answer,
    deepstack_error,
)
from detectflow.core.errors import PermanentProviderError, TransientProviderError
from detectflow.core.models import RawDetection

pixels = st.integers(min_value=0, max_value=20_000)
labels = st.text(min_size=1, max_size=40).filter(lambda s: s.strip())
names = st.none() | labels.filter(lambda s: s != "unknown")


@st.composite
def pixel_detections(draw: st.DrawFn) -> RawDetection:
    x0, y0 = draw(pixels), draw(pixels)
    return RawDetection(
        label=draw(labels),
        confidence=draw(st.floats(0.0, 1.0)),
        box=(x0, y0, x0 + draw(pixels), y0 + draw(pixels)),
        box_format="xyxy",
        units="pixel",
        person_name=draw(names),
    )


@given(st.lists(pixel_detections(), max_size=20))
def test_the_client_reads_back_exactly_what_the_server_answers(raws):
    body = json.loads(json.dumps(deepstack_answer(raws, moduleId="m", inferenceMs=3)))
    assert body["count"] == len(raws)
    assert all(isinstance(p[k], int) for p in body["predictions"] for k in ("x_min", "x_max"))
    assert decode_deepstack(body) == raws


@given(st.text(max_size=100))
def test_an_error_body_makes_the_client_fail_with_its_message(message):
    with pytest.raises((PermanentProviderError, TransientProviderError)) as caught:
        decode_deepstack(deepstack_error(message or "x"), 500)
    assert (message or "x") in caught.value.message


def test_fraction_boxes_are_not_deepstack_boxes():
    with pytest.raises(ValueError, match="xyxy pixels"):
        deepstack_answer([RawDetection("person", 0.9, (0.1, 0.1, 0.2, 0.2))])
