"""``GET /statistics`` (the guide's shape) and ``GET /statistics/windows``.

Both read the window statistics the dataflow writes
(:mod:`detectflow.store.stats`). The summary is cached for ``STATS_TTL``
(the guide's 300 s), never past the end of the hour, since "this hour" and
"today" would then be wrong; the dataflow's stats sink drops a camera's
entry whenever its windows change, so the cache saves SQL without serving
stale numbers.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from detectflow.core.errors import InvalidFrameError
from detectflow.core.frames import CAMERA_ID_PATTERN, parse_timestamp
from detectflow.core.models import utcnow
from detectflow.core.serialize import isoformat, window_stats_to_dict
from detectflow.core.windows import WINDOW_KINDS
from detectflow.server.detections import page_meta
from detectflow.server.endpoints import NO_CONTROL_PATTERN, Operation, http
from detectflow.server.openapi import CAMERA_QUERY, LIMIT, enveloped, query, ref
from detectflow.server.params import Query
from detectflow.server.state import in_thread, server_state
from detectflow.store.keys import Scope as KeyScope
from detectflow.store.live import STATS_TTL
from detectflow.store.stats import DetectionStatistics

__all__ = ["cache_ttl", "endpoints", "statistics_to_dict"]

_MIN_TTL = 1.0


def statistics_to_dict(s: DetectionStatistics) -> dict[str, Any]:
    """The guide's ``data`` object, key for key."""
    return {
        "total_detections": s.total_detections,
        "detections_today": s.detections_today,
        "detections_this_hour": s.detections_this_hour,
        "average_confidence": round(s.average_confidence, 4),
        "most_detected_person": s.most_detected_person,
        "detection_types": dict(s.detection_types),
        "cameras_active": s.cameras_active,
        "last_detection_timestamp": isoformat(s.last_detection_timestamp),
    }


def cache_ttl(now: datetime) -> float:
    """``STATS_TTL``, cut at the next full hour (when "this hour" starts again)."""
    next_hour = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return max(_MIN_TTL, min(STATS_TTL, (next_hour - now).total_seconds()))


async def statistics(request: Request) -> JSONResponse:
    state = server_state(request)
    query = Query(request)
    camera_id = query.text("camera_id", max_length=128, pattern=CAMERA_ID_PATTERN)
    query.check()
    cached = await in_thread(state.live.stats.get, camera_id)
    if cached is not None:
        return JSONResponse({"data": cached})
    now = utcnow()
    stats = await in_thread(state.database.detection_statistics, camera_id, now=now)
    data = statistics_to_dict(stats)
    await in_thread(state.live.stats.put, camera_id, data, cache_ttl(now))
    return JSONResponse({"data": data})


async def windows(request: Request) -> JSONResponse:
    """Window rows, newest first (1-minute tumbling and 5-minute sliding windows)."""
    state = server_state(request)
    query = Query(request)
    camera_id = query.text("camera_id", max_length=128, pattern=CAMERA_ID_PATTERN)
    detection_type = query.text("detection_type", max_length=64)
    kind = query.choice("kind", WINDOW_KINDS)
    since_text = query.text("since", max_length=64)
    limit = query.integer("limit", default=100, minimum=1, maximum=1000)
    offset = query.integer("offset", default=0, minimum=0, maximum=1_000_000)
    since = None
    if since_text is not None:
        try:
            since = parse_timestamp(since_text)
        except (InvalidFrameError, OverflowError) as exc:
            query.error("since", str(exc))
    query.check()
    rows, total = await in_thread(
        state.database.list_window_stats,
        camera_id=camera_id,
        detection_type=detection_type,
        kind=kind,
        since=since,
        limit=limit,
        offset=offset,
    )
    data = [{**window_stats_to_dict(w), "kind": k} for k, w in rows]
    return JSONResponse({"data": data, "meta": page_meta(limit, offset, total)})


endpoints = [
    http(
        "/api/v1/detections/statistics",
        Operation(
            "GET",
            "statistics",
            "Detection statistics from the dataflow's windows (cached up to 300 s).",
            KeyScope.READ,
            {200: enveloped(ref("Statistics"))},
            statistics,
            parameters=(CAMERA_QUERY,),
        ),
    ),
    http(
        "/api/v1/detections/statistics/windows",
        Operation(
            "GET",
            "statistics_windows",
            "Per-camera, per-type window rows, newest first, paged.",
            KeyScope.READ,
            {200: ref("WindowPage")},
            windows,
            parameters=(
                CAMERA_QUERY,
                query("detection_type", {"type": "string", "maxLength": 64}),
                query("kind", {"type": "string", "enum": ["", *WINDOW_KINDS]}),
                query(
                    "since",
                    {
                        "type": "string",
                        "maxLength": 64,
                        "anyOf": [{"format": "date-time"}, {"maxLength": 0}],
                        "pattern": NO_CONTROL_PATTERN,
                    },
                ),
                LIMIT,
                query(
                    "offset",
                    {"type": "integer", "minimum": 0, "maximum": 1_000_000, "default": 0},
                ),
            ),
        ),
    ),
]
