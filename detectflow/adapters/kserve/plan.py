"""From a model's metadata and the provider's options to how to call it.

The adapter reads the model's inputs and outputs once, on first use, and
:func:`resolve_plan` decides everything a frame needs: which input takes the
image and how (FP32/FP16/UINT8, NCHW/NHWC, size; or a ``BYTES`` input that
takes the JPEG as is), which decoder reads which outputs, how many frames
one call may carry. A model that does not fit is refused here with a
message naming what was found, so ``provider test`` says what is wrong
instead of the first frame.

Options (all optional): ``input``, ``outputs`` (names, a list or comma
separated), ``decoder`` (``yolov8``, ``yolov5``, ``boxes``), ``layout``
(``NCHW``/``NHWC``), ``input_size`` (``640`` or ``640x480``, for dynamic
image dimensions; default 640), ``labels``, ``box_format``, ``box_units``,
``nms``, ``iou_threshold``, ``max_detections``, ``max_batch_size``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detectflow.adapters.batching import DEFAULT_MAX_BATCH_SIZE
from detectflow.adapters.kserve.decoders import (
    BOX_FORMATS,
    DECODERS,
    BoxesDecoder,
    Decoder,
    Suppression,
    YoloV5Decoder,
    YoloV8Decoder,
)
from detectflow.adapters.kserve.labels import resolve_labels
from detectflow.adapters.kserve.metadata import ModelMetadata, TensorSpec
from detectflow.adapters.kserve.nms import DEFAULT_IOU_THRESHOLD
from detectflow.adapters.kserve.preprocess import Layout
from detectflow.adapters.kserve.tensors import DTYPES
from detectflow.core.errors import PermanentProviderError

__all__ = [
    "DEFAULT_INPUT_SIZE",
    "IMAGE_DATATYPES",
    "EncodedInput",
    "ImageInput",
    "ModelPlan",
    "resolve_plan",
]

DEFAULT_INPUT_SIZE = 640
IMAGE_DATATYPES = ("FP32", "FP16", "UINT8")
_DYNAMIC = -1


@dataclass(frozen=True, slots=True)
class ImageInput:
    """Send decoded, letterboxed pixels."""

    name: str
    datatype: str
    layout: Layout
    width: int
    height: int
    batched: bool  # the tensor has a leading batch dimension

    @property
    def dtype(self) -> np.dtype[Any]:
        return DTYPES[self.datatype]


@dataclass(frozen=True, slots=True)
class EncodedInput:
    """Send the frame's encoded bytes as they are (server-side preprocessing)."""

    name: str
    batched: bool
    item_shape: tuple[int, ...] = ()  # per frame: () or (1,)


@dataclass(frozen=True, slots=True)
class ModelPlan:
    input: ImageInput | EncodedInput
    decoder: Decoder
    labels: tuple[str, ...]
    max_batch_size: int  # by the model's shape: 8 when its batch is dynamic, else 1

    def describe(self) -> str:
        source = self.input
        if isinstance(source, ImageInput):
            what = (
                f"input {source.name!r} {source.datatype} {source.layout} "
                f"{source.width}x{source.height}"
            )
        else:
            what = f"input {source.name!r} BYTES (encoded image)"
        return f"{what}, decoder {self.decoder.name} on {', '.join(self.decoder.outputs)}"


def _found(specs: Sequence[TensorSpec]) -> str:
    return "; ".join(s.describe() for s in specs) or "none"


def _names(option: object) -> list[str]:
    if option is None:
        return []
    if isinstance(option, str):
        return [n.strip() for n in option.split(",") if n.strip()]
    if isinstance(option, Sequence):
        return [str(n).strip() for n in option]
    raise PermanentProviderError(f"option outputs must be names, got {option!r}")


def resolve_plan(metadata: ModelMetadata, options: Mapping[str, Any]) -> ModelPlan:
    """Decide how to call the model; raises :class:`PermanentProviderError` when it cannot."""
    labels = resolve_labels(options.get("labels"))
    source, batch = _resolve_input(metadata, options)
    decoder = _resolve_decoder(metadata, options, labels, source.batched)
    return ModelPlan(source, decoder, labels, batch)


# -- the input ----------------------------------------------------------------


