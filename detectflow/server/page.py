"""The live page at ``GET /``, its static files, and the frame images it draws on.

The page is plain HTML, CSS and JavaScript shipped inside the package (no
build step, no CDN), so it works on an offline machine and in a wheel. It
reads only the public API (REST + WebSocket), so it doubles as a worked
example of a client.

``GET /api/v1/detections/frames/{frame_id}`` returns a frame's image bytes
when the store still has them (frames that came through the processing
queue, or failed frames kept for a retry). Inline frames that succeeded are
not kept, so a 404 there is normal: the page then draws the boxes over a
placeholder instead.
"""

from __future__ import annotations

from importlib.resources import files

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

from detectflow.core.images import image_info
from detectflow.server.detections import FRAME_ID_PATTERN
from detectflow.server.endpoints import READ_ERRORS, Operation, PathParam, http, static_files
from detectflow.server.errors import ApiError
from detectflow.server.params import Query
from detectflow.server.state import in_thread, server_state
from detectflow.store.keys import Scope as KeyScope

__all__ = ["CONTENT_SECURITY_POLICY", "frame_endpoints", "page_endpoints"]

_STATIC_PACKAGE = ("detectflow.server", "static")

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""Only our own files run; frames arrive as blob: URLs made from fetched bytes."""

_MEDIA_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


def _index_html() -> str:
    return files(_STATIC_PACKAGE[0]).joinpath(_STATIC_PACKAGE[1], "index.html").read_text("utf-8")


async def index(request: Request) -> Response:
    """The page itself. Its query (``?token=``) is for app.js, so none is refused here."""
    html = await in_thread(_index_html)
    return HTMLResponse(
        html,
        headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


async def frame_image(request: Request) -> Response:
    state = server_state(request)
    Query(request).check()
    frame_id = request.path_params["frame_id"]
    item = await in_thread(state.database.get_queue_item, frame_id)
    if item is None or not item.frame_data:
        raise ApiError(
            404,
            "not_found",
            f"frame {frame_id!r} has no stored image (only queued and failed frames keep theirs)",
        )
    info = image_info(item.frame_data)
    if info is None:
        raise ApiError(
            404, "not_found", f"frame {frame_id!r} is stored but is not a JPEG, PNG or WebP image"
        )
    return Response(
        item.frame_data,
        media_type=_MEDIA_TYPES[info.format],
        headers={"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"},
    )


_MEDIA = "x-content-type"

page_endpoints = [
    http(
        "/",
        Operation(
            "GET",
            "live_page",
            "The live page (HTML; it reads only the public API).",
            None,  # code, no data: the page asks for a key when reads need one
            {200: None},
            index,
            errors=(500,),
            tag="page",
            extra={_MEDIA: ("text/html",)},
        ),
    ),
    static_files(
        "/static",
        StaticFiles(packages=[_STATIC_PACKAGE]),
        Operation(
            "GET",
            "static_file",
            "The live page's scripts and styles.",
            None,
            {200: None},
            errors=(404, 422, 500),
            tag="page",
            extra={_MEDIA: ("text/javascript", "text/css", "text/html")},
        ),
        name="static",
    ),
]
"""At the root of the app: the page and its files."""

frame_endpoints = [
    http(
        "/api/v1/detections/frames/{frame_id}",
        Operation(
            "GET",
            "get_frame_image",
            "A frame's image bytes, when the store kept them (queued and failed frames).",
            KeyScope.READ,
            {200: None},
            frame_image,
            errors=(404, *READ_ERRORS),
            extra={_MEDIA: ("image/jpeg", "image/png", "image/webp")},
        ),
        params=[PathParam("frame_id", valid=FRAME_ID_PATTERN.pattern)],
    ),
]
"""A frame's image, under ``/api/v1/detections`` with the rest of the API."""
