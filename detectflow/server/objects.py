"""REST routes under ``/api/v1/objects``: tracked objects and their snapshots.

Objects are written by the dataflow's objects step through the one recorder
(:mod:`detectflow.store.objects`); this module only reads them. Lists page
like every other list (``meta`` with ``next_cursor``), newest start first.
"""

from __future__ import annotations

import io
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from detectflow.core.errors import InvalidFrameError
from detectflow.core.frames import CAMERA_ID_PATTERN, parse_timestamp
from detectflow.core.serialize import isoformat
from detectflow.server.detections import read_paging
from detectflow.server.endpoints import (
    NO_CONTROL_PATTERN,
    READ_ERRORS,
    UUID_PATTERN,
    Operation,
    PathParam,
    http,
)
from detectflow.server.errors import not_found
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
from detectflow.server.params import Query
from detectflow.server.state import in_thread, server_state
from detectflow.store.keys import Scope as KeyScope
from detectflow.store.objects import TrackedObject
from detectflow.store.snapshots import snapshot_store

__all__ = ["endpoints", "object_to_dict", "render_snapshot"]

_MAX_HEIGHT = 4096
_BOX_COLOUR = (255, 64, 0)


def object_to_dict(o: TrackedObject, *, detail: bool = False) -> dict[str, Any]:
    """An object as the API shows it; ``detail`` adds its path, zones now and best frame."""
    data: dict[str, Any] = {
        "id": o.id,
        "camera_id": o.camera_id,
        "label": o.label,
        "detection_type": o.detection_type,
        "start_time": isoformat(o.start_time),
        "end_time": isoformat(o.end_time),
        "frames": o.frames,
        "top_score": o.top_score,
        "box": o.box,
        "zones": o.zones,
        "in_progress": o.in_progress,
        "has_snapshot": o.snapshot_path is not None,
        "sub_label": o.sub_label,
    }
    if detail:
        data.update(
            score=o.score,
            current_zones=o.current_zones,
            path=[{"x": p[0], "y": p[1], "time": p[2]} for p in o.path],
            best=None
            if o.best_box is None
            else {
                "frame_id": o.best_frame_id,
                "score": o.best_score,
                "box": o.best_box,
                "time": isoformat(o.best_time),
            },
            person_id=o.person_id,
            person_name=o.person_name,
            updated_at=isoformat(o.updated_at),
        )
    return data


def _time(query: Query, name: str) -> Any:
    raw = query.text(name, max_length=64)
    if raw is None:
        return None
    try:
        return parse_timestamp(raw)
    except (InvalidFrameError, OverflowError) as exc:
        query.error(name, str(exc))
        return None


async def list_objects(request: Request) -> JSONResponse:
    state = server_state(request)
    query = Query(request)
    camera_id = query.text("camera_id", max_length=128, pattern=CAMERA_ID_PATTERN)
    label = query.text("label", max_length=128)
    zone = query.text("zone", max_length=64)
    progress = query.choice("in_progress", ("true", "false"))
    after_time = _time(query, "after")
    before_time = _time(query, "before")
    min_score = query.number("min_score", default=0.0, minimum=0.0, maximum=1.0)
    paging = read_paging(query)
    query.check()
    page = await in_thread(
        state.database.page_objects,
        camera_id=camera_id,
        label=label,
        zone=zone,
        in_progress=None if progress is None else progress == "true",
        after_time=after_time,
        before_time=before_time,
        min_score=min_score,
        limit=paging.limit,
        offset=paging.offset,
        after=paging.after,
    )
    return JSONResponse(
        {"data": [object_to_dict(o) for o in page.items], "meta": paging.meta(page)}
    )


async def get_object(request: Request) -> JSONResponse:
    state = server_state(request)
    Query(request).check()
    object_id = request.path_params["object_id"]
    found = await in_thread(state.database.get_object, object_id)
    if found is None:
        raise not_found("object", object_id)
    return JSONResponse({"data": object_to_dict(found, detail=True)})


