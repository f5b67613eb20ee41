"""The detector behind the DeepStack / CodeProject.AI HTTP dialect.

``POST /v1/vision/detection`` takes ``multipart/form-data`` with the file
``image`` and the optional fields ``min_confidence`` (default 0.40, as in
DeepStack) and ``api_key``; it answers::

    {"success": true, "predictions": [{"label": "face", "confidence": 0.99,
      "x_min": 177, "y_min": 66, "x_max": 272, "y_max": 161}]}

in integer pixels of the submitted image, clamped to it. Failures answer
``{"success": false, "error": "..."}``: 400 for a missing or undecodable
image or a bad ``min_confidence``, 401 for a wrong key, 413 past the size
limit, 500 when detection outlives the timeout (DeepStack's "failed to
process request before timeout"; detectflow retries it). ``GET
/v1/server/status/ping`` answers ``{"success": true}``.

So detectflow's own ``http_api`` adapter with dialect ``deepstack`` (and
Frigate, or anything else speaking DeepStack) can use a real detector.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web
from detectflow import PermanentProviderError, RawDetection

from detectflow_opencv.detector import OpenCVDetector, decode_image

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MIN_CONFIDENCE",
    "DEFAULT_TIMEOUT",
    "DETECTION_PATH",
    "PING_PATH",
    "ServeOptions",
    "make_app",
    "predictions",
    "serve",
]

log = logging.getLogger(__name__)

DETECTION_PATH = "/v1/vision/detection"
PING_PATH = "/v1/server/status/ping"
DEFAULT_MIN_CONFIDENCE = 0.40
DEFAULT_MAX_BYTES = 10 * 1024 * 1024  # detectflow's DETECTFLOW_MAX_FRAME_BYTES default
DEFAULT_TIMEOUT = 60.0  # DeepStack's own request timeout
_CHUNK = 64 * 1024
_FIELD_LIMIT = 1024  # min_confidence and api_key are short strings


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """Limits of one server; the defaults match what DeepStack clients expect."""

    api_key: str | None = None
    max_bytes: int = DEFAULT_MAX_BYTES
    timeout: float = DEFAULT_TIMEOUT
    max_workers: int = 2


class _Refused(Exception):
    """A request answered with ``{"success": false}`` and this status."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


_DETECTOR = web.AppKey("detector", OpenCVDetector)
_OPTIONS = web.AppKey("options", ServeOptions)
_EXECUTOR = web.AppKey("executor", ThreadPoolExecutor)


