"""Class names for a model's class indices: the ``labels`` option.

A model answers class numbers; detections need names, which the label table
then maps to detection types (car, truck, bus -> vehicle). ``labels`` is
``"coco"`` (the default: the 80 COCO classes every stock YOLO is trained
on, in the order those models number them), a list of names, a
comma-separated string of names, or ``"file:/path"`` / a path to a file with
one name per line. A class number with no name becomes ``class_<n>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from detectflow.core.errors import PermanentProviderError

__all__ = ["COCO_LABELS", "label_for", "resolve_labels"]

COCO_LABELS: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
)  # fmt: skip


def resolve_labels(option: object) -> tuple[str, ...]:
    """The names the ``labels`` option stands for; a bad option is permanent."""
    if option is None or option == "coco":
        return COCO_LABELS
    if isinstance(option, Sequence) and not isinstance(option, str):
        names = tuple(str(name).strip() for name in option)
    elif isinstance(option, str):
        text = option.strip()
        path = Path(text.removeprefix("file:"))
        if text.startswith("file:") or (("/" in text or text.endswith(".txt")) and "," not in text):
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise PermanentProviderError(
                    f"cannot read labels file {str(path)!r}: {exc}"
                ) from None
            names = tuple(line.strip() for line in lines if line.strip())
        else:
            names = tuple(name.strip() for name in text.split(","))
    else:
        raise PermanentProviderError(
            f"option labels must be 'coco', a list, names separated by commas or a file, "
            f"got {option!r}"
        )
    if not names or not all(names):
        raise PermanentProviderError(f"option labels names an empty class: {option!r}")
    return names


def label_for(labels: Sequence[str], index: int) -> str:
    return labels[index] if 0 <= index < len(labels) else f"class_{index}"
