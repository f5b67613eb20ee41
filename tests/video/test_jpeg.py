"""JPEG encoding of decoded frames with FFmpeg's mjpeg encoder."""

from __future__ import annotations

import io
from pathlib import Path

import av
from PIL import Image

from detectflow.core.images import probe_image
from detectflow.video.jpeg import JpegEncoder, qscale_for


def decoded(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def test_quality_maps_onto_the_encoders_quantizer() -> None:
    assert [qscale_for(q) for q in (95, 80, 50, 1)] == [2, 5, 11, 21]


def test_every_frame_of_a_stream_encodes_to_a_jpeg_of_its_size(h264_clip: Path) -> None:
    encoder = JpegEncoder(80)
    images = [encoder.encode(frame) for frame in decoded(h264_clip)]
    assert len(images) == 50
    assert all(probe_image(image) == ("jpeg", 320, 240) for image in images)
    with Image.open(io.BytesIO(images[10])) as image:
        image.load()
        assert image.size == (320, 240)


def test_lower_quality_gives_smaller_images(h264_clip: Path) -> None:
    frame = decoded(h264_clip)[0]
    sizes = [len(JpegEncoder(q).encode(frame)) for q in (95, 80, 30)]
    assert sizes[0] > sizes[1] > sizes[2]


def test_a_change_of_resolution_opens_a_new_encoder(h264_clip: Path) -> None:
    encoder = JpegEncoder(80)
    frame = decoded(h264_clip)[0]
    small = frame.reformat(width=160, height=120)
    assert probe_image(encoder.encode(frame)) == ("jpeg", 320, 240)
    assert probe_image(encoder.encode(small)) == ("jpeg", 160, 120)
