"""REST routes under ``/api/v1/detections``: frames in, detections and events out.

Shapes follow the guide exactly; every dict comes from
:mod:`detectflow.core.serialize`, so REST, WebSocket and the live cache show
a detection the same way.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from datetime import timedelta
from typing import Any

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from detectflow.core.errors import InvalidFrameError
from detectflow.core.frames import CAMERA_ID_PATTERN, make_frame, parse_timestamp
from detectflow.core.models import Frame, Severity, utcnow
from detectflow.core.serialize import detection_to_dict, event_to_dict, isoformat
from detectflow.server.errors import ApiError, not_found
from detectflow.server.inline import detect_and_record
from detectflow.server.params import Body, Query, read_json
from detectflow.server.state import ServerState, in_thread, server_state

__all__ = [
    "LIVE_WINDOW",
    "MAX_OFFSET",
    "RESERVED_NAMES",
    "SOURCE_SYSTEM",
    "detail_routes",
    "max_body_bytes",
    "page_meta",
    "routes",
]

SOURCE_SYSTEM = "detectflow.server"
LIVE_WINDOW = timedelta(seconds=60)
"""On a live-cache miss, the database answers with detections this recent."""
MAX_OFFSET = 2**31 - 1
"""Paging stops here: a larger OFFSET overflows SQLite's integers (a 500, found by schemathesis)."""

FRAME_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
LABEL_PATTERN = re.compile(r"[A-Za-z0-9_.:\- ]{1,128}")
_DATA_URL = re.compile(r"data:[\w/+.-]*;base64,", re.IGNORECASE)
"""Matched only at the start: searching a multi-megabyte base64 text for it cost ~7 ms."""


def max_body_bytes(max_frame_bytes: int) -> int:
    """The largest send-frame body worth reading: the frame in base64 plus the other fields."""
    return (max_frame_bytes + 2) // 3 * 4 + 16 * 1024


def page_meta(limit: int, offset: int, total: int) -> dict[str, int]:
    return {
        "page": offset // limit + 1,
        "pageSize": limit,
        "total": total,
        "totalPages": math.ceil(total / limit) if total else 0,
    }


def _decode_frame_data(body: Body, max_frame_bytes: int) -> bytes | None:
    text = body.text("frame_data", required=True, min_length=1, max_length=1 << 40)
    if text is None:
        return None
    if text[:5].lower() == "data:":  # a data URL: data:image/jpeg;base64,...
        text = _DATA_URL.sub("", text, count=1)
    try:
        image = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        # Line-wrapped base64 (MIME style) is valid too; stripping whitespace
        # from every frame measured ~1 ms a frame, so only on this rare path.
        try:
            image = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            body.error("frame_data", "is not valid base64")
            return None
    if len(image) > max_frame_bytes:
        raise ApiError(
            413,
            "payload_too_large",
            f"frame is {len(image)} bytes; the limit is {max_frame_bytes}",
        )
    return image


async def _read_frame(request: Request, state: ServerState) -> Frame:
    limit = state.settings.max_frame_bytes
    body = Body(await read_json(request, max_bytes=max_body_bytes(limit)))
    camera_id = body.text("camera_id", required=True, min_length=1, pattern=CAMERA_ID_PATTERN)
    frame_number = body.integer("frame_number", minimum=0, maximum=2**63 - 1)
    timestamp = body.text("timestamp", max_length=64)
    if timestamp is not None:
        try:
            parse_timestamp(timestamp)
        except (InvalidFrameError, OverflowError) as exc:  # year 1 at +10:20 overflows in UTC
            body.error("timestamp", str(exc))
    priority = body.integer("priority", minimum=1, maximum=10)
    frame_id = body.text("frame_id", min_length=1, max_length=128, pattern=FRAME_ID_PATTERN)
    image = _decode_frame_data(body, limit)
    body.check()
    assert camera_id is not None and image is not None
    try:
        return make_frame(
            camera_id,
            image,
            max_bytes=limit,
            frame_id=frame_id,
            frame_number=frame_number,
            timestamp=timestamp,
            priority=priority if priority is not None else 5,
        )
    except InvalidFrameError as exc:
        raise ApiError(422, "invalid_frame", str(exc)) from None


async def send_frame(request: Request) -> JSONResponse:
    """Detect a frame now (default) or queue it for the dataflow (``?mode=queue``)."""
    state = server_state(request)
    query = Query(request)
    mode = query.choice("mode", ("inline", "queue")) or "inline"
    query.check()
    frame = await _read_frame(request, state)

    if mode == "queue":
        item = await in_thread(state.database.enqueue, frame)
        data = {
            "queued": True,
            "id": item.id,
            "camera_id": item.camera_id,
            "status": str(item.status),
            "priority": item.priority,
        }
        return JSONResponse({"data": data}, status_code=202)

    result = await detect_and_record(state, frame)
    if result is None:
        raise ApiError(
            409,
            "no_active_provider",
            "no active detection provider: create one with POST /api/v1/detections/providers "
            '({"is_active": true}) or send the frame with ?mode=queue',
        )
    data = {
        "success": result.ok,
        "camera_id": frame.camera_id,
        "detection_count": len(result.detections),
        "detections": [detection_to_dict(d) for d in result.detections],
        "processing_time_ms": result.processing_time_ms,
        "frame_id": frame.frame_id,
        "error": result.error,
    }
    return JSONResponse({"data": data})


def _camera_query(query: Query) -> str | None:
    return query.text("camera_id", max_length=128, pattern=CAMERA_ID_PATTERN)


