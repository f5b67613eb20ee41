from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from detectflow.core.images import encode_png, image_info, probe_image


def jpeg_header(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


def webp_vp8x(width: int, height: int) -> bytes:
    body = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00"
    body += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


@given(st.integers(1, 64), st.integers(1, 64))
def test_png_size_round_trips(width, height):
    png = encode_png(width, height, bytes(width * height * 3))
    info = image_info(png)
    assert info is not None
    assert (info.format, info.width, info.height) == ("png", width, height)


@given(st.integers(1, 65535), st.integers(1, 65535))
def test_jpeg_size_comes_from_the_start_of_frame(width, height):
    info = image_info(jpeg_header(width, height))
    assert info is not None
    assert (info.format, info.width, info.height) == ("jpeg", width, height)


@given(st.integers(1, 1 << 24), st.integers(1, 1 << 24))
def test_webp_extended_header_size(width, height):
    info = image_info(webp_vp8x(width, height))
    assert info is not None
    assert (info.format, info.width, info.height) == ("webp", width, height)


@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_crash_the_parser(data):
    info = image_info(data)
    assert info is None or info.format in {"jpeg", "png", "webp"}


@given(
    st.one_of(
        st.binary(max_size=64),
        st.binary(max_size=64).map(lambda tail: b"\xff\xd8\xff" + tail),
        st.binary(max_size=64).map(lambda tail: b"\x89PNG\r\n\x1a\n" + tail),
        st.builds(webp_vp8x, st.integers(1, 1 << 24), st.integers(1, 1 << 24)),
    )
)
def test_probe_image_is_image_info_as_a_tuple(data):
    info = image_info(data)
    assert probe_image(data) == (None if info is None else (info.format, info.width, info.height))


@given(st.binary(max_size=200))
def test_truncated_jpeg_is_still_a_jpeg_with_unknown_or_parsed_size(tail):
    info = image_info(b"\xff\xd8\xff" + tail)
    assert info is not None and info.format == "jpeg"


def test_text_is_not_an_image():
    assert image_info(b"hello world, not an image") is None
