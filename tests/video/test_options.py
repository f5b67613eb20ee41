"""A camera's reader options: defaults, accepted spellings, refusals by name."""

from __future__ import annotations

import pytest

from detectflow.core.cameras import Camera
from detectflow.video.options import ReaderOptions, reader_options


def options(**given: object) -> ReaderOptions:
    return reader_options(Camera(id="c", url="rtsp://h/s", fps=2.5, options=given))


def test_the_defaults() -> None:
    assert options() == ReaderOptions(
        fps=2.5, realtime=True, loop=False, stall_seconds=10.0, jpeg_quality=80, transport="tcp"
    )


@pytest.mark.parametrize(
    ("value", "expected"), [("0", False), (0, False), ("1", True), (True, True), ("on", True)]
)
def test_flags_take_json_and_url_spellings(value: object, expected: bool) -> None:
    assert options(loop=value).loop is expected
    assert options(realtime=value).realtime is expected


def test_zones_and_other_options_are_left_alone() -> None:
    assert options(zones=[{"name": "door"}], transport="UDP").transport == "udp"


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"loop": "maybe"}, "loop"),
        ({"stall_seconds": 0}, "stall_seconds"),
        ({"stall_seconds": "soon"}, "stall_seconds"),
        ({"jpeg_quality": 96}, "jpeg_quality"),
        ({"jpeg_quality": 50.5}, "jpeg_quality"),
        ({"transport": "http"}, "transport"),
    ],
)
def test_bad_values_are_refused_by_name(given: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        options(**given)
