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
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from detectflow.core.images import image_info
from detectflow.server.detections import FRAME_ID_PATTERN
from detectflow.server.errors import ApiError
from detectflow.server.params import Query
from detectflow.server.state import in_thread, server_state

__all__ = ["CONTENT_SECURITY_POLICY", "frame_routes", "page_routes"]

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
    if not FRAME_ID_PATTERN.fullmatch(frame_id):
        raise ApiError(
            422, "validation_error", "frame_id must be 1-128 of the characters A-Z a-z 0-9 _ . : -"
        )
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


page_routes: list[BaseRoute] = [
    Route("/", index, methods=["GET"]),
    Mount("/static", app=StaticFiles(packages=[_STATIC_PACKAGE]), name="static"),
]
"""At the root of the app: the page and its files."""

frame_routes: list[BaseRoute] = [
    Route("/frames/{frame_id}", frame_image, methods=["GET"]),
]
"""Under ``/api/v1/detections``, before the ``/{detection_id}`` catch-all."""
