from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectflow.core.errors import InvalidFrameError
from detectflow.core.frames import make_frame, parse_timestamp, validate_camera_id
from detectflow.core.images import encode_png

PNG = encode_png(4, 3, bytes(36))


def test_valid_frame_carries_its_size_and_a_stable_id():
    a = make_frame("cam-1", PNG, max_bytes=1000, frame_number=7)
    b = make_frame("cam-1", PNG, max_bytes=1000, frame_number=7)
    assert (a.width, a.height) == (4, 3)
    assert a.frame_id == b.frame_id
    assert a.frame_id != make_frame("cam-1", PNG, max_bytes=1000, frame_number=8).frame_id


def test_without_a_number_the_id_derives_from_the_bytes():
    a = make_frame("cam-1", PNG, max_bytes=1000)
    other = encode_png(4, 3, bytes([1]) * 36)
    assert a.frame_id == make_frame("cam-1", PNG, max_bytes=1000).frame_id
    assert a.frame_id != make_frame("cam-1", other, max_bytes=1000).frame_id


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"camera_id": ""}, "camera_id"),
        ({"camera_id": "a b"}, "camera_id"),
        ({"camera_id": "x" * 129}, "camera_id"),
        ({"camera_id": 5}, "camera_id"),
        ({"image": b""}, "no image"),
        ({"image": b"GIF89a...."}, "not a JPEG, PNG or WebP"),
        ({"max_bytes": 10}, "limit is 10"),
        ({"priority": 0}, "priority"),
        ({"priority": 11}, "priority"),
        ({"frame_number": -1}, "frame_number"),
        ({"timestamp": "yesterday"}, "RFC 3339"),
        ({"timestamp": "0001-01-01T00:01:00+10:20"}, "out of range"),
        ({"frame_id": "x" * 129}, "frame_id"),
        ({"frame_id": ""}, "frame_id"),
    ],
)
def test_invalid_frames_are_refused_with_a_reason(kwargs, message):
    args = {"camera_id": "cam-1", "image": PNG, "max_bytes": 1000, **kwargs}
    with pytest.raises(InvalidFrameError, match=message):
        make_frame(args.pop("camera_id"), args.pop("image"), **args)


@given(st.from_regex(r"[A-Za-z0-9_.:-]{1,128}", fullmatch=True))
def test_every_allowed_camera_id_is_accepted(camera_id):
    assert validate_camera_id(camera_id) == camera_id


@given(st.text(min_size=1, max_size=20).filter(lambda s: any(c in s for c in " /#+\n\x00é")))
def test_camera_ids_with_other_characters_are_refused(camera_id):
    with pytest.raises(InvalidFrameError):
        validate_camera_id(camera_id)


@given(st.datetimes(timezones=st.just(timezone(timedelta(hours=3)))))
def test_timestamps_parse_to_the_same_instant_in_utc(moment):
    parsed = parse_timestamp(moment.isoformat())
    assert parsed == moment
    assert parsed.tzinfo == UTC


def test_z_suffix_and_naive_timestamps_are_utc():
    assert parse_timestamp("2025-11-05T12:34:56Z") == datetime(2025, 11, 5, 12, 34, 56, tzinfo=UTC)
    assert parse_timestamp("2025-11-05T12:34:56") == datetime(2025, 11, 5, 12, 34, 56, tzinfo=UTC)