def render_snapshot(
    image: bytes, box: list[float] | None, *, bbox: bool, crop: bool, height: int | None
) -> bytes:
    """The snapshot as asked: the box drawn, cropped to the box (with a margin),
    scaled to ``height`` pixels. Untouched bytes when nothing is asked."""
    if not (bbox or crop or height) or (box is None and not height):
        return image
    from PIL import Image, ImageDraw

    with Image.open(io.BytesIO(image)) as opened:
        img = opened.convert("RGB")
    w, h = img.size
    if box is not None:
        x0, y0, x1, y1 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
        if bbox:
            ImageDraw.Draw(img).rectangle(
                (x0, y0, x1, y1), outline=_BOX_COLOUR, width=max(2, round(min(w, h) / 200))
            )
        if crop:
            mx, my = (x1 - x0) * 0.1, (y1 - y0) * 0.1
            img = img.crop(
                (
                    max(0, int(x0 - mx)),
                    max(0, int(y0 - my)),
                    min(w, int(x1 + mx) + 1),
                    min(h, int(y1 + my) + 1),
                )
            )
    if height:
        cw, ch = img.size
        img = img.resize((max(1, round(cw * height / ch)), height))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


async def snapshot(request: Request) -> Response:
    state = server_state(request)
    query = Query(request)
    bbox = query.boolean("bbox", default=False)
    crop = query.boolean("crop", default=False)
    height = query.integer("height", default=0, minimum=0, maximum=_MAX_HEIGHT)
    query.check()
    object_id = request.path_params["object_id"]
    found = await in_thread(state.database.get_object, object_id)
    if found is None:
        raise not_found("object", object_id)
    image = None
    if found.snapshot_path is not None:
        image = await in_thread(snapshot_store(state.settings).load, found.snapshot_path)
    if image is None:
        raise not_found("snapshot of object", object_id)
    body = await in_thread(
        render_snapshot, image, found.best_box, bbox=bbox, crop=crop, height=height or None
    )
    return Response(body, media_type="image/jpeg", headers={"cache-control": "no-cache"})


_OBJECT_ID = PathParam("object_id", UUID_PATTERN, description="A tracked object's id (a UUID).")
_BOOL = {"type": "boolean", "default": False}
_TIME_QUERY = {  # as /statistics/windows' since: an empty value means absent
    "type": "string",
    "maxLength": 64,
    "anyOf": [{"format": "date-time"}, {"maxLength": 0}],
    "pattern": NO_CONTROL_PATTERN,
}

endpoints = [
    http(
        "/api/v1/objects",
        Operation(
            "GET",
            "list_objects",
            "Tracked objects, newest start first, paged.",
            KeyScope.READ,
            {200: keyset_paged(ref("TrackedObject"))},
            list_objects,
            tag="objects",
            parameters=(
                CAMERA_QUERY,
                query("label", {"type": "string", "maxLength": 128}),
                query("zone", {"type": "string", "maxLength": 64}, "Objects that entered it."),
                query("in_progress", {"type": "string", "enum": ["", "true", "false"]}),
                query("after", _TIME_QUERY, "Started at or after (RFC 3339)."),
                query("before", _TIME_QUERY, "Started before (RFC 3339)."),
                query("min_score", {"type": "number", "minimum": 0, "maximum": 1, "default": 0}),
                LIMIT,
                OFFSET,
                CURSOR,
            ),
        ),
    ),
    http(
        "/api/v1/objects/{object_id}",
        Operation(
            "GET",
            "get_object",
            "One tracked object with its path, zones and best detection.",
            KeyScope.READ,
            {200: enveloped(ref("TrackedObjectDetail"))},
            get_object,
            errors=(404, *READ_ERRORS),
            tag="objects",
        ),
        params=[_OBJECT_ID],
    ),
    http(
        "/api/v1/objects/{object_id}/snapshot.jpg",
        Operation(
            "GET",
            "object_snapshot",
            "The JPEG of the object's best detection: boxed, cropped or scaled on request.",
            KeyScope.READ,
            {200: None},
            snapshot,
            errors=(404, *READ_ERRORS),
            tag="objects",
            parameters=(
                query("bbox", _BOOL, "Draw the best detection's box."),
                query("crop", _BOOL, "Crop to the box (with a 10% margin)."),
                query(
                    "height",
                    {"type": "integer", "minimum": 0, "maximum": _MAX_HEIGHT, "default": 0},
                    "Scale to this many pixels high (0: as stored).",
                ),
            ),
            extra={"x-content-type": ("image/jpeg",)},
        ),
        params=[_OBJECT_ID],
    ),
]
