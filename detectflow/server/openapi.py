"""The API contract: the OpenAPI 3.1 document, built from the endpoint declarations.

Each operation is declared once, next to its handler
(:mod:`detectflow.server.endpoints`), with the schemas here, in the same
bounds the handlers enforce (``limit`` 1-1000, ``min_confidence`` 0-1,
strict bodies with ``additionalProperties: false``, no control characters
in identifiers, no NUL in any body string). Since routes and the document
come from the same objects, they cannot disagree about which paths exist;
schemathesis drives every operation with generated input and checks each
answer against its schema. The WebSocket is described as the GET that
upgrades, with its JSON messages under ``x-websocket-messages``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from detectflow import __version__
from detectflow.core.frames import CAMERA_ID_PATTERN
from detectflow.core.models import QueueStatus, TestStatus
from detectflow.core.windows import WINDOW_KINDS
from detectflow.server.endpoints import NO_CONTROL_PATTERN, Endpoint, Operation, PathParam, Schema
from detectflow.server.params import MAX_OFFSET, Cursor, encode_cursor
from detectflow.store.keys import Scope as KeyScope

__all__ = [
    "CAMERA_QUERY",
    "CAMERA_SCHEMA",
    "CURSOR",
    "LIMIT",
    "OFFSET",
    "SCHEMAS",
    "TIME_SCHEMA",
    "WEBSOCKET_MESSAGES",
    "build_spec",
    "enveloped",
    "keyset_paged",
    "nullable",
    "paged",
    "query",
    "ref",
]

_NO_NUL = "^[^\\u0000]*$"
"""Body strings: the boundary refuses NUL anywhere in a JSON body."""

_CAMERA = {"type": "string", "pattern": f"^{CAMERA_ID_PATTERN.pattern}$"}
_TIME = {"type": "string", "format": "date-time"}
TIME_SCHEMA = _TIME


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def ref(name: str) -> Schema:
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


def enveloped(schema: Schema) -> Schema:
    return _object(["data"], data=schema)


def paged(item: Schema) -> Schema:
    return _object(["data", "meta"], data={"type": "array", "items": item}, meta=ref("PageMeta"))


def keyset_paged(item: Schema) -> Schema:
    """A page that also pages by cursor (``meta.next_cursor``, ``?cursor=``)."""
    return _object(
        ["data", "meta"], data={"type": "array", "items": item}, meta=ref("KeysetPageMeta")
    )


_COUNT = {"type": "integer", "minimum": 0}
_PART_STATUS = {"type": "string", "enum": ["ok", "degraded", "down"]}


def _health_part(**extra: Schema) -> Schema:
    """One part of /api/v1/health: its status, why it is not ok, and its details."""
    return _object(status=_PART_STATUS, message=nullable({"type": "string"}), **extra)


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
    "KeysetPageMeta": _object(
        page={"type": "integer", "minimum": 1},
        pageSize={"type": "integer", "minimum": 1, "maximum": 1000},
        total=_COUNT,
        totalPages=_COUNT,
        next_cursor={
            **nullable({"type": "string", "minLength": 1}),
            "description": "Give back as ?cursor= for the next page; null on the last page.",
        },
        total_is_estimate={
            "type": "boolean",
            "description": "total is the planner's estimate (more than 10,000 rows match).",
        },
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
        bbox=ref("BBox"),
        person_name=nullable({"type": "string"}),
        person_id=nullable({"type": "string"}),
        is_processed={"type": "boolean"},
        processing_status={"type": "string"},
        frame_number=nullable(_COUNT),
        frame_timestamp=nullable(_TIME),
        createdAt=_TIME,
        updatedAt=_TIME,
    ),
    "Event": _object(
        id={"type": "string"},
        detection_id=nullable({"type": "string"}),
        camera_id={"type": "string"},
        event_type={"type": "string"},
        severity={"type": "string"},
        message={"type": "string"},
        person_id=nullable({"type": "string"}),
        person_name=nullable({"type": "string"}),
        confidence_score=nullable({"type": "number"}),
        action_taken=nullable({"type": "string"}),
        source_system=nullable({"type": "string"}),
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
        last_tested=nullable(_TIME),
        last_error=nullable({"type": "string"}),
        createdAt=_TIME,
        updatedAt=_TIME,
    ),
    "LiveDetections": _object(
        camera_id=nullable({"type": "string"}),
        detections={"type": "array", "items": ref("Detection")},
        total_detections=_COUNT,
        last_updated=nullable(_TIME),
        cache_hit={"type": "boolean"},
    ),
    "FrameResult": _object(
        success={"type": "boolean"},
        camera_id={"type": "string"},
        detection_count=_COUNT,
        detections={"type": "array", "items": ref("Detection")},
        processing_time_ms=_COUNT,
        frame_id={"type": "string"},
        error=nullable({"type": "string"}),
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
        error=nullable({"type": "string"}),
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
        provider_name=nullable({"type": "string"}),
        websocket=_object(
            clients=_COUNT,
            received=_COUNT,
            malformed=_COUNT,
            dropped=_COUNT,
        ),
    ),
    "Summary": _object(
        provider_configured={"type": "boolean"},
        provider_name=nullable({"type": "string"}),
        provider_active={"type": "boolean"},
        provider_test_status=nullable({"type": "string"}),
        queue_stats=ref("QueueStats"),
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
                cameras=nullable({"type": "array", "items": _CAMERA}),
                priority={"type": "integer", "minimum": 0},
                breaker={"type": "string", "enum": ["closed", "open", "half_open"]},
                failures=_COUNT,
                opened_at=nullable(_TIME),
            ),
        },
    ),
}


SCHEMAS["Statistics"] = _object(
    total_detections=_COUNT,
    detections_today=_COUNT,
    detections_this_hour=_COUNT,
    average_confidence={"type": "number", "minimum": 0, "maximum": 1},
    most_detected_person=nullable({"type": "string"}),
    detection_types={"type": "object", "additionalProperties": _COUNT},
    cameras_active=_COUNT,
    last_detection_timestamp=nullable(_TIME),
)
_SCORE = {"type": "number", "minimum": 0, "maximum": 1}
_BOX = {
    "type": "array",
    "items": {"type": "number"},
    "minItems": 4,
    "maxItems": 4,
    "description": "[x_min, y_min, x_max, y_max] in fractions of the frame.",
}
_OBJECT_FIELDS: dict[str, Schema] = {
    "id": {"type": "string"},
    "camera_id": {"type": "string"},
    "label": {"type": "string"},
    "detection_type": {"type": "string"},
    "start_time": _TIME,
    "end_time": nullable(_TIME),
    "frames": _COUNT,
    "top_score": _SCORE,
    "box": _BOX,
    "zones": {"type": "array", "items": {"type": "string"}, "description": "Entered, in order."},
    "in_progress": {"type": "boolean"},
    "has_snapshot": {"type": "boolean"},
    "sub_label": nullable({"type": "string"}),
}
SCHEMAS["TrackedObject"] = _object(**_OBJECT_FIELDS)
SCHEMAS["TrackedObjectDetail"] = _object(
    **_OBJECT_FIELDS,
    score=_SCORE,
    current_zones={"type": "array", "items": {"type": "string"}},
    path={
        "type": "array",
        "items": _object(x={"type": "number"}, y={"type": "number"}, time={"type": "number"}),
        "description": "Sampled box centres (time in unix seconds).",
    },
    best=nullable(_object(frame_id={"type": "string"}, score=_SCORE, box=_BOX, time=_TIME)),
    person_id=nullable({"type": "string"}),
    person_name=nullable({"type": "string"}),
    updated_at=_TIME,
)
_CONFIDENCE_OR_NONE = nullable({"type": "number", "minimum": 0, "maximum": 1})
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
    data={"type": "array", "items": ref("WindowStats")},
    meta=ref("PageMeta"),
)


# -- request bodies: the same bounds params.Body enforces ----------------------

_PROVIDER_FIELDS: dict[str, Schema] = {
    "provider_name": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": _NO_NUL},
    "provider_type": {
        "type": "string",
        "minLength": 1,
        "maxLength": 64,
        "pattern": _NO_NUL,
        "description": "A type a loaded plugin provides (http_api, grpc, mqtt, ...).",
    },
    "endpoint_url": {
        "type": "string",
        "minLength": 1,
        "maxLength": 2048,
        "pattern": "^[^\\s\\u0000]+$",
    },
    "api_key": {"type": "string", "minLength": 1, "maxLength": 4096, "pattern": _NO_NUL},
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
        "properties": {"dialect": {"type": "string", "pattern": _NO_NUL}},
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
            **nullable(_PROVIDER_FIELDS["api_key"]),
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
    timestamp={"type": "string", "maxLength": 64, "format": "date-time", "pattern": _NO_NUL},
    priority={"type": "integer", "minimum": 1, "maximum": 10, "default": 5},
    frame_id={"type": "string", "pattern": r"^[A-Za-z0-9_.:-]{1,128}$"},
)
_CAMERA_FIELDS: dict[str, Schema] = {
    "name": {"type": "string", "maxLength": 255, "pattern": _NO_NUL},
    "url": {
        **nullable(
            {
                "type": "string",
                "minLength": 1,
                "maxLength": 2048,
                "pattern": "^(?i:rtsps?|rtmp|https?|file)://[^\\s\\u0000]*$",
            }
        ),
        "description": "rtsp(s)://, rtmp://, http(s):// or file:// (null: a camera fed "
        "through the API, Redis or MQTT). Credentials go here (user:pass@host); "
        "stored encrypted, never returned.",
    },
    "enabled": {"type": "boolean", "default": True},
    "fps": {"type": "number", "exclusiveMinimum": 0, "maximum": 60, "default": 5},
    "provider": {
        **nullable({"type": "string", "minLength": 1, "maxLength": 64, "pattern": _NO_NUL}),
        "description": "A provider config id; null: the routing rules choose.",
    },
    "options": {
        "type": "object",
        "description": "The reader's settings (transport, realtime, loop, stall_seconds, "
        "jpeg_quality) and the objects' zones, masks, lines and filters. No null values, "
        "no credentials.",
    },
}
SCHEMAS["Camera"] = _object(
    id=_CAMERA,
    name={"type": "string"},
    display_url={
        **nullable({"type": "string"}),
        "description": "The URL with its password replaced by ***.",
    },
    enabled={"type": "boolean"},
    fps={"type": "number", "exclusiveMinimum": 0, "maximum": 60},
    provider=nullable({"type": "string"}),
    options={"type": "object"},
    last_error=nullable({"type": "string"}),
    createdAt=_TIME,
    updatedAt=_TIME,
)
SCHEMAS["CameraCreate"] = _object(["id"], id={**_CAMERA, "maxLength": 128}, **_CAMERA_FIELDS)
SCHEMAS["CameraUpdate"] = {**_object([], **_CAMERA_FIELDS), "minProperties": 1}
_RATE = {"type": "number", "minimum": 0}
SCHEMAS["CameraStatus"] = _object(
    camera_id=_CAMERA,
    enabled={"type": "boolean"},
    status={
        "type": "string",
        "enum": ["online", "offline", "unknown"],
        "description": "unknown: the cache holding the reports does not answer.",
    },
    seen={"type": "boolean", "description": "A reader reported in the last 60 s."},
    reported_at=nullable(_TIME),
    last_frame_time=nullable(_TIME),
    decode_fps=_RATE,
    sampled_fps=_RATE,
    skipped_per_second=_RATE,
    detect_fps=_RATE,
    inference_ms=_object(p50=nullable(_RATE), p95=nullable(_RATE)),
    in_flight=_COUNT,
    last_error=nullable({"type": "string"}),
)
SCHEMAS["TestProvider"] = _object(
    [],
    provider_config_id={
        "type": "string",
        "minLength": 1,
        "maxLength": 64,
        "pattern": _NO_NUL,
        "description": "Default: the active provider.",
    },
    timeout_seconds={"type": "number", "exclusiveMinimum": 0, "maximum": 120},
)


# -- WebSocket messages ------------------------------------------------------

_SCOPES = ("read", "write", "admin")

_EVENT_TYPES = nullable(
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
                camera_id=nullable({"type": "string"}),
                event_types=nullable({"type": "array", "items": {"type": "string"}}),
                min_confidence={"type": "number", "minimum": 0, "maximum": 1},
                subscribed={"const": True},
                message={"type": "string"},
                current_detections={"type": "array", "items": ref("Detection")},
                detection_count=_COUNT,
            ),
            _message(
                "unsubscription",
                ["camera_id", "event_types", "subscribed", "message"],
                camera_id=nullable({"type": "string"}),
                event_types=nullable({"type": "array", "items": {"type": "string"}}),
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
            _message("stats", ["queue_stats"], queue_stats=ref("QueueStats")),
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
                bbox=ref("BBox"),
                person_name=nullable({"type": "string"}),
                person_id=nullable({"type": "string"}),
                timestamp=nullable(_TIME),
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
                detection_id=nullable({"type": "string"}),
                timestamp=nullable(_TIME),
                published_at=_TIME,
            ),
            _message(
                "object",
                ["event_id", "event_type", "camera_id", "object_id", "before", "after"],
                event_id={"type": "string"},
                event_type={
                    "type": "string",
                    "enum": ["object_started", "object_updated", "object_ended"],
                },
                camera_id={"type": "string"},
                object_id={"type": "string"},
                frame_id={"type": "string"},
                changes={
                    "type": "array",
                    "items": {"type": "string", "enum": ["zones", "label", "snapshot"]},
                },
                timestamp=_TIME,
                before={
                    "type": "object",
                    "description": "The object as last published (Frigate's field names).",
                },
                after={"type": "object", "description": "The object now."},
                published_at=_TIME,
            ),
        ]
    },
}


# -- pieces the declarations share ----------------------------------------------


def query(name: str, schema: Schema, description: str = "") -> Schema:
    """An optional query parameter; as the server reads them, an empty value means absent.

    A free-text string also says what the boundary refuses (control characters).
    """
    if schema.get("type") == "string" and not ({"pattern", "enum", "format"} & set(schema)):
        schema = {**schema, "pattern": NO_CONTROL_PATTERN}
    param: Schema = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        param["description"] = description
    return param


LIMIT = query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100})
OFFSET = query(
    "offset",
    {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0},
    "Rows to skip; deeper pages go by cursor.",
)
CURSOR = query(
    "cursor",
    {
        "type": "string",
        "maxLength": 400,
        "pattern": "^[A-Za-z0-9_-]*$",
        "example": encode_cursor(Cursor(2, datetime(2026, 1, 1, tzinfo=UTC), "example")),
    },
    "meta.next_cursor of the previous page (not with offset).",
)
CAMERA_QUERY = query(
    "camera_id", {"type": "string", "maxLength": 128, "pattern": r"^[A-Za-z0-9_.:-]*$"}
)
CAMERA_SCHEMA = _CAMERA

_DESCRIPTIONS = {
    101: "Switching Protocols: the WebSocket is open (a plain HTTP GET is a 404).",
    200: "OK",
    201: "Created",
    202: "Accepted: queued for the dataflow",
    204: "Deleted",
    400: "Malformed request (body not JSON or nested too deep, bad Content-Length)",
    401: "Missing, invalid or revoked API key",
    403: "The API key's scope is too small",
    404: "Not found",
    409: "Conflict (no active provider; a camera id that is taken)",
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


def _operation(op: Operation, params: Sequence[PathParam], reads_open: bool) -> Schema:
    doc: Schema = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
    }
    parameters = [*(p.document() for p in params), *op.parameters]
    if parameters:
        doc["parameters"] = parameters
    if op.body is not None:
        doc["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": op.body}},
        }
    responses = {
        str(status): {**_response(status, schema, op), **op.response_extras.get(status, {})}
        for status, schema in op.ok.items()
    }
    errors = list(op.errors)
    if params:
        errors.append(422)  # control characters in a path parameter
    if op.scope is not None:
        doc["x-required-scope"] = op.scope.value
        open_read = op.scope is KeyScope.READ and reads_open
        doc["security"] = [{}, {"apiKey": []}] if open_read else [{"apiKey": []}]
        errors.extend((401, 403))  # a key that is sent is checked, even where none is needed
    else:
        doc["security"] = [{}]
    for status in sorted(set(errors)):
        responses[str(status)] = {
            "description": _DESCRIPTIONS[status],
            "content": {"application/json": {"schema": ref("Error")}},
        }
    doc["responses"] = responses
    doc.update({k: v for k, v in op.extra.items() if k != "x-content-type"})
    return doc


def build_spec(endpoints: Iterable[Endpoint], *, reads_open: bool = True) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``endpoints``. With ``reads_open`` read-scope
    operations need no key (the server's default auth mode); writes and admin always do."""
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        for op in endpoint.operations:
            doc = _operation(op, endpoint.params, reads_open)
            paths.setdefault(endpoint.path, {})[op.method.lower()] = doc
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
