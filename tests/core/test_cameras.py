"""A camera's id, URL and sampling rate are checked, and its URL never shows a password."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectflow.core.cameras import (
    Camera,
    check_camera_id,
    check_camera_url,
    check_fps,
    display_url,
)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://admin:s3cret@10.0.0.5:554/stream1", "rtsp://admin:***@10.0.0.5:554/stream1"),
        ("http://cam/video.mjpg?user=a&password=xx", "http://cam/video.mjpg?user=a&password=***"),
        ("rtsp://viewer@cam/live", "rtsp://viewer@cam/live"),
        ("file:///srv/clips/a.mp4", "file:///srv/clips/a.mp4"),
    ],
)
def test_display_url_hides_the_password_and_keeps_the_rest(url: str, shown: str) -> None:
    assert display_url(url) == shown


_SECRET = st.text(st.characters(min_codepoint=48, max_codepoint=122), min_size=4, max_size=20)


@given(password=_SECRET.filter(lambda p: p.isalnum() and p not in "admin"))
def test_display_url_never_contains_the_password(password: str) -> None:
    url = f"rtsp://admin:{password}@cam.local:554/stream"
    assert password not in display_url(url).replace("admin", "").replace("cam.local", "")
    assert Camera(id="c", url=url).shown_url == display_url(url)


@pytest.mark.parametrize("bad", ["", "has space", "slash/id", "x" * 129])
def test_camera_ids_that_cannot_be_topics_or_paths_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="camera id"):
        check_camera_id(bad)


@pytest.mark.parametrize("bad", ["ftp://host/x", "rtsp:///nohost", "file://", "notaurl"])
def test_urls_the_video_source_cannot_read_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="camera url"):
        check_camera_url(bad)


@pytest.mark.parametrize("bad", [0, -1, 61, float("nan"), float("inf")])
def test_sampling_rates_outside_zero_to_sixty_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="fps"):
        check_fps(bad)


def test_a_usable_camera_passes_every_check() -> None:
    assert check_camera_id("garage-1") == "garage-1"
    assert check_camera_url("rtsp://cam:554/s") == "rtsp://cam:554/s"
    assert check_fps(5) == 5.0
