"""Per-camera status: ``GET /api/v1/cameras/status``, ``/api/v1/cameras/{id}/status``
and the ``detectflow_camera_*`` Prometheus series.

What a camera's reader reported (:mod:`detectflow.store.camera_status`),
joined with its configuration. Only configured cameras are shown, and only
they get series: the cameras table bounds the label set, so a camera id
made up by a client adds nothing. A camera with no report, or a report
older than ``STATUS_STALE``, is ``offline`` with zero rates (``seen`` tells
whether a reader reported within the TTL). While the cache that holds the
reports does not answer, every camera is ``unknown``: not knowing must not
read as "offline".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from starlette.requests import Request
from starlette.responses import JSONResponse

from detectflow.core.camera_status import CameraStatus
from detectflow.core.cameras import Camera
from detectflow.core.frames import parse_timestamp
from detectflow.core.models import utcnow
from detectflow.core.serialize import isoformat
from detectflow.server.cameras import CAMERA_ID_PARAM, CAMERAS, find_camera
from detectflow.server.endpoints import READ_ERRORS, Operation, http
from detectflow.server.openapi import enveloped, ref
from detectflow.server.params import Query
from detectflow.server.state import ServerState, in_thread, server_state
from detectflow.store.cache import CacheUnavailableError
from detectflow.store.camera_status import is_online
from detectflow.store.keys import Scope as KeyScope

__all__ = ["camera_metric_families", "camera_statuses", "endpoints", "status_to_dict"]

log = logging.getLogger(__name__)

_RATES = ("decode_fps", "sampled_fps", "skipped_per_second", "detect_fps")


def status_to_dict(
    camera: Camera, status: CameraStatus | None, now: datetime, *, readable: bool = True
) -> dict[str, Any]:
    """One camera's status for the API. A stale report keeps its times and last
    error but not its rates: nothing is flowing now."""
    online = is_online(status, now)
    live = status if online else None
    state = ("online" if online else "offline") if readable else "unknown"
    if online:
        last_error = live.last_error if live else None
    else:  # the reader's reason if it gave one, else the one it recorded last
        last_error = (status.last_error if status else None) or camera.last_error
    return {
        "camera_id": camera.id,
        "enabled": camera.enabled,
        "status": state,
        "seen": status is not None,
        "reported_at": isoformat(status.reported_at) if status else None,
        "last_frame_time": isoformat(status.last_frame_time) if status else None,
        **{name: round(getattr(live, name), 3) if live else 0.0 for name in _RATES},
        "inference_ms": {
            "p50": live.inference_ms_p50 if live else None,
            "p95": live.inference_ms_p95 if live else None,
        },
        "in_flight": live.in_flight if live else 0,
        "last_error": last_error,
    }


def _read(state: ServerState, cameras: Sequence[Camera]) -> tuple[dict[str, CameraStatus], bool]:
    """The reports, and whether the cache could be read at all."""
    try:
        return state.live.camera_statuses([c.id for c in cameras]), True
    except CacheUnavailableError as exc:
        log.warning("camera status unreadable: %s", exc)
        return {}, False


def camera_statuses(state: ServerState, cameras: Sequence[Camera]) -> list[dict[str, Any]]:
    """Every camera's status (blocking: call it in a thread)."""
    reports, readable = _read(state, cameras)
    now = utcnow()
    return [status_to_dict(c, reports.get(c.id), now, readable=readable) for c in cameras]


async def all_statuses(request: Request) -> JSONResponse:
    state = server_state(request)
    Query(request).check()
    cameras = await in_thread(state.database.list_cameras)
    return JSONResponse({"data": await in_thread(camera_statuses, state, cameras)})


async def one_status(request: Request) -> JSONResponse:
    state = server_state(request)
    Query(request).check()
    camera = await find_camera(state, request.path_params["camera_id"])
    statuses = await in_thread(camera_statuses, state, [camera])
    return JSONResponse({"data": statuses[0]})


def camera_metric_families(statuses: Sequence[dict[str, Any]]) -> list[Metric]:
    """Gauges per configured camera from :func:`camera_statuses`' dicts."""

    def gauge(name: str, text: str, labels: Sequence[str] = ("camera",)) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"detectflow_camera_{name}", text, labels=list(labels))

    online = gauge("online", "1 while the camera's reader reports frames flowing, else 0.")
    rates = {
        "decode_fps": gauge("decode_fps", "Frames decoded per second (the stream's rate)."),
        "sampled_fps": gauge("sampled_fps", "Frames handed to the flow per second."),
        "skipped_per_second": gauge(
            "skipped_per_second", "Decoded frames per second replaced by a newer one unsent."
        ),
        "detect_fps": gauge("detect_fps", "Frames per second whose detection completed."),
    }
    inference = gauge(
        "inference_milliseconds",
        "Provider inference time over the last 10 s, by quantile.",
        ("camera", "quantile"),
    )
    in_flight = gauge("frames_in_flight", "Sampled frames sent to a provider and not back.")
    last_frame = gauge(
        "last_frame_timestamp_seconds", "Stream time of the newest decoded frame (Unix seconds)."
    )
    for entry in statuses:
        if entry["status"] == "unknown":
            continue  # no data is better than a false zero
        camera = entry["camera_id"]
        online.add_metric([camera], 1.0 if entry["status"] == "online" else 0.0)
        for name, family in rates.items():
            family.add_metric([camera], float(entry[name]))
        for quantile, key in (("0.5", "p50"), ("0.95", "p95")):
            value = entry["inference_ms"][key]
            if value is not None:
                inference.add_metric([camera, quantile], float(value))
        in_flight.add_metric([camera], float(entry["in_flight"]))
        if entry["last_frame_time"] is not None:
            stamp = parse_timestamp(entry["last_frame_time"])
            last_frame.add_metric([camera], stamp.timestamp())
    return [online, *rates.values(), inference, in_flight, last_frame]


endpoints = [
    http(
        CAMERAS + "/status",
        Operation(
            "GET",
            "camera_statuses",
            "Every configured camera's status: online, rates, inference time, last error.",
            KeyScope.READ,
            {200: enveloped({"type": "array", "items": ref("CameraStatus")})},
            all_statuses,
            tag="cameras",
        ),
    ),
    http(
        CAMERAS + "/{camera_id}/status",
        Operation(
            "GET",
            "camera_status",
            "One camera's status (404 for a camera not configured).",
            KeyScope.READ,
            {200: enveloped(ref("CameraStatus"))},
            one_status,
            errors=(404, *READ_ERRORS),
            tag="cameras",
        ),
        params=[CAMERA_ID_PARAM],
    ),
]
