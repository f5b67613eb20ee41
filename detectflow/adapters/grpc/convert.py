"""Between detectflow's domain objects and the v1 protocol messages.

The client (:mod:`.adapter`, :mod:`.stream`) and the server (:mod:`.server`)
share these functions, so a frame that goes out and the detections that come
back are encoded by one piece of code and a round trip through our own
server proves both directions. A provider's answer is checked here, before
it becomes a :class:`RawDetection`: a wrong box length or an enum value this
version does not know means the provider speaks something else, which no
retry will fix, so it raises :class:`PermanentProviderError`.
"""

from __future__ import annotations

from datetime import UTC

from detectflow.adapters.grpc.provider.v1 import provider_pb2 as pb
from detectflow.core.errors import InvalidFrameError, PermanentProviderError
from detectflow.core.frames import make_frame
from detectflow.core.models import BoxFormat, BoxUnits, Frame, RawDetection

__all__ = [
    "detections_from_response",
    "frame_from_request",
    "request_from_frame",
    "response_from_detections",
]

_FORMAT_TO_PB: dict[BoxFormat, pb.BoxFormat.ValueType] = {
    "xyxy": pb.BOX_FORMAT_XYXY,
    "xywh": pb.BOX_FORMAT_XYWH,
}
_UNITS_TO_PB: dict[BoxUnits, pb.BoxUnits.ValueType] = {
    "fraction": pb.BOX_UNITS_FRACTION,
    "pixel": pb.BOX_UNITS_PIXEL,
}
_FORMAT_FROM_PB: dict[int, BoxFormat] = {v: k for k, v in _FORMAT_TO_PB.items()}
_UNITS_FROM_PB: dict[int, BoxUnits] = {v: k for k, v in _UNITS_TO_PB.items()}


def request_from_frame(frame: Frame, request_id: str, min_confidence: float) -> pb.DetectRequest:
    request = pb.DetectRequest(
        request_id=request_id,
        camera_id=frame.camera_id,
        frame_id=frame.frame_id,
        image=frame.image,
        width=frame.width or 0,
        height=frame.height or 0,
        min_confidence=min_confidence,
    )
    if frame.frame_number is not None:
        request.frame_number = frame.frame_number
    request.timestamp.FromDatetime(frame.timestamp)
    return request


def frame_from_request(request: pb.DetectRequest, *, max_bytes: int) -> Frame:
    """Validate a request as every source validates its frames.

    Raises :class:`InvalidFrameError` (the server answers INVALID_ARGUMENT).
    """
    timestamp = request.timestamp.ToDatetime(tzinfo=UTC) if request.HasField("timestamp") else None
    frame = make_frame(
        request.camera_id,
        request.image,
        max_bytes=max_bytes,
        frame_id=request.frame_id or None,
        frame_number=request.frame_number if request.HasField("frame_number") else None,
        timestamp=timestamp,
    )
    if not 0.0 <= request.min_confidence <= 1.0:  # also refuses NaN
        raise InvalidFrameError(
            f"min_confidence must be within [0, 1], got {request.min_confidence!r}"
        )
    return frame


def detections_from_response(response: pb.DetectResponse) -> list[RawDetection]:
    """The provider's detections, unnormalized; raises on a malformed answer."""
    return [_raw_detection(i, d) for i, d in enumerate(response.detections)]


def _raw_detection(index: int, detection: pb.Detection) -> RawDetection:
    where = f"detection {index}"
    if len(detection.box) != 4:
        raise PermanentProviderError(
            f"malformed provider answer: {where} has {len(detection.box)} box numbers, not 4"
        )
    box_format = _FORMAT_FROM_PB.get(detection.box_format)
    if box_format is None:
        raise PermanentProviderError(
            f"malformed provider answer: {where} has unknown box_format {detection.box_format}"
        )
    units = _UNITS_FROM_PB.get(detection.units)
    if units is None:
        raise PermanentProviderError(
            f"malformed provider answer: {where} has unknown units {detection.units}"
        )
    a, b, c, d = detection.box
    return RawDetection(
        label=detection.label,
        confidence=detection.confidence,
        box=(a, b, c, d),
        box_format=box_format,
        units=units,
        person_id=detection.person_id if detection.HasField("person_id") else None,
        person_name=detection.person_name if detection.HasField("person_name") else None,
    )


def response_from_detections(request_id: str, detections: list[RawDetection]) -> pb.DetectResponse:
    """Encode a handler's answer; raises ValueError for a box format or unit we cannot send."""
    response = pb.DetectResponse(request_id=request_id)
    for raw in detections:
        if raw.box_format not in _FORMAT_TO_PB or raw.units not in _UNITS_TO_PB:
            raise ValueError(f"cannot encode box_format={raw.box_format!r} units={raw.units!r}")
        item = response.detections.add(
            label=raw.label,
            confidence=raw.confidence,
            box=raw.box,
            box_format=_FORMAT_TO_PB[raw.box_format],
            units=_UNITS_TO_PB[raw.units],
        )
        if raw.person_id is not None:
            item.person_id = raw.person_id
        if raw.person_name is not None:
            item.person_name = raw.person_name
    return response