def _failure(status: int, error: str) -> web.Response:
    return web.json_response({"success": False, "error": error}, status=status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer is DeepStack-shaped JSON, 404s and crashes included."""
    try:
        return await handler(request)
    except _Refused as exc:
        return _failure(exc.status, exc.error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _failure(exc.status, exc.reason)
    except Exception:
        log.exception("detection request failed")
        return _failure(500, "internal error in the OpenCV detector")


async def _ping(request: web.Request) -> web.Response:
    return web.json_response({"success": True})


async def _detection(request: web.Request) -> web.Response:
    app = request.app
    options = app[_OPTIONS]
    fields = await _read_form(request, options.max_bytes)
    _check_key(request, fields, options.api_key)
    image = fields.get("image")
    if not isinstance(image, bytes):
        raise _Refused(400, "no image: send the file in the multipart field 'image'")
    min_confidence = _min_confidence(fields.get("min_confidence"))
    detector = app[_DETECTOR]

    def work() -> tuple[list[RawDetection], int, int]:
        bgr = decode_image(image)
        height, width = bgr.shape[:2]
        return detector.detect_array(bgr), width, height

    loop = asyncio.get_running_loop()
    try:
        found, width, height = await asyncio.wait_for(
            loop.run_in_executor(app[_EXECUTOR], work), options.timeout
        )
    except PermanentProviderError as exc:
        raise _Refused(400, exc.message) from None
    except TimeoutError:
        raise _Refused(500, "failed to process request before timeout") from None
    return web.json_response(
        {"success": True, "predictions": predictions(found, width, height, min_confidence)}
    )


async def _read_form(request: web.Request, max_bytes: int) -> dict[str, bytes | str]:
    """Stream the multipart body with size caps: no temp files, no unbounded reads."""
    if request.content_type != "multipart/form-data":
        raise _Refused(400, "send multipart/form-data with the image in the field 'image'")
    budget = _Budget(max_bytes + _FIELD_LIMIT * 8)  # the image plus a few small fields
    fields: dict[str, bytes | str] = {}
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise _Refused(400, "nested multipart bodies are not supported")
            name = part.name or ""
            if name == "image" or part.filename is not None:
                fields[name] = await _read_part(part, max_bytes, name, budget)
            else:
                raw = await _read_part(part, _FIELD_LIMIT, name, budget)
                fields[name] = raw.decode("utf-8", "replace").strip()
    except _Refused:
        raise
    except Exception as exc:
        # Only the client's bytes are parsed here, so whatever aiohttp raises
        # (ValueError for a bad boundary, its warnings turned errors...) is the
        # client's fault: a 400 that says why, not a 500.
        detail = str(exc) or type(exc).__name__
        raise _Refused(400, f"malformed multipart body: {detail}"[:300]) from None
    return fields


@dataclass
class _Budget:
    left: int


async def _read_part(part: BodyPartReader, limit: int, name: str, budget: _Budget) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(_CHUNK):
        size += len(chunk)
        budget.left -= len(chunk)
        if size > limit:
            raise _Refused(413, f"field {name!r} is larger than {limit} bytes")
        if budget.left < 0:
            raise _Refused(413, "the request body is too large")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_key(request: web.Request, fields: dict[str, Any], api_key: str | None) -> None:
    if api_key is None:
        return
    sent = fields.get("api_key")
    auth = request.headers.get("Authorization", "")
    if not isinstance(sent, str) and auth.startswith("Bearer "):
        sent = auth.removeprefix("Bearer ").strip()
    if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), api_key.encode()):
        raise _Refused(401, "missing or wrong api_key")


def _min_confidence(value: bytes | str | None) -> float:
    if value is None or value == "":
        return DEFAULT_MIN_CONFIDENCE
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        raise _Refused(400, f"min_confidence must be a number in [0, 1], got {value!r}"[:200])
    return number


def predictions(
    found: list[RawDetection], width: int, height: int, min_confidence: float
) -> list[dict[str, Any]]:
    """Pixel ``xywh`` detections as DeepStack predictions: integer corners inside the image."""
    answer: list[dict[str, Any]] = []
    for raw in found:
        if raw.confidence < min_confidence:
            continue
        x, y, w, h = raw.box
        x_min, y_min = _clamp(x, width), _clamp(y, height)
        x_max, y_max = _clamp(x + w, width), _clamp(y + h, height)
        if x_max <= x_min or y_max <= y_min:
            continue  # nothing of it is inside the image
        answer.append(
            {
                "label": raw.label,
                "confidence": raw.confidence,
                "x_min": x_min,
                "y_min": y_min,
                "x_max": x_max,
                "y_max": y_max,
            }
        )
    return answer


def _clamp(value: float, limit: int) -> int:
    return min(limit, max(0, round(value)))


def make_app(
    detector: OpenCVDetector | None = None, options: ServeOptions | None = None
) -> web.Application:
    """The aiohttp application; its thread pool lives and dies with the app."""
    options = options or ServeOptions()
    if options.max_bytes < 1 or options.max_workers < 1 or not options.timeout > 0:
        raise ValueError("max_bytes, max_workers and timeout must be positive")
    app = web.Application(middlewares=[_json_errors])
    app[_DETECTOR] = detector or OpenCVDetector()
    app[_OPTIONS] = options
    # Made here, not at startup: aiohttp deprecates changing a started app.
    # A pool starts no thread before its first task, so an unserved app holds nothing.
    app[_EXECUTOR] = ThreadPoolExecutor(options.max_workers, thread_name_prefix="detectflow-opencv")

    async def stop_pool(app: web.Application) -> None:
        app[_EXECUTOR].shutdown(wait=True, cancel_futures=True)

    app.on_cleanup.append(stop_pool)
    app.router.add_post(DETECTION_PATH, _detection)
    app.router.add_get(PING_PATH, _ping)
    return app


def serve(
    host: str = "127.0.0.1",
    port: int = 5000,
    *,
    detector: OpenCVDetector | None = None,
    options: ServeOptions | None = None,
) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM)."""
    web.run_app(make_app(detector, options), host=host, port=port)
