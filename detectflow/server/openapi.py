"""The API contract: an OpenAPI 3.1 document built from one table of operations.

Each operation is declared once, next to the schemas it answers with, in the
same bounds the handlers enforce (``limit`` 1-1000, ``min_confidence`` 0-1,
strict bodies with ``additionalProperties: false``). The tests keep the table
true from both sides: every route the app serves must appear here (and
nothing else), and schemathesis drives every operation with generated input
and checks each answer against its schema. The WebSocket is described as the
GET that upgrades, with its JSON messages under ``x-websocket-messages``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from detectflow import __version__
from detectflow.core.frames import CAMERA_ID_PATTERN
from detectflow.core.models import EventType, QueueStatus, Severity, TestStatus
from detectflow.core.windows import WINDOW_KINDS
from detectflow.server.detections import MAX_OFFSET, RESERVED_NAMES
from detectflow.server.state import server_state

__all__ = [
    "OPERATIONS",
    "Operation",
    "RouteInfo",
    "build_spec",
    "openapi_endpoint",
    "route_table",
]

Schema = dict[str, Any]

_CAMERA = {"type": "string", "pattern": f"^{CAMERA_ID_PATTERN.pattern}$"}
_TIME = {"type": "string", "format": "date-time"}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: Sequence[str] | None = None, /, **properties: Schema) -> Schema:
    """A closed object: clients and server both reject fields nobody declared.
    ``required`` None means every property (responses always carry all fields)."""
    return {
        "type": "object",
        "required": list(properties if required is None else required),
        "properties": properties,
        "additionalProperties": False,
    }


def _data(schema: Schema) -> Schema:
    return _object(["data"], data=schema)


def _page(item: Schema) -> Schema:
    return _object(["data", "meta"], data={"type": "array", "items": item}, meta=_ref("PageMeta"))


_COUNT = {"type": "integer", "minimum": 0}
_PART_STATUS = {"type": "string", "enum": ["ok", "degraded", "down"]}


def _health_part(**extra: Schema) -> Schema:
    """One part of /api/v1/health: its status, why it is not ok, and its details."""
    return _object(status=_PART_STATUS, message=_nullable({"type": "string"}), **extra)


_BBOX_SIDE = {"type": "number", "minimum": 0, "maximum": 1}

SCHEMAS: dict[str, Schema] = {
    "Error": _object(
        error=_object(
            ["code", "message"],
            code={"type": "string", "minLength": 1},
            message={"type": "string", "minLength": 1},
            details={"description": "Field errors ({field, message} list) or other context."},
        ),
    ),
    "PageMeta": _object(
        page={"type": "integer", "minimum": 1},
        pageSize={"type": "integer", "minimum": 1, "maximum": 1000},
        total=_COUNT,
        totalPages=_COUNT,
    ),
    "BBox": {
        **_object(
            x=_BBOX_SIDE,
            y=_BBOX_SIDE,
            width=_BBOX_SIDE,
            height=_BBOX_SIDE,
        ),
        "description": "Fractions of the frame, clamped to [0, 1].",
    },
    "Detection": _object(
        id={"type": "string"},
        camera_id={"type": "string"},
        frame_id={"type": "string"},
        detection_type={"type": "string"},
        label={"type": "string"},
        confidence={"type": "number", "minimum": 0, "maximum": 1},
        bbox=_ref("BBox"),
        person_name=_nullable({"type": "string"}),
        person_id=_nullable({"type": "string"}),
        is_processed={"type": "boolean"},
        processing_status={"type": "string"},
        frame_number=_nullable(_COUNT),
        frame_timestamp=_nullable(_TIME),
        createdAt=_TIME,
        updatedAt=_TIME,
    ),
    "Event": _object(
        id={"type": "string"},
        detection_id=_nullable({"type": "string"}),
        camera_id={"type": "string"},
        event_type={"type": "string"},
        severity={"type": "string"},
        message={"type": "string"},
        person_id=_nullable({"type": "string"}),
        person_name=_nullable({"type": "string"}),
        confidence_score=_nullable({"type": "number"}),
        action_taken=_nullable({"type": "string"}),
        source_system=_nullable({"type": "string"}),
        createdAt=_TIME,
        updatedAt=_TIME,
    ),
    "QueueStats": _object(
        **{str(s): _COUNT for s in QueueStatus},
        total=_COUNT,
    ),
    "Provider": _object(
        id={"type": "string"},
        provider_name={"type": "string"},
        provider_type={"type": "string"},
        endpoint_url={"type": "string"},
        has_api_key={"type": "boolean", "description": "api_key is write-only."},
        timeout_seconds={"type": "number", "exclusiveMinimum": 0},
        max_retries=_COUNT,
        max_faces_per_frame={"type": "integer", "minimum": 1},
        confidence_threshold={"type": "number", "minimum": 0, "maximum": 1},
        enable_person_detection={"type": "boolean"},
        enable_face_detection={"type": "boolean"},
        enable_face_encoding={"type": "boolean"},
        options={"type": "object"},
        is_active={"type": "boolean"},
        test_status={"type": "string", "enum": [str(s) for s in TestStatus]},
        last_tested=_nullable(_TIME),
        last_error=_nullable({"type": "string"}),
        createdAt=_TIME,
        updatedAt=_TIME,
    ),
    "LiveDetections": _object(
        camera_id=_nullable({"type": "string"}),
        detections={"type": "array", "items": _ref("Detection")},
        total_detections=_COUNT,
        last_updated=_nullable(_TIME),
        cache_hit={"type": "boolean"},
    ),
    "FrameResult": _object(
        success={"type": "boolean"},
        camera_id={"type": "string"},
        detection_count=_COUNT,
        detections={"type": "array", "items": _ref("Detection")},
        processing_time_ms=_COUNT,
        frame_id={"type": "string"},
        error=_nullable({"type": "string"}),
    ),
    "QueuedFrame": _object(
        queued={"const": True},
        id={"type": "string"},
        camera_id={"type": "string"},
        status={"type": "string", "enum": [str(s) for s in QueueStatus]},
        priority={"type": "integer", "minimum": 1, "maximum": 10},
    ),
    "ProviderTest": _object(
        success={"type": "boolean"},
        provider_name={"type": "string"},
        message={"type": "string"},
        response_time_ms=_COUNT,
        error=_nullable({"type": "string"}),
    ),
    "Health": _object(
        status=_PART_STATUS,
        version={"type": "string"},
        parts=_object(
            database=_health_part(),
            cache=_health_part(backend={"type": "string", "enum": ["in_process", "redis"]}),
            bus=_health_part(subscribed={"type": "boolean"}, reconnections=_COUNT),
            dataflow=_health_part(
                workers={
                    "type": "array",
                    "items": _object(
                        worker={"type": "string"},
                        host={"type": "string"},
                        pid={"type": "integer"},
                        worker_index=_COUNT,
                        worker_count={"type": "integer", "minimum": 1},
                        started_at=_TIME,
                        beat_at=_TIME,
                        status=_PART_STATUS,
                        age_seconds={"type": "number", "minimum": 0},
                    ),
                }
            ),
            providers=_health_part(
                providers={
                    "type": "array",
                    "items": _object(
                        id={"type": "string"},
                        name={"type": "string"},
                        is_active={"type": "boolean"},
                        breaker={"type": "string"},
                        status=_PART_STATUS,
                    ),
                }
            ),
        ),
        provider_configured={"type": "boolean"},
        provider_name=_nullable({"type": "string"}),
        websocket=_object(
            clients=_COUNT,
            received=_COUNT,
            malformed=_COUNT,
            dropped=_COUNT,
        ),
    ),
    "Summary": _object(
        provider_configured={"type": "boolean"},
        provider_name=_nullable({"type": "string"}),
        provider_active={"type": "boolean"},
        provider_test_status=_nullable({"type": "string"}),
        queue_stats=_ref("QueueStats"),
        detection_stats=_object(
            total_detections=_COUNT,
            detections_last_hour=_COUNT,
        ),
        providers={
            "type": "array",
            "items": _object(
                id={"type": "string"},
                name={"type": "string"},
                provider_type={"type": "string"},
                is_active={"type": "boolean"},
                cameras=_nullable({"type": "array", "items": _CAMERA}),
                priority={"type": "integer", "minimum": 0},
                breaker={"type": "string", "enum": ["closed", "open", "half_open"]},
                failures=_COUNT,
                opened_at=_nullable(_TIME),
            ),
        },
    ),
}


SCHEMAS["Statistics"] = _object(
    total_detections=_COUNT,
    detections_today=_COUNT,
    detections_this_hour=_COUNT,
    average_confidence={"type": "number", "minimum": 0, "maximum": 1},
    most_detected_person=_nullable({"type": "string"}),
    detection_types={"type": "object", "additionalProperties": _COUNT},
    cameras_active=_COUNT,
    last_detection_timestamp=_nullable(_TIME),
)
_CONFIDENCE_OR_NONE = _nullable({"type": "number", "minimum": 0, "maximum": 1})
SCHEMAS["WindowStats"] = _object(
    camera_id={"type": "string"},
    detection_type={"type": "string"},
    window_start=_TIME,
    window_end=_TIME,
    count=_COUNT,
    average_confidence=_CONFIDENCE_OR_NONE,
    confidence_sum={"type": "number", "minimum": 0},
    max_confidence=_CONFIDENCE_OR_NONE,
    late_count=_COUNT,
    revision=_COUNT,
    final={"type": "boolean"},
    kind={"type": "string", "enum": list(WINDOW_KINDS)},
)
SCHEMAS["WindowPage"] = _object(
    data={"type": "array", "items": _ref("WindowStats")},
    meta=_ref("PageMeta"),
)


# -- request bodies: the same bounds params.Body enforces ----------------------

_PROVIDER_FIELDS: dict[str, Schema] = {
    "provider_name": {"type": "string", "minLength": 1, "maxLength": 255},
    "provider_type": {
        "type": "string",
        "minLength": 1,
        "maxLength": 64,
        "description": "A type a loaded plugin provides (http_api, grpc, mqtt, ...).",
    },
    "endpoint_url": {"type": "string", "minLength": 1, "maxLength": 2048, "pattern": r"^\S+$"},
    "api_key": {"type": "string", "minLength": 1, "maxLength": 4096},
    "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 600},
    "confidence_threshold": {"type": "number", "minimum": 0, "maximum": 1},
    "max_retries": {"type": "integer", "minimum": 0, "maximum": 10},
    "max_faces_per_frame": {"type": "integer", "minimum": 1, "maximum": 1000},
    "is_active": {"type": "boolean"},
    "enable_person_detection": {"type": "boolean"},
    "enable_face_detection": {"type": "boolean"},
    "enable_face_encoding": {"type": "boolean"},
    "options": {
        "type": "object",
        "properties": {"dialect": {"type": "string"}},
        "description": "Adapter-specific settings, e.g. the HTTP dialect.",
    },
}

SCHEMAS["ProviderCreate"] = _object(
    ["provider_name", "provider_type", "endpoint_url"], **_PROVIDER_FIELDS
)
SCHEMAS["ProviderUpdate"] = {
    **_object([], **_PROVIDER_FIELDS),
    "properties": {
        **_PROVIDER_FIELDS,
        "api_key": {
            **_nullable(_PROVIDER_FIELDS["api_key"]),
            "description": "null clears the stored key.",
        },
    },
    "minProperties": 1,
}
SCHEMAS["SendFrame"] = _object(
    ["camera_id", "frame_data"],
    camera_id=_CAMERA,
    frame_data={
        "type": "string",
        "minLength": 1,
        "description": "Base64 JPEG, PNG or WebP (a data: URL prefix is allowed), "
        "at most DETECTFLOW_MAX_FRAME_BYTES once decoded.",
    },
    frame_number={"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
    timestamp={"type": "string", "maxLength": 64, "format": "date-time"},
    priority={"type": "integer", "minimum": 1, "maximum": 10, "default": 5},
    frame_id={"type": "string", "pattern": r"^[A-Za-z0-9_.:-]{1,128}$"},
)
SCHEMAS["TestProvider"] = _object(
    [],
    provider_config_id={
        "type": "string",
        "minLength": 1,
        "maxLength": 64,
        "description": "Default: the active provider.",
    },
    timeout_seconds={"type": "number", "exclusiveMinimum": 0, "maximum": 120},
)


# -- WebSocket messages ------------------------------------------------------

_SCOPES = ("read", "write", "admin")

_EVENT_TYPES = _nullable(
    {"type": "array", "maxItems": 64, "items": {"type": "string", "minLength": 1, "maxLength": 64}}
)


def _message(kind: str, required: Sequence[str] = (), **properties: Schema) -> Schema:
    return _object(["type", *required], type={"const": kind}, **properties)


WEBSOCKET_MESSAGES: dict[str, Schema] = {
    "client": {
        "oneOf": [
            _message(
                "subscribe",
                camera_id={**_CAMERA, "description": "Omit for every camera."},
                event_types=_EVENT_TYPES,
                min_confidence={"type": "number", "minimum": 0, "maximum": 1},
            ),
            _message("unsubscribe", camera_id=_CAMERA, event_types=_EVENT_TYPES),
            _message("ping"),
            _message("get_stats"),
            _message(
                "auth",
                ["token"],
                token={"type": "string", "minLength": 1, "description": "An API key."},
            ),
        ]
    },
    "server": {
        "oneOf": [
            _message(
                "subscription",
                [
                    "camera_id",
                    "event_types",
                    "min_confidence",
                    "subscribed",
                    "message",
                    "current_detections",
                    "detection_count",
                ],
                camera_id=_nullable({"type": "string"}),
                event_types=_nullable({"type": "array", "items": {"type": "string"}}),
                min_confidence={"type": "number", "minimum": 0, "maximum": 1},
                subscribed={"const": True},
                message={"type": "string"},
                current_detections={"type": "array", "items": _ref("Detection")},
                detection_count=_COUNT,
            ),
            _message(
                "unsubscription",
                ["camera_id", "event_types", "subscribed", "message"],
                camera_id=_nullable({"type": "string"}),
                event_types=_nullable({"type": "array", "items": {"type": "string"}}),
                subscribed={"type": "boolean"},
                message={"type": "string"},
            ),
            _message("pong", ["timestamp"], timestamp=_TIME),
            _message(
                "authenticated",
                ["key_id", "scope"],
                key_id={"type": "string"},
                scope={"type": "string", "enum": list(_SCOPES)},
            ),
            _message("stats", ["queue_stats"], queue_stats=_ref("QueueStats")),
            _message(
                "error", ["code", "message"], code={"type": "string"}, message={"type": "string"}
            ),
            _message(
                "lagged",
                dropped={
                    "type": "integer",
                    "minimum": 1,
                    "description": "Broadcasts this client lost by falling behind.",
                },
                reason={
                    "const": "bus_reconnected",
                    "description": "The server lost the bus between lost_at and "
                    "reconnected_at: broadcasts of that time never arrived and cannot be "
                    "counted; re-read /live to catch up.",
                },
                lost_at=_TIME,
                reconnected_at=_TIME,
            ),
            _message(
                "detection",
                ["detection_id", "camera_id", "detection_type", "confidence", "timestamp"],
                detection_id={"type": "string"},
                camera_id={"type": "string"},
                frame_id={"type": "string"},
                detection_type={"type": "string"},
                confidence={"type": "number", "minimum": 0, "maximum": 1},
                bbox=_ref("BBox"),
                person_name=_nullable({"type": "string"}),
                person_id=_nullable({"type": "string"}),
                timestamp=_nullable(_TIME),
                published_at=_TIME,
            ),
            _message(
                "event",
                ["event_id", "event_type", "severity", "message", "camera_id", "timestamp"],
                event_id={"type": "string"},
                event_type={"type": "string"},
                severity={"type": "string"},
                message={"type": "string"},
                camera_id={"type": "string"},
                detection_id=_nullable({"type": "string"}),
                timestamp=_nullable(_TIME),
                published_at=_TIME,
            ),
        ]
    },
}


# -- the operations ----------------------------------------------------------


def _query(name: str, schema: Schema, description: str = "") -> Schema:
    """An optional query parameter; as the server reads them, an empty value means absent."""
    param: Schema = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        param["description"] = description
    return param


def _path(name: str, schema: Schema) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": schema}


_LIMIT = _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100})
_OFFSET = _query("offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0})
_CAMERA_Q = _query(
    "camera_id", {"type": "string", "maxLength": 128, "pattern": r"^[A-Za-z0-9_.:-]*$"}
)
_ID = {"type": "string", "minLength": 1}

_READ_ERRORS = (422, 500)
"""Every handler checks its query string (unknown or malformed parameter: 422)."""
_BODY_ERRORS = (400, 413, 415, 422, 500)


@dataclass(frozen=True)
class Operation:
    """One method on one path, as clients see it.

    ``scope`` is the API-key scope it needs (None: always open); ``ok`` maps
    each success status to its schema (None: no body).
    """

    method: str
    path: str
    operation_id: str
    summary: str
    scope: str | None
    ok: Mapping[int, Schema | None]
    errors: Sequence[int] = _READ_ERRORS
    parameters: Sequence[Schema] = ()
    body: Schema | None = None
    body_required: bool = True
    tag: str = "detections"
    extra: Mapping[str, Any] = field(default_factory=dict)


_D = "/api/v1/detections"

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "get",
        "/api/v1/health",
        "health",
        "Each part ok / degraded / down; 503 only when the database does not answer.",
        None,
        {200: _data(_ref("Health")), 503: _data(_ref("Health"))},
        tag="operations",
    ),
    Operation(
        "post",
        f"{_D}/send-frame",
        "send_frame",
        "Detect a frame now (inline, the default) or queue it for the dataflow (mode=queue).",
        "write",
        {200: _data(_ref("FrameResult")), 202: _data(_ref("QueuedFrame"))},
        errors=(*_BODY_ERRORS, 409),
        parameters=(
            _query(
                "mode",
                {"type": "string", "enum": ["", "inline", "queue"], "default": "inline"},
                "inline needs an active provider (409 otherwise).",
            ),
        ),
        body=_ref("SendFrame"),
    ),
    Operation(
        "get",
        f"{_D}/live",
        "live_detections",
        "The newest detections: from the live cache when it has them, else from SQL.",
        "read",
        {200: _data(_ref("LiveDetections"))},
        parameters=(
            _CAMERA_Q,
            _query("detection_type", {"type": "string", "maxLength": 64}),
            _query(
                "min_confidence", {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5}
            ),
            _LIMIT,
            _OFFSET,
            _query("use_cache", {"type": "boolean", "default": True}),
        ),
    ),
    Operation(
        "get",
        f"{_D}/events",
        "list_events",
        "Detection events, newest first, paged.",
        "read",
        {200: _page(_ref("Event"))},
        parameters=(
            _CAMERA_Q,
            _query("event_type", {"type": "string", "maxLength": 64}),
            _query("severity", {"type": "string", "enum": ["", *(str(s) for s in Severity)]}),
            _query("person_id", {"type": "string", "maxLength": 128}),
            _LIMIT,
            _OFFSET,
        ),
        extra={"x-event-types": [str(e) for e in EventType]},
    ),
    Operation(
        "get",
        f"{_D}/queue-stats",
        "queue_stats",
        "Processing-queue counts by status.",
        "read",
        {200: _data(_ref("QueueStats"))},
    ),
    Operation(
        "get",
        f"{_D}/recent",
        "recent_detections",
        "Detections of the last `minutes`, newest first, paged.",
        "read",
        {200: _page(_ref("Detection"))},
        parameters=(
            _query("minutes", {"type": "integer", "minimum": 1, "maximum": 1440, "default": 5}),
            _CAMERA_Q,
            _LIMIT,
            _OFFSET,
        ),
    ),
    Operation(
        "get",
        f"{_D}/by-person/{{person_id}}",
        "detections_by_person",
        "Detections linked to one person, newest first, paged.",
        "read",
        {200: _page(_ref("Detection"))},
        errors=(404, *_READ_ERRORS),  # 404: a segment that routes nowhere (".", "..")
        parameters=(_path("person_id", {**_ID, "maxLength": 128}), _LIMIT, _OFFSET),
    ),
    Operation(
        "get",
        f"{_D}/providers",
        "list_providers",
        "Every provider configuration (api_key never included).",
        "admin",
        {200: _data({"type": "array", "items": _ref("Provider")})},
        tag="providers",
    ),
    Operation(
        "post",
        f"{_D}/providers",
        "create_provider",
        "Create a provider configuration; its adapter is built first, so a bad one is a 422.",
        "admin",
        {201: _data(_ref("Provider"))},
        errors=_BODY_ERRORS,
        body=_ref("ProviderCreate"),
        tag="providers",
    ),
    Operation(
        "get",
        f"{_D}/providers/{{provider_id}}",
        "get_provider",
        "One provider configuration.",
        "admin",
        {200: _data(_ref("Provider"))},
        errors=(404, *_READ_ERRORS),
        parameters=(_path("provider_id", _ID),),
        tag="providers",
    ),
    Operation(
        "put",
        f"{_D}/providers/{{provider_id}}",
        "update_provider",
        "Change some fields of a provider configuration.",
        "admin",
        {200: _data(_ref("Provider"))},
        errors=(404, *_BODY_ERRORS),
        parameters=(_path("provider_id", _ID),),
        body=_ref("ProviderUpdate"),
        tag="providers",
    ),
    Operation(
        "delete",
        f"{_D}/providers/{{provider_id}}",
        "delete_provider",
        "Delete a provider configuration.",
        "admin",
        {204: None},
        errors=(404, *_READ_ERRORS),
        parameters=(_path("provider_id", _ID),),
        tag="providers",
    ),
    Operation(
        "get",
        f"{_D}/provider/config",
        "get_active_provider",
        "The active provider configuration (404 when none is active).",
        "admin",
        {200: _data(_ref("Provider"))},
        errors=(404, *_READ_ERRORS),
        tag="providers",
    ),
    Operation(
        "put",
        f"{_D}/provider/config",
        "update_active_provider",
        "Change some fields of the active provider configuration.",
        "admin",
        {200: _data(_ref("Provider"))},
        errors=(404, *_BODY_ERRORS),
        body=_ref("ProviderUpdate"),
        tag="providers",
    ),
    Operation(
        "post",
        f"{_D}/test-provider",
        "test_provider",
        "Round-trip the built-in probe frame through a provider and record the outcome.",
        "admin",
        {200: _data(_ref("ProviderTest"))},
        errors=(404, 409, *_BODY_ERRORS),
        body=_ref("TestProvider"),
        body_required=False,
        tag="providers",
    ),
    Operation(
        "get",
        f"{_D}/statistics",
        "statistics",
        "Detection statistics from the dataflow's windows (cached up to 300 s).",
        "read",
        {200: _data(_ref("Statistics"))},
        parameters=(_CAMERA_Q,),
    ),
    Operation(
        "get",
        f"{_D}/statistics/windows",
        "statistics_windows",
        "Per-camera, per-type window rows, newest first, paged.",
        "read",
        {200: _ref("WindowPage")},
        parameters=(
            _CAMERA_Q,
            _query("detection_type", {"type": "string", "maxLength": 64}),
            _query("kind", {"type": "string", "enum": ["", *WINDOW_KINDS]}),
            _query(
                "since",
                {
                    "type": "string",
                    "maxLength": 64,
                    "anyOf": [{"format": "date-time"}, {"maxLength": 0}],
                },
            ),
            _LIMIT,
            _query("offset", {"type": "integer", "minimum": 0, "maximum": 1_000_000, "default": 0}),
        ),
    ),
    Operation(
        "get",
        f"{_D}/summary",
        "summary",
        "Provider, queue and detection counts at a glance.",
        "read",
        {200: _data(_ref("Summary"))},
    ),
    Operation(
        "get",
        f"{_D}/ws/{{client_id}}",
        "detections_websocket",
        "The WebSocket: subscribe / unsubscribe / ping / get_stats in, detection and event "
        "broadcasts out (message schemas under x-websocket-messages). A client_id outside "
        "[A-Za-z0-9_.:-]{1,128} is closed with code 1008.",
        "read",
        {101: None},
        errors=(404,),
        parameters=(
            _path("client_id", _CAMERA),
            _query(
                "token",
                {"type": "string"},
                "An API key, for browsers that cannot set Authorization on a WebSocket; "
                "or send an auth message first. A socket without a valid key where one is "
                "needed gets an unauthorized error message and close code 4401.",
            ),
        ),
        extra={"x-websocket-messages": WEBSOCKET_MESSAGES},
        tag="websocket",
    ),
    Operation(
        "get",
        f"{_D}/frames/{{frame_id}}",
        "get_frame_image",
        "A frame's image bytes, when the store kept them (queued and failed frames).",
        "read",
        {200: None},
        errors=(404, *_READ_ERRORS),
        parameters=(_path("frame_id", {**_ID, "maxLength": 128}),),
        extra={"x-content-type": ("image/jpeg", "image/png", "image/webp")},
    ),
    Operation(
        "get",
        f"{_D}/{{detection_id}}",
        "get_detection",
        "One detection by id.",
        "read",
        {200: _data(_ref("Detection"))},
        errors=(404, *_READ_ERRORS),
        parameters=(_path("detection_id", {**_ID, "not": {"enum": list(RESERVED_NAMES)}}),),
    ),
    Operation(
        "get",
        "/metrics",
        "metrics",
        "Prometheus metrics (text exposition format).",
        None,
        {200: None},
        errors=(500,),
        tag="operations",
        extra={"x-content-type": ("text/plain",)},
    ),
    Operation(
        "get",
        "/",
        "live_page",
        "The live page (HTML; it reads only the public API).",
        None,
        {200: None},
        errors=(500,),
        tag="page",
        extra={"x-content-type": ("text/html",)},
    ),
    Operation(
        "get",
        "/static/{path}",
        "static_file",
        "The live page's scripts and styles.",
        None,
        {200: None},
        errors=(404, 500),
        parameters=(_path("path", {"type": "string", "minLength": 1}),),
        tag="page",
        extra={"x-content-type": ("text/javascript", "text/css", "text/html")},
    ),
    Operation(
        "get",
        "/openapi.json",
        "openapi",
        "This document.",
        None,
        {200: {"type": "object"}},
        errors=(500,),
        tag="operations",
    ),
)

_DESCRIPTIONS = {
    101: "Switching Protocols: the WebSocket is open (a plain HTTP GET is a 404).",
    200: "OK",
    201: "Created",
    202: "Accepted: queued for the dataflow",
    204: "Deleted",
    400: "Malformed request (body not JSON, bad Content-Length)",
    401: "Missing, invalid or revoked API key",
    403: "The API key's scope is too small",
    404: "Not found",
    409: "Conflict (no active provider)",
    413: "Body or frame too large",
    415: "Body is not application/json",
    422: "Invalid parameters or body; details lists every bad field",
    500: "Internal error (never a traceback)",
    503: "Unavailable: the database does not answer",
}


def _response(status: int, schema: Schema | None, op: Operation) -> Schema:
    response: Schema = {"description": _DESCRIPTIONS[status]}
    if schema is not None:
        response["content"] = {"application/json": {"schema": schema}}
    elif status == 200 and "x-content-type" in op.extra:
        response["content"] = {
            media: {"schema": {"type": "string"}} for media in op.extra["x-content-type"]
        }
    return response


def _operation(op: Operation, reads_open: bool) -> Schema:
    doc: Schema = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
    }
    if op.parameters:
        doc["parameters"] = list(op.parameters)
    if op.body is not None:
        doc["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": op.body}},
        }
    responses = {str(status): _response(status, schema, op) for status, schema in op.ok.items()}
    errors = [*op.errors, 401]  # a key that is sent is checked, even where none is needed
    if op.scope is not None:
        doc["x-required-scope"] = op.scope
        open_read = op.scope == "read" and reads_open
        doc["security"] = [{}, {"apiKey": []}] if open_read else [{"apiKey": []}]
        errors.append(403)
    else:
        doc["security"] = [{}, {"apiKey": []}]
    for status in sorted(set(errors)):
        responses[str(status)] = {
            "description": _DESCRIPTIONS[status],
            "content": {"application/json": {"schema": _ref("Error")}},
        }
    doc["responses"] = responses
    doc.update({k: v for k, v in op.extra.items() if k != "x-content-type"})
    return doc


@functools.cache
def build_spec(*, reads_open: bool = True) -> dict[str, Any]:
    """The OpenAPI 3.1 document. With ``reads_open`` read-scope operations
    need no key (the server's default auth mode); writes and admin always do."""
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, reads_open)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "detectflow",
            "version": __version__,
            "description": "Detections, events and provider configuration over REST and "
            'WebSocket. Every error is {"error": {"code", "message", "details"?}}.',
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (read < write < admin) as a bearer token; "
                    "the WebSocket also takes ?token=.",
                }
            },
        },
    }


