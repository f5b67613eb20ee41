"""The two wire dialects of the ``http_api`` adapter, as pure functions.

Encoding a request and decoding an answer need no socket, so they live here,
apart from the client in :mod:`detectflow.adapters.http`: the adapter stays
about connections and error classes, and the parsing can be tested with
arbitrary bytes. Every malformed answer raises
:class:`~detectflow.core.errors.PermanentProviderError` naming what was wrong;
nothing is skipped silently.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from detectflow.core.errors import PermanentProviderError, TransientProviderError
from detectflow.core.images import image_info
from detectflow.core.models import Frame, RawDetection
from detectflow.core.serialize import isoformat

__all__ = [
    "DEEPSTACK_DETECT_PATH",
    "DIALECTS",
    "Dialect",
    "EncodedRequest",
    "decode_deepstack",
    "decode_detectflow",
    "deepstack_answer",
    "deepstack_error",
    "encode_deepstack",
    "encode_detectflow",
    "error_detail",
    "is_queue_full",
    "parse_json",
]

Dialect = Literal["detectflow", "deepstack"]
DIALECTS: tuple[Dialect, ...] = ("detectflow", "deepstack")

DEEPSTACK_DETECT_PATH = "/v1/vision/detection"
"""Where DeepStack and CodeProject.AI serve object detection (and detectflow's gateway)."""

_CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
_FORMATS = ("xyxy", "xywh")
_UNITS = ("fraction", "pixel")


@dataclass(frozen=True, slots=True)
class EncodedRequest:
    content: bytes
    content_type: str


# -- requests ------------------------------------------------------------


def encode_detectflow(frame: Frame, min_confidence: float) -> EncodedRequest:
    """The detectflow JSON body, ``image`` first.

    The base64 image is spliced in as bytes: JSON-encoding a large string means
    scanning it for escapes base64 can never contain, and that scan was most
    of the client CPU spent per request.
    """
    meta = {
        "camera_id": frame.camera_id,
        "frame_id": frame.frame_id,
        "frame_number": frame.frame_number,
        "timestamp": isoformat(frame.timestamp),
        "width": frame.width,
        "height": frame.height,
        "min_confidence": min_confidence,
    }
    rest = json.dumps(meta, separators=(",", ":")).encode()
    content = b'{"image":"' + base64.b64encode(frame.image) + b'",' + rest[1:]
    return EncodedRequest(content, "application/json")


def encode_deepstack(
    frame: Frame, min_confidence: float, api_key: str | None, boundary: str | None = None
) -> EncodedRequest:
    """Multipart built by hand: one bytes join, no per-part stream objects.

    A random 128-bit boundary is what httpx and browsers use too; the odds
    of it occurring inside an image are nil.
    """
    boundary = boundary or uuid.uuid4().hex
    info = image_info(frame.image)
    kind = info.format if info else "jpeg"
    dash = b"--" + boundary.encode()
    parts = [
        dash,
        b'\r\nContent-Disposition: form-data; name="image"; filename="frame.'
        + kind.encode()
        + b'"\r\nContent-Type: '
        + _CONTENT_TYPES[kind].encode()
        + b"\r\n\r\n",
        frame.image,
        b"\r\n",
        dash,
        b'\r\nContent-Disposition: form-data; name="min_confidence"\r\n\r\n',
        repr(float(min_confidence)).encode(),
        b"\r\n",
    ]
    if api_key:
        parts += [
            dash,
            b'\r\nContent-Disposition: form-data; name="api_key"\r\n\r\n',
            api_key.encode(),
            b"\r\n",
        ]
    parts += [dash, b"--\r\n"]
    return EncodedRequest(b"".join(parts), f"multipart/form-data; boundary={boundary}")


# -- answers -------------------------------------------------------------


def parse_json(content: bytes, status: int) -> Any:
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        snippet = content[:120].decode("utf-8", "replace")
        raise PermanentProviderError(
            f"provider answered HTTP {status} with a body that is not JSON: {snippet!r}",
            status=status,
        ) from None


def error_detail(content: bytes) -> str:
    """The provider's own words for an error, for messages; never raises."""
    try:
        body = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return content[:200].decode("utf-8", "replace").strip()
    if isinstance(body, Mapping):
        for key in ("error", "message", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, Mapping) and isinstance(value.get("message"), str):
                return str(value["message"])
    return json.dumps(body)[:200]


def is_queue_full(detail: str) -> bool:
    """CodeProject.AI's 'Request queue ... is full': busy, not broken."""
    text = detail.lower()
    return "queue" in text and "full" in text


def _malformed(what: str, status: int) -> PermanentProviderError:
    return PermanentProviderError(f"malformed provider answer: {what}", status=status)


def _as_number(value: Any, what: str, status: int) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _malformed(f"{what} must be a number, got {value!r}"[:200], status)
    number = float(value)
    if not math.isfinite(number):
        raise _malformed(f"{what} must be finite, got {value!r}", status)
    return number


def _number(item: Mapping[str, Any], key: str, where: str, status: int) -> float:
    return _as_number(item.get(key), f"{where}.{key}", status)


def _label(item: Mapping[str, Any], where: str, status: int) -> str:
    label = item.get("label")
    if not isinstance(label, str) or not label.strip():
        raise _malformed(f"{where}.label must be a non-empty string, got {label!r}", status)
    return label


def _optional_str(item: Mapping[str, Any], key: str, where: str, status: int) -> str | None:
    value = item.get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _malformed(f"{where}.{key} must be a string, got {value!r}", status)


def _recognized(item: Mapping[str, Any], where: str, status: int) -> str | None:
    """``userid`` from DeepStack's face recognition; "unknown" means nobody."""
    userid = _optional_str(item, "userid", where, status)
    return None if userid in (None, "", "unknown") else userid


def _object(body: Any, status: int) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise _malformed(f"expected a JSON object, got {type(body).__name__}", status)
    return body


def _list(body: Mapping[str, Any], key: str, status: int) -> list[Any]:
    items = body.get(key)
    if not isinstance(items, list):
        raise _malformed(f"{key!r} must be a list, got {items!r}"[:200], status)
    return items


def decode_detectflow(body: Any, status: int = 200) -> list[RawDetection]:
    answer = _object(body, status)
    raws = []
    for index, item in enumerate(_list(answer, "detections", status)):
        where = f"detections[{index}]"
        if not isinstance(item, Mapping):
            raise _malformed(f"{where} must be an object, got {item!r}"[:200], status)
        box = item.get("box")
        if not isinstance(box, list | tuple) or len(box) != 4:
            raise _malformed(f"{where}.box must be a list of 4 numbers, got {box!r}", status)
        coords = [_as_number(v, f"{where}.box[{i}]", status) for i, v in enumerate(box)]
        box_format = item.get("format", "xyxy")
        if box_format not in _FORMATS:
            raise _malformed(f"{where}.format must be xyxy or xywh, got {box_format!r}", status)
        units = item.get("units", "fraction")
        if units not in _UNITS:
            raise _malformed(f"{where}.units must be fraction or pixel, got {units!r}", status)
        raws.append(
            RawDetection(
                label=_label(item, where, status),
                confidence=_number(item, "confidence", where, status),
                box=(coords[0], coords[1], coords[2], coords[3]),
                box_format=box_format,
                units=units,
                person_id=_optional_str(item, "person_id", where, status),
                person_name=_optional_str(item, "person_name", where, status),
            )
        )
    return raws


def decode_deepstack(body: Any, status: int = 200) -> list[RawDetection]:
    answer = _object(body, status)
    if answer.get("success", True) is not True:
        detail = answer.get("error") or answer.get("message") or "no error given"
        message = f"provider answered success=false (HTTP {status}): {detail}"
        if is_queue_full(str(detail)):
            raise TransientProviderError(message, status=status)
        raise PermanentProviderError(message, status=status)
    raws = []
    for index, item in enumerate(_list(answer, "predictions", status)):
        where = f"predictions[{index}]"
        if not isinstance(item, Mapping):
            raise _malformed(f"{where} must be an object, got {item!r}"[:200], status)
        raws.append(
            RawDetection(
                label=_label(item, where, status),
                confidence=_number(item, "confidence", where, status),
                box=(
                    _number(item, "x_min", where, status),
                    _number(item, "y_min", where, status),
                    _number(item, "x_max", where, status),
                    _number(item, "y_max", where, status),
                ),
                box_format="xyxy",
                units="pixel",
                person_name=_recognized(item, where, status),
            )
        )
    return raws


# -- answers, server side --------------------------------------------------
#
# The encoders below are what a DeepStack server answers; the decoders above
# read exactly that back (tests/adapters/test_deepstack_wire.py checks the
# round trip), so detectflow's gateway and simulator cannot drift from its client.


def deepstack_answer(raws: Sequence[RawDetection], **extra: Any) -> dict[str, Any]:
    """A DeepStack success body for boxes in integer pixels of the uploaded image.

    ``raws`` must be ``xyxy`` pixel boxes (what :func:`decode_deepstack`
    yields); corners are written as integers, as DeepStack does and as
    clients such as Frigate expect. ``extra`` adds CodeProject.AI's fields
    (``inferenceMs``, ``moduleId``, ...) after the DeepStack ones.
    """
    predictions = []
    for raw in raws:
        if raw.box_format != "xyxy" or raw.units != "pixel":
            raise ValueError(f"DeepStack boxes are xyxy pixels, got {raw.box_format} {raw.units}")
        x_min, y_min, x_max, y_max = (round(v) for v in raw.box)
        prediction: dict[str, Any] = {
            "label": raw.label,
            "confidence": raw.confidence,
            "x_min": x_min,
            "y_min": y_min,
            "x_max": x_max,
            "y_max": y_max,
        }
        if raw.person_name is not None:
            prediction["userid"] = raw.person_name
        predictions.append(prediction)
    return {"success": True, "predictions": predictions, "count": len(predictions), **extra}


def deepstack_error(message: str, **extra: Any) -> dict[str, Any]:
    """A DeepStack failure body; :func:`decode_deepstack` raises with ``message``."""
    return {"success": False, "error": message, **extra}
