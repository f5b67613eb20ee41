"""A camera's id, URL and sampling rate are checked, and its URL never shows a password."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectflow.core.cameras import (
    Camera,
    check_camera_id,
    check_camera_url,
    check_fps,
    display_url,
    has_masked_secret,
    unmask_url,
    url_password,
    with_password,
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


@pytest.mark.parametrize(
    ("url", "password"),
    [
        ("rtsp://admin:s3cret@cam/s", "s3cret"),
        ("rtsp://admin:p%40ss@cam/s", "p%40ss"),
        ("rtsp://admin@cam/s", None),
        ("rtsp://cam/s", None),
        ("rtsp://admin:@cam/s", ""),
    ],
)
def test_url_password_reads_the_userinfo_as_written(url: str, password: str | None) -> None:
    assert url_password(url) == password


def test_with_password_replaces_only_the_password() -> None:
    url = "rtsp://admin:***@10.0.0.5:554/s?x=1#f"
    assert with_password(url, "s3cret") == "rtsp://admin:s3cret@10.0.0.5:554/s?x=1#f"
    with pytest.raises(ValueError, match="no user"):
        with_password("rtsp://cam/s", "x")


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("rtsp://admin:***@cam/s", True),
        ("http://cam/v.mjpg?user=a&password=***", True),
        ("http://cam/v.mjpg?user=***", False),  # not a credential's place
        ("rtsp://admin:s3cret@cam/s", False),
        ("rtsp://cam/***", False),
    ],
)
def test_has_masked_secret_finds_stars_where_credentials_go(url: str, masked: bool) -> None:
    assert has_masked_secret(url) is masked


def test_unmask_url_restores_what_display_url_masked() -> None:
    stored = "http://cam/v.mjpg?user=a&password=s3cret"
    assert unmask_url(display_url(stored), stored) == stored
    stored = "rtsp://admin:s3cret@10.0.0.5/s"
    # The host moved; the masked password is still the stored one.
    assert unmask_url("rtsp://admin:***@10.0.0.9/s", stored) == "rtsp://admin:s3cret@10.0.0.9/s"
    assert unmask_url("rtsp://admin:new@10.0.0.9/s", stored) == "rtsp://admin:new@10.0.0.9/s"


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("rtsp://admin:***@cam/s", None),
        ("rtsp://admin:***@cam/s", "rtsp://admin@cam/s"),
        ("http://cam/v?password=***&x=2", "http://cam/v?password=s3cret"),
    ],
    ids=["no-stored-camera", "stored-url-has-no-password", "masked-query-and-a-changed-url"],
)
def test_unmask_url_refuses_stars_it_cannot_restore(url: str, stored: str | None) -> None:
    with pytest.raises(ValueError, match=r"\$\{NAME\}"):
        unmask_url(url, stored)


@given(password=_SECRET.filter(lambda p: p.isalnum()))
def test_a_displayed_url_unmasks_to_the_stored_one(password: str) -> None:
    stored = f"rtsp://admin:{password}@cam.local:554/stream"
    assert unmask_url(display_url(stored), stored) == stored


def test_each_refusal_says_exactly_why() -> None:
    cases = [
        (
            check_camera_id,
            "a b",
            "camera id must be 1-128 characters of letters, digits, '_', '.', ':' or '-'",
        ),
        (
            check_camera_url,
            "ftp://h/x",
            "camera url scheme must be one of rtsp, rtsps, rtmp, http, https, file",
        ),
        (check_camera_url, "FILE://", "a file:// camera url needs a path"),
        (check_camera_url, "rtsp:///x", "camera url needs a host"),
        (
            lambda url: with_password(url, "x"),
            "rtsp://h/s",
            "camera url has no user to give a password to",
        ),
        (
            lambda url: unmask_url(url, None),
            "rtsp://u:***@h/s",
            "camera url has *** for a "
            "credential and no stored camera url to take it from; write the credential, or "
            "${NAME} to read it from the environment",
        ),
    ]
    for check, value, message in cases:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            check(value)


def test_schemes_are_read_in_any_case_and_the_fps_range_is_inclusive_at_sixty() -> None:
    assert check_camera_url("FILE:///clips/a.mp4") == "FILE:///clips/a.mp4"
    assert check_camera_url("RTSP://cam/s") == "RTSP://cam/s"
    assert check_fps(0.5) == 0.5
    assert check_fps(60) == 60.0


@pytest.mark.parametrize(
    ("url", "password", "shown"),
    [
        ("rtsp://admin:p@ss@cam/s", "p@ss", "rtsp://admin:***@cam/s"),
        ("rtsp://admin:pa:ss@cam/s", "pa:ss", "rtsp://admin:***@cam/s"),
    ],
)
def test_a_password_holding_at_or_colon_is_still_one_password(
    url: str, password: str, shown: str
) -> None:
    assert url_password(url) == password
    assert display_url(url) == shown
    assert with_password(shown, password) == url
