"""Turn providers' raw answers into stored detections.

Providers answer in pixels or fractions, as corners or as x/y/width/height.
Everything stored is a box in fractions of the frame, clamped to [0, 1] with
a positive width and height; boxes with no area left are dropped and counted
rather than stored as zero-size noise. A confidence that is NaN or outside
[0, 1] means the provider's answer is malformed, so it raises.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from detectflow.core.errors import NormalizationError
from detectflow.core.ids import detection_id
from detectflow.core.models import (
    BBox,
    BoxFormat,
    BoxUnits,
    Detection,
    Frame,
    RawDetection,
    utcnow,
)

__all__ = [
    "DEFAULT_LABEL_MAP",
    "Normalized",
    "check_confidence",
    "detection_type_for",
    "normalize_box",
    "normalize_detections",
    "pixel_corners",
]

DEFAULT_LABEL_MAP: Mapping[str, str] = {
    "person": "person",
    "people": "person",
    "pedestrian": "person",
    "face": "face",
    "vehicle": "vehicle",
    "car": "vehicle",
    "truck": "vehicle",
    "bus": "vehicle",
    "motorcycle": "vehicle",
    "motorbike": "vehicle",
    "bicycle": "vehicle",
}


def detection_type_for(label: str, label_map: Mapping[str, str] = DEFAULT_LABEL_MAP) -> str:
    """Map a provider label to a ``detection_type``; unknown labels stand for themselves."""
    key = label.strip().lower()
    return label_map.get(key, key)


def check_confidence(confidence: float) -> float:
    value = float(confidence)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise NormalizationError(f"confidence must be within [0, 1], got {confidence!r}")
    return value


def _clamp(value: float) -> float:
    return 0.0 if value < 0.0 else 1.0 if value > 1.0 else value


def normalize_box(
    box: Sequence[float],
    box_format: BoxFormat = "xyxy",
    units: BoxUnits = "fraction",
    width: int | None = None,
    height: int | None = None,
) -> BBox | None:
    """Return the box in clamped fractions, or None when it has no area in the frame."""
    if len(box) != 4:
        raise NormalizationError(f"a box has 4 numbers, got {len(box)}")
    a, b, c, d = float(box[0]), float(box[1]), float(box[2]), float(box[3])
    isfinite = math.isfinite
    if not (isfinite(a) and isfinite(b) and isfinite(c) and isfinite(d)):
        raise NormalizationError(f"box coordinates must be finite numbers, got {tuple(box)!r}")
    if box_format == "xywh":
        x0, y0, x1, y1 = a, b, a + c, b + d
    elif box_format == "xyxy":
        x0, y0, x1, y1 = a, b, c, d
    else:
        raise NormalizationError(f"unknown box format {box_format!r}")
    if units == "pixel":
        if not width or not height:
            raise NormalizationError("pixel boxes need the frame's width and height")
        x0, x1 = x0 / width, x1 / width
        y0, y1 = y0 / height, y1 / height
    elif units != "fraction":
        raise NormalizationError(f"unknown box units {units!r}")
    if x1 < x0:
        x0, x1 = x1, x0
    if y1 < y0:
        y0, y1 = y1, y0
    x0, y0, x1, y1 = _clamp(x0), _clamp(y0), _clamp(x1), _clamp(y1)
    w, h = x1 - x0, y1 - y0
    if w <= 0.0 or h <= 0.0:
        return None
    return BBox(x=x0, y=y0, width=w, height=h)


def pixel_corners(bbox: BBox, width: int, height: int) -> tuple[int, int, int, int]:
    """A stored box as integer pixel corners ``(x_min, y_min, x_max, y_max)`` of a
    ``width`` x ``height`` image: the inverse of :func:`normalize_box` for pixel
    boxes, for clients that asked in pixels (the DeepStack gateway).

    Rounded, not truncated: a corner stored as 123/640 comes back as 123
    although the division and multiplication may land a hair below it.
    """
    if width < 1 or height < 1:
        raise NormalizationError(f"an image has a positive size, got {width}x{height}")
    return (
        round(bbox.x * width),
        round(bbox.y * height),
        round((bbox.x + bbox.width) * width),
        round((bbox.y + bbox.height) * height),
    )


@dataclass(frozen=True, slots=True)
class Normalized:
    detections: tuple[Detection, ...]
    dropped_boxes: int
    below_threshold: int


def normalize_detections(
    frame: Frame,
    raws: Iterable[RawDetection],
    *,
    confidence_threshold: float = 0.0,
    label_map: Mapping[str, str] = DEFAULT_LABEL_MAP,
    now: datetime | None = None,
) -> Normalized:
    """Normalize a provider's answer for ``frame``.

    Detection ids derive from the frame id and the raw detection's position,
    so the same answer always yields the same ids.
    """
    kept: list[Detection] = []
    dropped = below = 0
    now = now or utcnow()  # one stamp per frame: its detections are stored together
    for index, raw in enumerate(raws):
        confidence = check_confidence(raw.confidence)
        bbox = normalize_box(raw.box, raw.box_format, raw.units, frame.width, frame.height)
        if bbox is None:
            dropped += 1
            continue
        if confidence < confidence_threshold:
            below += 1
            continue
        kept.append(
            Detection(
                id=detection_id(frame.frame_id, index),
                camera_id=frame.camera_id,
                frame_id=frame.frame_id,
                detection_type=detection_type_for(raw.label, label_map),
                label=raw.label,
                confidence=confidence,
                bbox=bbox,
                person_name=raw.person_name,
                person_id=raw.person_id,
                face_encoding=raw.face_encoding,
                frame_number=frame.frame_number,
                frame_timestamp=frame.timestamp,
                created_at=now,
                updated_at=now,
            )
        )
    return Normalized(tuple(kept), dropped, below)
