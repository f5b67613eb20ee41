"""Letterbox a frame into a model's input, and map boxes back through it.

YOLO-family models are trained on letterboxed images: the frame scaled to
fit the input keeping its aspect ratio, centred, the rest padded with grey
114. Feeding them the same (RGB, scaled to [0, 1] for float inputs) is what
makes their scores mean what they were trained to mean; mapping every box
back through the *same* :class:`Letterbox` is what makes boxes land on the
original frame exactly. The geometry is pure arithmetic, tested with
hypothesis; decoding and resizing are Pillow's.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from detectflow.core.errors import InvalidFrameError

__all__ = [
    "PAD_VALUE",
    "Layout",
    "Letterbox",
    "decode_rgb",
    "image_tensor",
    "letterbox_geometry",
    "letterbox_image",
    "to_input",
    "to_source",
]

PAD_VALUE = 114
Layout = Literal["NCHW", "NHWC"]


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How a ``src_w`` x ``src_h`` frame sits inside a ``dst_w`` x ``dst_h`` input."""

    src_w: int
    src_h: int
    dst_w: int
    dst_h: int
    new_w: int  # the scaled frame's size inside the input
    new_h: int
    pad_x: int  # where it starts
    pad_y: int


def letterbox_geometry(src_w: int, src_h: int, dst_w: int, dst_h: int) -> Letterbox:
    """Scale to fit keeping the aspect ratio, round to whole pixels, centre."""
    if min(src_w, src_h, dst_w, dst_h) < 1:
        raise ValueError(f"sizes must be positive: {src_w}x{src_h} into {dst_w}x{dst_h}")
    scale = min(dst_w / src_w, dst_h / src_h)
    new_w = min(dst_w, max(1, round(src_w * scale)))
    new_h = min(dst_h, max(1, round(src_h * scale)))
    return Letterbox(
        src_w, src_h, dst_w, dst_h, new_w, new_h, (dst_w - new_w) // 2, (dst_h - new_h) // 2
    )


def to_source(boxes: npt.NDArray[Any], box: Letterbox) -> npt.NDArray[np.float64]:
    """``[K, 4]`` x1, y1, x2, y2 in input pixels -> in frame pixels, clipped to the frame."""
    out = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    out[:, 0::2] = (out[:, 0::2] - box.pad_x) * (box.src_w / box.new_w)
    out[:, 1::2] = (out[:, 1::2] - box.pad_y) * (box.src_h / box.new_h)
    out[:, 0::2] = out[:, 0::2].clip(0, box.src_w)
    out[:, 1::2] = out[:, 1::2].clip(0, box.src_h)
    return out


def to_input(boxes: npt.NDArray[Any], box: Letterbox) -> npt.NDArray[np.float64]:
    """The inverse of :func:`to_source` (before clipping): frame pixels -> input pixels."""
    out = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    out[:, 0::2] = out[:, 0::2] * (box.new_w / box.src_w) + box.pad_x
    out[:, 1::2] = out[:, 1::2] * (box.new_h / box.src_h) + box.pad_y
    return out


def decode_rgb(image: bytes) -> npt.NDArray[np.uint8]:
    """Decode JPEG/PNG/WebP into an ``H x W x 3`` RGB array."""
    try:
        with Image.open(io.BytesIO(image)) as opened:
            rgb = opened.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InvalidFrameError(f"cannot decode the frame's image: {exc}") from None
    return np.asarray(rgb, dtype=np.uint8)


def letterbox_image(rgb: npt.NDArray[np.uint8], box: Letterbox) -> npt.NDArray[np.uint8]:
    """The ``dst_h x dst_w x 3`` input: the frame resized (bilinear) on grey 114."""
    canvas = np.full((box.dst_h, box.dst_w, 3), PAD_VALUE, dtype=np.uint8)
    if (box.new_w, box.new_h) == (box.src_w, box.src_h):
        resized = rgb
    else:
        resized = np.asarray(
            Image.fromarray(rgb).resize((box.new_w, box.new_h), Image.Resampling.BILINEAR)
        )
    canvas[box.pad_y : box.pad_y + box.new_h, box.pad_x : box.pad_x + box.new_w] = resized
    return canvas


def image_tensor(
    canvas: npt.NDArray[np.uint8], layout: Layout, dtype: np.dtype[Any]
) -> npt.NDArray[Any]:
    """One image as the model takes it (no batch dimension): layout, dtype, [0, 1] floats."""
    array: npt.NDArray[Any] = canvas
    if layout == "NCHW":
        array = array.transpose(2, 0, 1)
    out: npt.NDArray[Any] = np.ascontiguousarray(array, dtype=dtype)
    if dtype.kind == "f":
        out *= dtype.type(1 / 255)
    return out
