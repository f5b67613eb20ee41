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
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from detectflow.core.errors import InvalidFrameError
from detectflow.core.frames import CAMERA_ID_PATTERN, make_frame, parse_timestamp
from detectflow.core.models import EventType, Frame, Severity, utcnow
from detectflow.core.serialize import detection_to_dict, event_to_dict, isoformat
from detectflow.server.endpoints import (
    BODY_ERRORS,
    READ_ERRORS,
    UUID_PATTERN,
    Operation,
    PathParam,
    http,
)
from detectflow.server.errors import ApiError, not_found
from detectflow.server.inline import detect_and_record
from detectflow.server.openapi import (
    CAMERA_QUERY,
    CURSOR,
    LIMIT,
    OFFSET,
    enveloped,
    keyset_paged,
    query,
    ref,
)
from detectflow.server.params import MAX_OFFSET, Body, Cursor, Query, encode_cursor, read_json
from detectflow.server.state import ServerState, in_thread, server_state
from detectflow.store.keys import Scope as KeyScope
from detectflow.store.queue import FrameIdConflictError
from detectflow.store.results import Keyset, Page

__all__ = [
    "FRAME_ID_PATTERN",
    "LIVE_WINDOW",
    "SOURCE_SYSTEM",
    "Paging",
    "endpoints",
    "max_body_bytes",
    "page_meta",
    "read_paging",
]

SOURCE_SYSTEM = "detectflow.server"
LIVE_WINDOW = timedelta(seconds=60)
"""On a live-cache miss, the database answers with detections this recent."""

FRAME_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_DATA_URL = re.compile(r"data:[\w/+.-]*;base64,", re.IGNORECASE)
"""Matched only at the start: searching a multi-megabyte base64 text for it cost ~7 ms."""


def max_body_bytes(max_frame_bytes: int) -> int:
    """The largest send-frame body worth reading: the frame in base64 plus the other fields."""
    return (max_frame_bytes + 2) // 3 * 4 + 16 * 1024


def page_meta(limit: int, offset: int, total: int, *, page: int | None = None) -> dict[str, int]:
    """The guide's page fields; ``page`` when a cursor, not an offset, says where we are."""
    return {
        "page": page if page is not None else offset // limit + 1,
        "pageSize": limit,
        "total": total,
        "totalPages": math.ceil(total / limit) if total else 0,
    }


@dataclass(frozen=True, slots=True)
class Paging:
    limit: int
    offset: int
    cursor: Cursor | None

    @property
    def after(self) -> Keyset | None:
        return None if self.cursor is None else (self.cursor.created_at, self.cursor.id)

    def meta(self, page: Page[Any]) -> dict[str, Any]:
        """The guide's page fields, plus ``next_cursor`` (None on the last page) and
        ``total_is_estimate`` (true when counting would cost more than the page)."""
        number = self.cursor.page if self.cursor else self.offset // self.limit + 1
        following = None
        if page.last_key is not None:
            following = encode_cursor(Cursor(number + 1, *page.last_key))
        return {
            **page_meta(self.limit, self.offset, page.total, page=number),
            "next_cursor": following,
            "total_is_estimate": page.total_is_estimate,
        }


