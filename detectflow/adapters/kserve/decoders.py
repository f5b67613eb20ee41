"""Turn a detection model's output tensors into boxes, scores and classes.

Three layouts cover most served detectors:

``yolov8``
    One output ``[4 + C, A]`` (YOLOv8/v9/v11 as exported): per anchor
    ``cx, cy, w, h`` in input pixels, then C class scores; also transposed
    ``[A, 4 + C]``.
``yolov5``
    One output ``[A, 5 + C]``: ``cx, cy, w, h``, objectness, C class scores
    (a box's score is objectness times its best class score).
``boxes``
    Separate outputs for boxes ``[K, 4]``, scores ``[K]``, classes ``[K]``
    and optionally a count (TF Object Detection API, EfficientDet, RT-DETR,
    models exported with NMS inside): ``box_format`` ``xyxy`` (default),
    ``yxyx`` (TF), ``cxcywh`` or ``xywh``; ``box_units`` ``pixels`` of the
    input (default) or ``fraction``.

Each decoder gets one image's tensors (batch dimension already taken off)
and returns boxes as x1, y1, x2, y2 in input pixels, after the confidence
threshold and, where the model leaves it to the client (the YOLO layouts,
or ``nms=true``), class-aware NMS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from detectflow.adapters.kserve.nms import DEFAULT_IOU_THRESHOLD, nms
from detectflow.core.errors import PermanentProviderError

__all__ = [
    "BOX_FORMATS",
    "DECODERS",
    "BoxesDecoder",
    "Decoded",
    "Decoder",
    "Suppression",
    "YoloV5Decoder",
    "YoloV8Decoder",
    "to_xyxy",
]

DECODERS = ("yolov8", "yolov5", "boxes")
BOX_FORMATS = ("xyxy", "yxyx", "cxcywh", "xywh")
BoxFormat = Literal["xyxy", "yxyx", "cxcywh", "xywh"]


@dataclass(frozen=True, slots=True)
class Decoded:
    """One image's detections: ``boxes`` ``[K, 4]`` xyxy input pixels, best first."""

    boxes: npt.NDArray[np.float64]
    scores: npt.NDArray[np.float64]
    classes: npt.NDArray[np.int64]