async def openapi_endpoint(request: Request) -> JSONResponse:
    settings = server_state(request).settings
    return JSONResponse(build_spec(reads_open=settings.auth_mode == "reads-open"))


# -- the app's routes, as templates -----------------------------------------

_CONVERTOR = re.compile(r"{([^}:]+):[^}]+}")


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """One leaf route with its full path template (``{name}``, no convertor)."""

    path: str
    methods: frozenset[str]
    route: BaseRoute


def route_table(routes: Sequence[BaseRoute], prefix: str = "") -> Iterator[RouteInfo]:
    """Every leaf route under ``routes``; a WebSocket route counts as GET (the upgrade)."""
    for route in routes:
        if isinstance(route, Mount) and not route.routes:  # an ASGI app (static files)
            yield RouteInfo(f"{prefix}{route.path}/{{path}}", frozenset({"GET"}), route)
        elif isinstance(route, Mount):
            yield from route_table(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            methods = frozenset(route.methods or ()) - {"HEAD"}
            yield RouteInfo(_CONVERTOR.sub(r"{\1}", prefix + route.path), methods, route)
        elif isinstance(route, WebSocketRoute):
            yield RouteInfo(_CONVERTOR.sub(r"{\1}", prefix + route.path), frozenset({"GET"}), route)