def read_paging(query: Query) -> Paging:
    """``limit``, ``offset`` (at most :data:`MAX_OFFSET`) and ``cursor`` (not with an offset)."""
    limit = query.integer("limit", default=100, minimum=1, maximum=1000)
    offset = query.integer("offset", default=0, minimum=0, maximum=MAX_OFFSET)
    cursor = query.cursor()
    if cursor is not None and offset:
        query.error("offset", "cannot be given with cursor (the cursor says where the page is)")
    return Paging(limit, offset, cursor)


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
        try:
            item = await state.queue.submit(frame)  # durable when it returns
        except FrameIdConflictError as exc:
            # Frame ids are the queue's keys: never answer 202 for a frame not queued.
            raise ApiError(409, "frame_id_conflict", str(exc)) from None
        data = {
            "queued": True,
            "id": item.id,
            "camera_id": item.camera_id,
            "status": item.status,
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
    paging = read_paging(query)
    query.check()
    page = await in_thread(
        state.database.page_events,
        camera_id=camera_id,
        event_type=event_type,
        severity=severity,
        person_id=person_id,
        limit=paging.limit,
        offset=paging.offset,
        after=paging.after,
    )
    return JSONResponse({"data": [event_to_dict(e) for e in page.items], "meta": paging.meta(page)})


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
    paging = read_paging(query)
    query.check()
    page = await in_thread(
        state.database.page_detections,
        camera_id=camera_id,
        since=utcnow() - timedelta(minutes=minutes),
        limit=paging.limit,
        offset=paging.offset,
        after=paging.after,
    )
    return JSONResponse(
        {"data": [detection_to_dict(d) for d in page.items], "meta": paging.meta(page)}
    )


async def by_person(request: Request) -> JSONResponse:
    state = server_state(request)
    person_id = request.path_params["person_id"]
    query = Query(request)
    paging = read_paging(query)
    query.check()
    page = await in_thread(
        state.database.page_detections,
        person_id=person_id,
        limit=paging.limit,
        offset=paging.offset,
        after=paging.after,
    )
    return JSONResponse(
        {"data": [detection_to_dict(d) for d in page.items], "meta": paging.meta(page)}
    )


async def get_detection(request: Request) -> JSONResponse:
    state = server_state(request)
    Query(request).check()
    detection_id = request.path_params["detection_id"]
    detection = await in_thread(state.database.get_detection, detection_id)
    if detection is None:
        raise not_found("detection", detection_id)
    return JSONResponse({"data": detection_to_dict(detection)})


_DETECTION_ID = PathParam(
    "detection_id",
    UUID_PATTERN,
    description="A detection id (a UUID). Fixed names (live, events, ...) are other routes.",
)

endpoints = [
    http(
        "/api/v1/detections/send-frame",
        Operation(
            "POST",
            "send_frame",
            "Detect a frame now (inline, the default) or queue it for the dataflow (mode=queue).",
            KeyScope.WRITE,
            {200: enveloped(ref("FrameResult")), 202: enveloped(ref("QueuedFrame"))},
            send_frame,
            errors=(*BODY_ERRORS, 409),
            parameters=(
                query(
                    "mode",
                    {"type": "string", "enum": ["", "inline", "queue"], "default": "inline"},
                    "inline needs an active provider (409 otherwise); queue answers 409 "
                    "frame_id_conflict when the frame_id is already another camera's.",
                ),
            ),
            body=ref("SendFrame"),
        ),
    ),
    http(
        "/api/v1/detections/live",
        Operation(
            "GET",
            "live_detections",
            "The newest detections: from the live cache when it has them, else from SQL.",
            KeyScope.READ,
            {200: enveloped(ref("LiveDetections"))},
            live,
            parameters=(
                CAMERA_QUERY,
                query("detection_type", {"type": "string", "maxLength": 64}),
                query(
                    "min_confidence",
                    {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5},
                ),
                LIMIT,
                OFFSET,
                query("use_cache", {"type": "boolean", "default": True}),
            ),
        ),
    ),
    http(
        "/api/v1/detections/events",
        Operation(
            "GET",
            "list_events",
            "Detection events, newest first, paged.",
            KeyScope.READ,
            {200: keyset_paged(ref("Event"))},
            events,
            parameters=(
                CAMERA_QUERY,
                query("event_type", {"type": "string", "maxLength": 64}),
                query("severity", {"type": "string", "enum": ["", *(str(s) for s in Severity)]}),
                query("person_id", {"type": "string", "maxLength": 128}),
                LIMIT,
                OFFSET,
                CURSOR,
            ),
            extra={"x-event-types": [str(e) for e in EventType]},
        ),
    ),
    http(
        "/api/v1/detections/queue-stats",
        Operation(
            "GET",
            "queue_stats",
            "Processing-queue counts by status.",
            KeyScope.READ,
            {200: enveloped(ref("QueueStats"))},
            queue_stats,
        ),
    ),
    http(
        "/api/v1/detections/recent",
        Operation(
            "GET",
            "recent_detections",
            "Detections of the last `minutes`, newest first, paged.",
            KeyScope.READ,
            {200: keyset_paged(ref("Detection"))},
            recent,
            parameters=(
                query("minutes", {"type": "integer", "minimum": 1, "maximum": 1440, "default": 5}),
                CAMERA_QUERY,
                LIMIT,
                OFFSET,
                CURSOR,
            ),
        ),
    ),
    http(
        "/api/v1/detections/by-person/{person_id}",
        Operation(
            "GET",
            "detections_by_person",
            "Detections linked to one person, newest first, paged.",
            KeyScope.READ,
            {200: keyset_paged(ref("Detection"))},
            by_person,
            errors=(404, *READ_ERRORS),  # 404: a segment that routes nowhere (".", "..")
            parameters=(LIMIT, OFFSET, CURSOR),
        ),
        params=[PathParam("person_id", max_length=128)],
    ),
    http(
        "/api/v1/detections/{detection_id}",
        Operation(
            "GET",
            "get_detection",
            "One detection by id.",
            KeyScope.READ,
            {200: enveloped(ref("Detection"))},
            get_detection,
            errors=(404, *READ_ERRORS),
        ),
        params=[_DETECTION_ID],
    ),
]
"""Declared last: ``/{detection_id}`` matches UUIDs only, so order no longer
decides which route a fixed name reaches, but the catch-all stays at the end."""