def to_xyxy(boxes: npt.NDArray[Any], box_format: str) -> npt.NDArray[np.float64]:
    """Any of :data:`BOX_FORMATS` -> x1, y1, x2, y2."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if box_format == "xyxy":
        return b.copy()
    if box_format == "yxyx":
        return b[:, [1, 0, 3, 2]]
    if box_format == "cxcywh":
        half_w, half_h = b[:, 2] / 2, b[:, 3] / 2
        return np.stack([b[:, 0] - half_w, b[:, 1] - half_h, b[:, 0] + half_w, b[:, 1] + half_h], 1)
    if box_format == "xywh":
        return np.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], 1)
    raise PermanentProviderError(f"unknown box_format {box_format!r}; use one of {BOX_FORMATS}")


@dataclass(frozen=True, slots=True)
class Suppression:
    """Class-aware NMS settings (options ``iou_threshold``, ``max_detections``)."""

    iou_threshold: float = DEFAULT_IOU_THRESHOLD
    max_detections: int = 300

    def apply(
        self, boxes: npt.NDArray[Any], scores: npt.NDArray[Any], classes: npt.NDArray[Any]
    ) -> Decoded:
        keep = nms(boxes, scores, classes, self.iou_threshold, self.max_detections)
        return Decoded(
            np.asarray(boxes, dtype=np.float64)[keep],
            np.asarray(scores, dtype=np.float64)[keep],
            np.asarray(classes, dtype=np.int64)[keep],
        )


def _single(outputs: Mapping[str, npt.NDArray[Any]], name: str, rank: int) -> npt.NDArray[Any]:
    array = outputs.get(name)
    if array is None:
        raise PermanentProviderError(f"the model's answer has no output {name!r}")
    if array.ndim != rank:
        raise PermanentProviderError(
            f"output {name!r} has shape {list(array.shape)} per image, expected {rank} dimensions"
        )
    return array


@dataclass(frozen=True, slots=True)
class _OneOutput:
    """A YOLO layout: one output holding every anchor, NMS left to the client."""

    output: str
    suppression: Suppression = field(default_factory=Suppression)

    @property
    def outputs(self) -> tuple[str, ...]:
        return (self.output,)


@dataclass(frozen=True, slots=True)
class YoloV8Decoder(_OneOutput):
    """``[4 + C, A]`` (``channels_first``) or ``[A, 4 + C]``; None: the smaller dim is 4 + C."""

    channels_first: bool | None = None
    name: str = "yolov8"

    def decode(
        self,
        outputs: Mapping[str, npt.NDArray[Any]],
        threshold: float,
        input_size: tuple[int, int] = (1, 1),
    ) -> Decoded:
        array = _single(outputs, self.output, 2)
        first = self.channels_first
        if first is None:
            first = array.shape[0] <= array.shape[1]
        preds = np.asarray(array if first else array.T, dtype=np.float64)
        if preds.shape[0] < 5:
            raise PermanentProviderError(
                f"output {self.output!r} shape {list(array.shape)} has no class scores "
                "for the yolov8 layout [4 + classes, anchors]"
            )
        class_scores = preds[4:]
        classes = class_scores.argmax(axis=0)
        scores = class_scores[classes, np.arange(preds.shape[1])]
        mask = scores >= threshold
        boxes = to_xyxy(preds[:4, mask].T, "cxcywh")
        return self.suppression.apply(boxes, scores[mask], classes[mask])


@dataclass(frozen=True, slots=True)
class YoloV5Decoder(_OneOutput):
    """``[A, 5 + C]``: boxes, objectness, class scores."""

    name: str = "yolov5"

    def decode(
        self,
        outputs: Mapping[str, npt.NDArray[Any]],
        threshold: float,
        input_size: tuple[int, int] = (1, 1),
    ) -> Decoded:
        preds = np.asarray(_single(outputs, self.output, 2), dtype=np.float64)
        if preds.shape[1] < 6:
            raise PermanentProviderError(
                f"output {self.output!r} shape {list(preds.shape)} has no class scores "
                "for the yolov5 layout [anchors, 5 + classes]"
            )
        class_scores = preds[:, 5:]
        classes = class_scores.argmax(axis=1)
        scores = preds[:, 4] * class_scores[np.arange(len(preds)), classes]
        mask = scores >= threshold
        boxes = to_xyxy(preds[mask, :4], "cxcywh")
        return self.suppression.apply(boxes, scores[mask], classes[mask])


@dataclass(frozen=True, slots=True)
class BoxesDecoder:
    """Named outputs for boxes, scores, classes and optionally a count."""

    boxes: str
    scores: str
    classes: str
    count: str | None = None
    box_format: str = "xyxy"
    fractions: bool = False
    suppression: Suppression | None = None
    name: str = "boxes"

    @property
    def outputs(self) -> tuple[str, ...]:
        names = (self.boxes, self.scores, self.classes)
        return (*names, self.count) if self.count else names

    def decode(
        self,
        outputs: Mapping[str, npt.NDArray[Any]],
        threshold: float,
        input_size: tuple[int, int] = (1, 1),
    ) -> Decoded:
        boxes = _single(outputs, self.boxes, 2)
        scores = np.asarray(outputs.get(self.scores), dtype=np.float64).reshape(-1)
        classes = np.asarray(outputs.get(self.classes)).reshape(-1)
        if boxes.shape[1] != 4 or not len(scores) == len(classes) == len(boxes):
            raise PermanentProviderError(
                f"outputs {self.boxes!r} {list(boxes.shape)}, {self.scores!r} {len(scores)}, "
                f"{self.classes!r} {len(classes)} do not line up as [K, 4], [K], [K]"
            )
        count = len(boxes)
        if self.count is not None:
            raw_count = np.asarray(outputs.get(self.count)).reshape(-1)
            if raw_count.size:
                count = max(0, min(count, int(raw_count[0])))
        xyxy = to_xyxy(boxes[:count], self.box_format)
        if self.fractions:
            width, height = input_size
            xyxy[:, 0::2] *= width
            xyxy[:, 1::2] *= height
        scores, classes = scores[:count], np.rint(classes[:count]).astype(np.int64)
        mask = scores >= threshold
        xyxy, scores, classes = xyxy[mask], scores[mask], classes[mask]
        if self.suppression is not None:
            return self.suppression.apply(xyxy, scores, classes)
        order = np.argsort(-scores, kind="stable")
        return Decoded(xyxy[order], scores[order], classes[order])


Decoder = YoloV8Decoder | YoloV5Decoder | BoxesDecoder
