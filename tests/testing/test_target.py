"""The kit's default frames are real images, deterministic and distinct per index."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from detectflow.core.images import image_info
from detectflow.testing import ConformanceTarget, conformance_frame
from tests.testing import doubles


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=999))
def test_a_frame_is_a_valid_png_of_its_declared_size(index: int) -> None:
    frame = conformance_frame(index)
    info = image_info(frame.image)
    assert info is not None and info.format == "png"
    assert (info.width, info.height) == (frame.width, frame.height)
    assert frame.frame_number == index


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=999), st.integers(min_value=0, max_value=999))
def test_frames_differ_exactly_when_indexes_do(a: int, b: int) -> None:
    same = conformance_frame(a).image == conformance_frame(b).image
    assert same == (a == b)
    assert (conformance_frame(a).frame_id == conformance_frame(b).frame_id) == (a == b)


def test_the_default_hundred_frames_get_distinct_answers_from_a_hashing_provider() -> None:
    answers = {tuple(doubles.answer_for(conformance_frame(i))) for i in range(100)}
    assert len(answers) == 100


def test_defaults_match_the_documented_contract() -> None:
    target = ConformanceTarget(healthy=doubles.factory(doubles.healthy))
    assert target.concurrency == 100
    assert target.timeout_seconds + target.grace_seconds <= 1.0
    assert target.slow is target.unreachable is None