def _resolve_input(
    metadata: ModelMetadata, options: Mapping[str, Any]
) -> tuple[ImageInput | EncodedInput, int]:
    wanted = options.get("input")
    if wanted is not None:
        matches = [s for s in metadata.inputs if s.name == wanted]
        if not matches:
            raise PermanentProviderError(
                f"model has no input {wanted!r}; found: {_found(metadata.inputs)}"
            )
        spec = matches[0]
    else:
        candidates = [
            s
            for s in metadata.inputs
            if s.datatype == "BYTES" or (s.datatype in IMAGE_DATATYPES and len(s.shape) in (3, 4))
        ]
        if len(candidates) != 1 or len(metadata.inputs) != 1:
            why = "no image-like input" if not candidates else "several inputs"
            raise PermanentProviderError(
                f"model {metadata.name!r} has {why} (an FP32/FP16/UINT8 image tensor or a "
                f"BYTES input; set option input when there are several); "
                f"found: {_found(metadata.inputs)}"
            )
        spec = candidates[0]
    if spec.datatype == "BYTES":
        return _encoded_input(spec)
    if spec.datatype not in IMAGE_DATATYPES or len(spec.shape) not in (3, 4):
        raise PermanentProviderError(
            f"input {spec.describe()} is not an image: expected {'/'.join(IMAGE_DATATYPES)} "
            "with shape [N, 3, H, W], [N, H, W, 3] or without N"
        )
    batched = len(spec.shape) == 4
    item = spec.shape[1:] if batched else spec.shape
    layout = _layout(spec, item, options.get("layout"))
    h, w = (item[1], item[2]) if layout == "NCHW" else (item[0], item[1])
    size_w, size_h = _input_size(options.get("input_size"))
    width = w if w > 0 else size_w
    height = h if h > 0 else size_h
    image = ImageInput(spec.name, spec.datatype, layout, width, height, batched)
    return image, _batch_capacity(spec, batched)


def _encoded_input(spec: TensorSpec) -> tuple[EncodedInput, int]:
    shape = spec.shape
    if len(shape) == 1:  # [-1] or [1]: one element per frame
        batched = shape[0] == _DYNAMIC
        return EncodedInput(spec.name, batched, ()), _batch_capacity(spec, batched)
    if len(shape) == 2 and shape[1] in (1, _DYNAMIC):  # [N, 1]
        return EncodedInput(spec.name, True, (1,)), _batch_capacity(spec, True)
    raise PermanentProviderError(
        f"BYTES input {spec.describe()} does not take one encoded image per frame "
        "(expected shape [-1], [1] or [-1, 1])"
    )


def _batch_capacity(spec: TensorSpec, batched: bool) -> int:
    if not batched:
        return 1
    first = spec.shape[0]
    if first == _DYNAMIC:
        return DEFAULT_MAX_BATCH_SIZE
    if first == 1:
        return 1
    raise PermanentProviderError(
        f"input {spec.describe()} has a fixed batch of {first}; detectflow sends one frame "
        "or a dynamic batch (export the model with batch 1 or a dynamic first dimension)"
    )


def _layout(spec: TensorSpec, item: Sequence[int], option: object) -> Layout:
    if option is not None:
        if option not in ("NCHW", "NHWC"):
            raise PermanentProviderError(f"option layout must be NCHW or NHWC, got {option!r}")
        layout: Layout = "NCHW" if option == "NCHW" else "NHWC"
        channels = item[0] if layout == "NCHW" else item[2]
    elif item[0] == 3:
        layout, channels = "NCHW", 3
    elif item[2] == 3:
        layout, channels = "NHWC", 3
    else:
        raise PermanentProviderError(
            f"input {spec.describe()} has no 3-channel (RGB) dimension first or last; "
            "set option layout when the channels are dynamic"
        )
    if channels not in (3, _DYNAMIC):
        raise PermanentProviderError(
            f"input {spec.describe()} has {channels} channels in {layout}; detectflow sends RGB"
        )
    return layout


def _input_size(option: object) -> tuple[int, int]:
    if option is None:
        return DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE
    text = str(option).lower().strip()
    try:
        w, _, h = text.partition("x")
        width, height = int(w), int(h or w)
    except ValueError:
        width = height = 0
    if width < 1 or height < 1:
        raise PermanentProviderError(f"option input_size must be 640 or 640x480, got {option!r}")
    return width, height


# -- the decoder --------------------------------------------------------------


def _suppression(options: Mapping[str, Any]) -> Suppression:
    iou = options.get("iou_threshold", DEFAULT_IOU_THRESHOLD)
    most = options.get("max_detections", 300)
    try:
        iou, most = float(iou), int(most)
    except (TypeError, ValueError):
        iou, most = -1.0, 0
    if not 0 < iou <= 1 or most < 1:
        raise PermanentProviderError(
            "options iou_threshold must be in (0, 1] and max_detections >= 1, "
            f"got {options.get('iou_threshold')!r}, {options.get('max_detections')!r}"
        )
    return Suppression(iou, most)


