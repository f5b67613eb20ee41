"""Video clips the project makes itself: the demo's camera, the tests' and benchmarks' files.

A clip is a bundled sample image (:func:`detectflow.samples.sample_frame`)
moving across a gradient background, written by PyAV: H.264 in MP4 (what
cameras record) or MJPEG in AVI. Nothing is downloaded.
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image

from detectflow.samples import sample_frame

__all__ = ["CODECS", "write_clip"]

CODECS = {"h264": ("mp4", "yuv420p"), "mjpeg": ("avi", "yuvj420p")}
"""Codec -> (container, pixel format)."""


def _background(width: int, height: int, seed: int) -> Image.Image:
    across = Image.linear_gradient("L").rotate(90).resize((width, height))
    down = Image.linear_gradient("L").resize((width, height))
    flat = Image.new("L", (width, height), (seed * 53) % 256)
    return Image.merge("RGB", (across, down, flat))


def write_clip(
    path: Path,
    *,
    codec: str = "h264",
    width: int = 320,
    height: int = 240,
    fps: int = 25,
    seconds: float = 2.0,
    camera_id: str = "clip",
) -> Path:
    """Write a clip of ``seconds`` at ``fps``: ``camera_id``'s sample image
    crossing the frame left to right, bouncing down and up. Returns ``path``."""
    container_format, pix_fmt = CODECS[codec]
    background = _background(width, height, len(camera_id))
    side = max(16, min(width, height) // 3)
    sprite = Image.open(io.BytesIO(sample_frame(camera_id, 0))).convert("RGB")
    sprite = sprite.resize((side, side * sprite.height // sprite.width))
    count = max(1, round(seconds * fps))
    with av.open(str(path), mode="w", format=container_format) as out:
        stream = out.add_stream(codec, rate=Fraction(fps))
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if codec == "h264":
            stream.options = {"preset": "veryfast", "tune": "zerolatency"}
        for index in range(count):
            image = background.copy()
            x = (width - sprite.width) * index // max(1, count - 1)
            swing = abs(
                (index * 2 * (height - sprite.height) // max(1, count))
                % (2 * max(1, height - sprite.height))
                - (height - sprite.height)
            )
            image.paste(sprite, (x, swing))
            frame = av.VideoFrame.from_image(image)  # type: ignore[no-untyped-call]
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