async def live(request: Request) -> JSONResponse:
    """The newest detections: from the live cache when it has them, else from SQL."""
    state = server_state(request)
    query = Query(request)
    camera_id = _camera_query(query)
    detection_type = query.text("detection_type", max_length=64)
    min_confidence = query.number("min_confidence", default=0.5, minimum=0.0, maximum=1.0)
    limit = query.integer("limit", default=100, minimum=1, maximum=1000)
    offset = query.integer("offset", default=0, minimum=0, maximum=MAX_OFFSET)
    use_cache = query.boolean("use_cache", default=True)
    query.check()

    def keep(d: dict[str, Any]) -> bool:
        confidence = d.get("confidence")
        return (
            isinstance(confidence, int | float)
            and confidence >= min_confidence
            and (detection_type is None or d.get("detection_type") == detection_type)
        )

    snapshot = await state.live.reads.live(camera_id) if use_cache else None
    if snapshot is not None:
        matching = [d for d in snapshot.detections if keep(d)]
        detections = matching[offset : offset + limit]
        total = len(matching)
        last_updated = isoformat(snapshot.last_updated)
        cache_hit = True
    else:
        rows, total = await in_thread(
            state.database.list_detections,
            camera_id=camera_id,
            detection_type=detection_type,
            min_confidence=min_confidence,
            since=utcnow() - LIVE_WINDOW,
            limit=limit,
            offset=offset,
        )
        detections = [detection_to_dict(d) for d in rows]
        last_updated = isoformat(rows[0].created_at) if rows else None
        cache_hit = False
    data = {
        "camera_id": camera_id,
        "detections": detections,
        "total_detections": total,
        "last_updated": last_updated,
        "cache_hit": cache_hit,
    }
    return JSONResponse({"data": data})


async def events(request: Request) -> JSONResponse:
    state = server_state(request)
    query = Query(request)
    camera_id = _camera_query(query)
    event_type = query.text("event_type", max_length=64)
    severity = query.choice("severity", [str(s) for s in Severity])
    person_id = query.text("person_id", max_length=128)
    limit = query.integer("limit", default=100, minimum=1, maximum=1000)
    offset = query.integer("offset", default=0, minimum=0, maximum=MAX_OFFSET)
    query.check()
    rows, total = await in_thread(
        state.database.list_events,
        camera_id=camera_id,
        event_type=event_type,
        severity=severity,
        person_id=person_id,
        limit=limit,
        offset=offset,
    )
    return JSONResponse(
        {"data": [event_to_dict(e) for e in rows], "meta": page_meta(limit, offset, total)}
    )


async def queue_stats(request: Request) -> JSONResponse:
    state = server_state(request)
    Query(request).check()
    stats = await in_thread(state.database.queue_stats)
    return JSONResponse({"data": stats})


async def recent(request: Request) -> JSONResponse:
    """Detections of the last ``minutes`` (default 5, at most a day), newest first."""
    state = server_state(request)
    query = Query(request)
    minutes = query.integer("minutes", default=5, minimum=1, maximum=24 * 60)
    camera_id = _camera_query(query)
    limit = query.integer("limit", default=100, minimum=1, maximum=1000)
    offset = query.integer("offset", default=0, minimum=0, maximum=MAX_OFFSET)
    query.check()
    rows, total = await in_thread(
        state.database.list_detections,
        camera_id=camera_id,
        since=utcnow() - timedelta(minutes=minutes),
        limit=limit,
        offset=offset,
    )
    return JSONResponse(
        {"data": [detection_to_dict(d) for d in rows], "meta": page_meta(limit, offset, total)}
    )


async def by_person(request: Request) -> JSONResponse:
    state = server_state(request)
    person_id = request.path_params["person_id"]
    query = Query(request)
    limit = query.integer("limit", default=100, minimum=1, maximum=1000)
    offset = query.integer("offset", default=0, minimum=0, maximum=MAX_OFFSET)
    query.check()
    if len(person_id) > 128:
        raise ApiError(422, "validation_error", "person_id must be at most 128 characters")
    rows, total = await in_thread(
        state.database.list_detections, person_id=person_id, limit=limit, offset=offset
    )
    return JSONResponse(
        {"data": [detection_to_dict(d) for d in rows], "meta": page_meta(limit, offset, total)}
    )


async def get_detection(request: Request) -> JSONResponse:
    state = server_state(request)
    Query(request).check()
    detection_id = request.path_params["detection_id"]
    detection = None
    if len(detection_id) <= 64:
        detection = await in_thread(state.database.get_detection, detection_id)
    if detection is None:
        raise not_found("detection", detection_id)
    return JSONResponse({"data": detection_to_dict(detection)})


# Fixed paths first: "/{detection_id}" would otherwise swallow "/live" and friends.
routes = [
    Route("/send-frame", send_frame, methods=["POST"]),
    Route("/live", live, methods=["GET"]),
    Route("/events", events, methods=["GET"]),
    Route("/queue-stats", queue_stats, methods=["GET"]),
    Route("/recent", recent, methods=["GET"]),
    Route("/by-person/{person_id}", by_person, methods=["GET"]),
]


RESERVED_NAMES = (
    "by-person",
    "events",
    "frames",
    "live",
    "provider",
    "providers",
    "queue-stats",
    "recent",
    "send-frame",
    "statistics",
    "summary",
    "test-provider",
    "ws",
)
"""Fixed path names that are never detection ids, so ``GET /send-frame`` is a 405
and ``GET /statistics`` a 404 for the route, not a lookup of a detection so named."""


class _DetectionIdConvertor(Convertor[str]):
    regex = "(?!(?:" + "|".join(re.escape(n) for n in RESERVED_NAMES) + ")$)[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("detectflow_detection_id", _DetectionIdConvertor())

detail_routes = [
    Route("/{detection_id:detectflow_detection_id}", get_detection, methods=["GET"]),
]