def _flag(options: Mapping[str, Any], key: str, default: bool) -> bool:
    value = options.get(key, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.lower() in ("true", "1", "yes")
    raise PermanentProviderError(f"option {key} must be true or false, got {value!r}")


def _resolve_decoder(
    metadata: ModelMetadata, options: Mapping[str, Any], labels: Sequence[str], batched: bool
) -> Decoder:
    name = options.get("decoder")
    if name is not None and name not in DECODERS:
        raise PermanentProviderError(f"option decoder must be one of {DECODERS}, got {name!r}")
    wanted = _names(options.get("outputs"))
    by_name = {s.name: s for s in metadata.outputs}
    for missing in (n for n in wanted if n not in by_name):
        raise PermanentProviderError(
            f"model has no output {missing!r}; found: {_found(metadata.outputs)}"
        )
    if name == "boxes" or (name is None and (len(wanted) >= 3 or len(metadata.outputs) >= 3)):
        return _boxes_decoder(metadata, options, wanted)
    if len(wanted) > 1 or (not wanted and len(metadata.outputs) != 1):
        raise PermanentProviderError(
            f"cannot tell which output holds the detections of model {metadata.name!r}; "
            f"set options decoder and outputs; found: {_found(metadata.outputs)}"
        )
    spec = by_name[wanted[0]] if wanted else metadata.outputs[0]
    item = spec.shape[1:] if batched or len(spec.shape) == 3 else spec.shape
    suppression = _suppression(options)
    if len(item) != 2:
        raise PermanentProviderError(
            f"output {spec.describe()} is no known detection layout "
            "(yolov8 [N, 4+C, A] or [N, A, 4+C], yolov5 [N, A, 5+C], or boxes/scores/classes)"
        )
    a, b = item
    if name == "yolov5":
        return YoloV5Decoder(spec.name, suppression)
    if name == "yolov8":
        first = None if a < 0 or b < 0 else a <= b
        return YoloV8Decoder(spec.name, suppression, channels_first=first)
    # The class count from the labels tells the layouts apart; failing that,
    # anchors (thousands) outnumber channels (4 + classes).
    if a == 4 + len(labels):
        return YoloV8Decoder(spec.name, suppression, channels_first=True)
    if b == 4 + len(labels):
        return YoloV8Decoder(spec.name, suppression, channels_first=False)
    if b == 5 + len(labels):
        return YoloV5Decoder(spec.name, suppression)
    if a > 4 and (b < 0 or a < b):
        return YoloV8Decoder(spec.name, suppression, channels_first=True if b > 0 else None)
    raise PermanentProviderError(
        f"output {spec.describe()} could be yolov8 [A, 4+C] or yolov5 [A, 5+C] and its size "
        f"fits neither with {len(labels)} labels; set option decoder (and labels)"
    )


def _boxes_decoder(
    metadata: ModelMetadata, options: Mapping[str, Any], wanted: list[str]
) -> BoxesDecoder:
    if wanted:
        if len(wanted) not in (3, 4):
            raise PermanentProviderError(
                "option outputs for the boxes decoder names boxes, scores, classes "
                f"and optionally a count, in that order; got {wanted}"
            )
        boxes, scores, classes = wanted[:3]
        count = wanted[3] if len(wanted) == 4 else None
    else:
        names = [s.name for s in metadata.outputs]

        def pick(*words: str) -> str | None:
            hits = [n for n in names if any(w in n.lower() for w in words)]
            return hits[0] if len(hits) == 1 else None

        found_boxes, found_scores, found_classes = (
            pick("box"),
            pick("score"),
            pick("class", "label"),
        )
        count = pick("num", "count")
        if found_boxes is None or found_scores is None or found_classes is None:
            raise PermanentProviderError(
                "cannot tell the boxes, scores and classes outputs apart by name; set option "
                f"outputs=boxes,scores,classes[,count]; found: {_found(metadata.outputs)}"
            )
        boxes, scores, classes = found_boxes, found_scores, found_classes
    box_format = str(options.get("box_format", "xyxy"))
    if box_format not in BOX_FORMATS:
        raise PermanentProviderError(
            f"option box_format must be one of {BOX_FORMATS}, got {box_format!r}"
        )
    units = options.get("box_units", "pixels")
    if units not in ("pixels", "fraction"):
        raise PermanentProviderError(f"option box_units must be pixels or fraction, got {units!r}")
    suppression = _suppression(options) if _flag(options, "nms", False) else None
    return BoxesDecoder(boxes, scores, classes, count, box_format, units == "fraction", suppression)
