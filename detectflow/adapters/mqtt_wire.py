"""The bytes of detectflow's MQTT 5 request/response protocol, both directions.

The requester (:mod:`detectflow.adapters.mqtt`) and the responder
(:mod:`detectflow.adapters.mqtt_responder`) share this module, so what one
writes the other reads by construction. Payloads are the JSON bodies of the
HTTP ``detectflow`` dialect, so a vendor who speaks one speaks both:

Request (``Content Type: application/json``, ``Payload Format Indicator: 1``)::

    {"camera_id": "cam-1", "frame_id": "...", "frame_number": 7,
     "timestamp": "2025-11-05T12:34:56Z", "image": "<base64>",
     "width": 640, "height": 480, "min_confidence": 0.5}

Answer, with user properties ``status`` (HTTP-like code, ``"200"`` is ok)
and ``message``::

    {"detections": [{"label": "person", "confidence": 0.91,
                     "box": [0.1, 0.2, 0.4, 0.9], "format": "xyxy",
                     "units": "fraction", "person_id": null, "person_name": null}]}

``format`` is ``xyxy`` (default) or ``xywh``; ``units`` is ``fraction``
(default) or ``pixel``. Unknown fields are ignored. JSON rather than raw
image bytes costs a base64 pass (~0.1 ms for a 100 KB JPEG) and buys one
format for HTTP and MQTT providers.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any, TypeGuard
from urllib.parse import unquote, urlsplit

from detectflow.core.errors import (
    InvalidFrameError,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)
from detectflow.core.frames import make_frame
from detectflow.core.models import Frame, RawDetection
from detectflow.core.serialize import isoformat

__all__ = [
    "CONTENT_TYPE",
    "MqttEndpoint",
    "decode_answer",
    "decode_request",
    "encode_answer",
    "encode_error",
    "encode_request",
    "error_for_status",
    "parse_mqtt_url",
    "status_for_error",
]

CONTENT_TYPE = "application/json"
_FORMATS = ("xyxy", "xywh")
_UNITS = ("fraction", "pixel")


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """Where a broker is and which topic requests go to."""

    host: str
    port: int
    topic: str
    tls: bool = False
    username: str | None = None
    password: str | None = None


def parse_mqtt_url(url: str) -> MqttEndpoint:
    """``mqtt[s]://[user[:password]@]host[:port]/<topic>``, refused with a clear reason."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid MQTT URL {url!r}: {exc}") from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"MQTT URL must start with mqtt:// or mqtts://, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"MQTT URL has no host: {url!r}")
    topic = unquote(parts.path.lstrip("/"))
    if not topic:
        raise ValueError(f"MQTT URL has no topic path (mqtt://host:1883/<topic>): {url!r}")
    if parts.query:
        raise ValueError(f"MQTT URL takes no query; set adapter options instead: {url!r}")
    if "+" in topic or "#" in url or "\x00" in topic:
        raise ValueError(f"MQTT request topic may not contain wildcards: {topic!r}")
    tls = parts.scheme == "mqtts"
    return MqttEndpoint(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        topic=topic,
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def encode_request(frame: Frame, min_confidence: float) -> bytes:
    return _dumps(
        {
            "camera_id": frame.camera_id,
            "frame_id": frame.frame_id,
            "frame_number": frame.frame_number,
            "timestamp": isoformat(frame.timestamp),
            "image": base64.b64encode(frame.image).decode("ascii"),
            "width": frame.width,
            "height": frame.height,
            "min_confidence": min_confidence,
        }
    )


def decode_request(payload: bytes | bytearray, *, max_bytes: int) -> tuple[Frame, float]:
    """A request's frame and ``min_confidence``; :class:`InvalidFrameError` when bad."""
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise InvalidFrameError("request is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidFrameError("request must be a JSON object")
    image = body.get("image")
    if not isinstance(image, str):
        raise InvalidFrameError("request has no base64 'image'")
    try:
        data = base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidFrameError("'image' is not valid base64") from None
    frame_number = body.get("frame_number")
    if frame_number is not None and (type(frame_number) is not int):
        raise InvalidFrameError("'frame_number' must be an integer")
    frame_id = body.get("frame_id")
    if frame_id is not None and not isinstance(frame_id, str):
        raise InvalidFrameError("'frame_id' must be a string")
    timestamp = body.get("timestamp")
    if timestamp is not None and not isinstance(timestamp, str):
        raise InvalidFrameError("'timestamp' must be an RFC 3339 string")
    min_confidence = body.get("min_confidence", 0.0)
    if not _is_number(min_confidence):
        raise InvalidFrameError("'min_confidence' must be a number")
    frame = make_frame(
        body.get("camera_id"),
        data,
        max_bytes=max_bytes,
        frame_id=frame_id,
        frame_number=frame_number,
        timestamp=timestamp,
    )
    return frame, float(min_confidence)


def _is_number(value: object) -> TypeGuard[float]:
    """A finite JSON number; ``true``/``false`` are not numbers here."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def encode_answer(detections: list[RawDetection]) -> bytes:
    return _dumps(
        {
            "detections": [
                {
                    "label": d.label,
                    "confidence": d.confidence,
                    "box": list(d.box),
                    "format": d.box_format,
                    "units": d.units,
                    "person_id": d.person_id,
                    "person_name": d.person_name,
                }
                for d in detections
            ]
        }
    )


def encode_error(status: int, message: str) -> bytes:
    return _dumps({"error": {"status": status, "message": message}})


def decode_answer(payload: bytes | bytearray) -> list[RawDetection]:
    """Parse a ``200`` answer; anything unusable is a :class:`PermanentProviderError`."""
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise PermanentProviderError("malformed answer: not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("detections"), list):
        raise PermanentProviderError("malformed answer: no 'detections' list")
    return [_raw(item, i) for i, item in enumerate(body["detections"])]


def _raw(item: Any, index: int) -> RawDetection:
    where = f"malformed answer: detections[{index}]"
    if not isinstance(item, dict):
        raise PermanentProviderError(f"{where} is not an object")
    label, confidence, box = item.get("label"), item.get("confidence"), item.get("box")
    if not isinstance(label, str) or not label:
        raise PermanentProviderError(f"{where} has no 'label'")
    if not _is_number(confidence):
        raise PermanentProviderError(f"{where} 'confidence' is not a number")
    if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
        raise PermanentProviderError(f"{where} 'box' is not 4 numbers")
    box_format = item.get("format") or "xyxy"
    units = item.get("units") or "fraction"
    if box_format not in _FORMATS:
        raise PermanentProviderError(f"{where} 'format' must be xyxy or xywh")
    if units not in _UNITS:
        raise PermanentProviderError(f"{where} 'units' must be fraction or pixel")
    person_id, person_name = item.get("person_id"), item.get("person_name")
    for name, value in (("person_id", person_id), ("person_name", person_name)):
        if value is not None and not isinstance(value, str):
            raise PermanentProviderError(f"{where} '{name}' must be a string")
    return RawDetection(
        label=label,
        confidence=float(confidence),
        box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
        box_format="xywh" if box_format == "xywh" else "xyxy",
        units="pixel" if units == "pixel" else "fraction",
        person_id=person_id,
        person_name=person_name,
    )


def error_for_status(status: str | None, message: str | None) -> ProviderError | None:
    """The error an answer's ``status`` user property means, or None for success.

    A missing status counts as ``200``: the body still has to parse.
    """
    if status is None:
        return None
    try:
        code = int(status)
    except ValueError:
        return PermanentProviderError(f"malformed answer: status {status!r} is not a number")
    if 200 <= code < 300:
        return None
    text = f"provider answered {code}" + (f": {message}" if message else "")
    if code >= 500 or code == 429:
        return TransientProviderError(text, status=code)
    return PermanentProviderError(text, status=code)


def status_for_error(exc: BaseException) -> int:
    """The status a responder sends for a handler's exception."""
    if isinstance(exc, ProviderError):
        if exc.status is not None:
            return exc.status
        return 503 if exc.transient else 422
    if isinstance(exc, InvalidFrameError):
        return 400
    return 500
