"""Synthetic camera frames for the demo, benchmarks and tests.

Each frame is a small PNG with a moving block over a camera-coloured
gradient, so consecutive frames differ (and so do the simulator's answers)
while staying a few kilobytes: no sample images need to ship.
"""

from __future__ import annotations

import hashlib

from detectflow.core.images import encode_png

__all__ = ["sample_frame"]

WIDTH, HEIGHT = 160, 120


def sample_frame(
    camera_id: str, frame_number: int, width: int = WIDTH, height: int = HEIGHT
) -> bytes:
    """A deterministic PNG for ``camera_id``'s frame ``frame_number``."""
    seed = hashlib.sha256(camera_id.encode()).digest()
    red, green, blue = seed[0], seed[1], seed[2]
    block = max(1, min(width, height) // 6)
    bx = (frame_number * 3) % max(1, width - block)
    by = (frame_number * 2 + seed[3]) % max(1, height - block)
    white = b"\xff\xff\xff" * block
    rows = bytearray()
    for y in range(height):
        shade = (red + y * 255 // max(1, height - 1)) % 256
        row = bytearray(b"".join(bytes((shade, (green + x) % 256, blue)) for x in range(width)))
        if by <= y < by + block:
            row[bx * 3 : (bx + block) * 3] = white
        rows += row
    return encode_png(width, height, bytes(rows))
