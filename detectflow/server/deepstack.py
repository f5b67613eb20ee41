"""The DeepStack / CodeProject.AI detection API, served by detectflow.

Frigate, Blue Iris, Agent DVR, Home Assistant's image-processing
integrations and many scripts call a detector over DeepStack's HTTP API and
talk to exactly one server. Answering that API lets each of them point at
detectflow instead and gain its providers (routing, retries, failover), its
storage, live view and events, with no change on their side.

A frame posted here takes inline ``send-frame``'s one path,
:func:`~detectflow.server.inline.detect_and_record`, so it is recorded by
the one recorder and shows on ``/live``, the WebSocket and ``/statistics``
like any other. The answer is encoded by the same module that decodes
DeepStack answers for detectflow's own ``http_api`` client
(:mod:`detectflow.adapters._http_dialects`), so both directions agree.

Routes (mounted at the root only when ``DETECTFLOW_DEEPSTACK_API`` is on):

- ``POST /v1/vision/detection``: the configured provider groups.
- ``POST /v1/vision/custom/{model}``: the provider config named ``model``.
- ``GET|POST /v1/status/ping`` and ``/v1/server/status/ping``: the routes
  CodeProject.AI clients (and detectflow's own deepstack client) probe.

Failures answer ``{"success": false, "error": ...}`` with a 4xx/5xx status,
never detectflow's error envelope: DeepStack clients read ``success`` and
``error``. Auth: a detectflow key of write scope, in the ``api_key`` form
field (DeepStack's way) or ``Authorization: Bearer``; the server's
``DETECTFLOW_AUTH_MODE`` decides whether one is required (``required``) or
only checked when sent (``reads-open``, since Blue Iris cannot send one).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive

from detectflow.adapters._http_dialects import (
    DEEPSTACK_DETECT_PATH,
    deepstack_answer,
    deepstack_error,
)
from detectflow.core.errors import InvalidFrameError
from detectflow.core.frames import CAMERA_ID_PATTERN, make_frame
from detectflow.core.models import Frame, FrameResult, RawDetection
from detectflow.core.normalize import pixel_corners
from detectflow.core.routing import RouteTable
from detectflow.core.settings import Settings
from detectflow.server.auth import AuthMode, authenticate, bearer_token
from detectflow.server.endpoints import (
    Endpoint,
    HttpHandler,
    Operation,
    PathParam,
    Schema,
    check_request,
)
from detectflow.server.errors import ApiError
from detectflow.server.inline import detect_and_record
from detectflow.server.params import Query
from detectflow.server.state import ServerState, server_state
from detectflow.store.keys import ApiKey
from detectflow.store.keys import Scope as KeyScope

__all__ = [
    "CAMERA_HEADER",
    "DEFAULT_CAMERA",
    "MODULE_ID",
    "endpoints",
    "mount",
]

log = logging.getLogger(__name__)

DEFAULT_CAMERA = "deepstack"
"""The camera of a frame that names none (NVRs send only the image)."""
CAMERA_HEADER = "X-Camera-Id"
MODULE_ID = "detectflow"

_FORM_OVERHEAD = 64 * 1024
"""Room in a request body beyond the image: boundaries, headers, the small fields."""


class _BodyTooLarge(Exception):
    pass


def _fail(status: int, message: str) -> JSONResponse:
    return JSONResponse(deepstack_error(message, code=status), status_code=status)


def _deepstack_errors(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """Every failure of a gateway route in DeepStack's shape, a 500 included."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            response = _fail(exc.status, exc.message)
            response.headers.update(exc.headers)
            return response
        except HTTPException as exc:  # Starlette's form parser: malformed multipart
            return _fail(exc.status_code, f"malformed multipart form: {exc.detail}")
        except Exception:
            log.exception("DeepStack gateway: unhandled error in %s", request.url.path)
            return _fail(500, "internal server error")

    return wrapped


def _query(request: Request, default_store: bool) -> tuple[str | None, bool]:
    """The camera the request names (``?camera=``, else the ``X-Camera-Id``
    header; None if neither) and whether to record (``?store=``)."""
    query = Query(request)
    camera = query.text("camera", max_length=128, pattern=CAMERA_ID_PATTERN)
    store = query.boolean("store", default=default_store)
    query.check()
    if camera is None:
        camera = request.headers.get(CAMERA_HEADER)
        if camera is not None and not CAMERA_ID_PATTERN.fullmatch(camera):
            raise ApiError(
                400, "bad_request", f"{CAMERA_HEADER} {camera[:64]!r} has characters not allowed"
            )
    return camera, store


def _capped(receive: Receive, limit: int) -> Receive:
    """``receive`` that stops a body (chunked or lying about its length) past ``limit``."""
    total = 0

    async def capped() -> Message:
        nonlocal total
        message = await receive()
        if message["type"] == "http.request":
            total += len(message.get("body", b""))
            if total > limit:
                raise _BodyTooLarge
        return message

    return capped


async def _read_form(request: Request, settings: Settings) -> FormData:
    limit = settings.max_frame_bytes + _FORM_OVERHEAD
    too_large = ApiError(413, "payload_too_large", f"request body is larger than {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"expected a multipart/form-data body with an 'image' file, got {media or 'nothing'!r}",
        )
    capped = Request(request.scope, _capped(request.receive, limit))
    try:
        return await capped.form(max_files=4, max_fields=16)
    except _BodyTooLarge:
        raise too_large from None
    except ClientDisconnect:
        raise ApiError(400, "bad_request", "client disconnected while sending the body") from None


async def _authorize(request: Request, state: ServerState, form: FormData) -> ApiKey | None:
    """A write key from ``api_key`` or ``Authorization``; required only in ``required`` mode."""
    field = form.get("api_key")
    token = field if isinstance(field, str) and field else None
    if token is None:
        token = bearer_token(request.headers.get("authorization"))
    if token is None:
        if AuthMode(state.settings.auth_mode) is AuthMode.REQUIRED:
            raise ApiError(
                401,
                "unauthorized",
                "an API key with the write scope is required: send it in the api_key form "
                "field (create one with `detectflow keys create --scope write`)",
            )
        return None
    key = await authenticate(state, token)
    if not key.scope.allows(KeyScope.WRITE):
        raise ApiError(
            403,
            "forbidden",
            f"API key {key.id} has the {key.scope.value} scope; detecting needs write",
        )
    return key


async def _image(form: FormData) -> bytes:
    field = form.get("image")
    if isinstance(field, UploadFile):
        return await field.read()
    if isinstance(field, str):
        raise ApiError(400, "bad_request", "the 'image' field must be a file, not a text field")
    raise ApiError(400, "bad_request", "no image: send the picture as the 'image' file field")


def _min_confidence(form: FormData) -> float | None:
    raw = form.get("min_confidence")
    if raw is None or raw == "":
        return None
    try:
        value = float(raw) if isinstance(raw, str) else None
    except ValueError:
        value = None
    if value is None or not 0.0 <= value <= 1.0:
        raise ApiError(
            400, "bad_request", f"min_confidence must be a number from 0 to 1, got {raw!r}"
        )
    return value


def _frame(camera: str, image: bytes, settings: Settings) -> Frame:
    """The uploaded image as a frame with its own id: each call is a new sighting,
    even of identical bytes (a still scene), so it is never merged with another."""
    try:
        frame = make_frame(
            camera, image, max_bytes=settings.max_frame_bytes, frame_id=uuid.uuid4().hex
        )
    except InvalidFrameError as exc:
        status = 413 if len(image) > settings.max_frame_bytes else 400
        raise ApiError(status, "invalid_frame", str(exc)) from None
    if not frame.width or not frame.height:
        raise ApiError(400, "invalid_frame", "the image's width and height cannot be read")
    return frame


def _predictions(result: FrameResult, min_confidence: float | None) -> list[RawDetection]:
    """The stored detections back as the provider's labels in pixels of the upload."""
    frame = result.frame
    assert frame.width and frame.height  # checked by _frame
    return [
        RawDetection(
            label=d.label,
            confidence=d.confidence,
            box=pixel_corners(d.bbox, frame.width, frame.height),
            box_format="xyxy",
            units="pixel",
            person_name=d.person_name,
        )
        for d in result.detections
        if min_confidence is None or d.confidence >= min_confidence
    ]


async def _detect(request: Request, routes: RouteTable | None, command: str) -> Response:
    started = time.perf_counter()
    state = server_state(request)
    settings = state.settings
    named, store = _query(request, settings.deepstack_store)
    form = await _read_form(request, settings)
    try:
        key = await _authorize(request, state, form)
        image = await _image(form)
        min_confidence = _min_confidence(form)
    finally:
        await form.close()
    # the camera named, else the key's, else DEFAULT_CAMERA
    camera = named or (key.camera_id if key is not None else None) or DEFAULT_CAMERA
    frame = _frame(camera, image, settings)
    result = await detect_and_record(state, frame, routes=routes, record=store)
    if result is None:
        raise ApiError(
            503,
            "no_active_provider",
            "no detection provider serves this camera: activate one with "
            "`detectflow provider create ... --active`",
        )
    if not result.ok:
        raise ApiError(502, "provider_failed", f"detection failed: {result.error}")
    predictions = _predictions(result, min_confidence)
    elapsed = int((time.perf_counter() - started) * 1000)
    body = deepstack_answer(
        predictions,
        message=f"Found {len(predictions)} object(s)",
        inferenceMs=result.processing_time_ms,
        processMs=result.processing_time_ms,
        analysisRoundTripMs=elapsed,
        moduleId=MODULE_ID,
        moduleName="detectflow",
        command=command,
        requestId=frame.frame_id,
        code=200,
    )
    return JSONResponse(body)


async def vision_detection(request: Request) -> Response:
    """Detect with the provider group serving the camera, as DeepStack's object detection."""
    return await _detect(request, None, "detect")


async def vision_custom(request: Request) -> Response:
    """Detect with the provider config named by the model (active or not: it was named)."""
    model = request.path_params["model"]
    config = await server_state(request).routes.named(model)
    if config is None:
        raise ApiError(404, "not_found", f"no provider config named {model[:128]!r}")
    return await _detect(request, RouteTable.single(config), "custom")


async def status_ping(request: Request) -> Response:
    """CodeProject.AI's liveness probe: this server answers DeepStack requests."""
    return JSONResponse({"success": True, "code": 200, "moduleId": MODULE_ID})


_PREDICTION: Schema = {
    "type": "object",
    "required": ["label", "confidence", "x_min", "y_min", "x_max", "y_max"],
    "properties": {
        "label": {"type": "string", "description": "the provider's own label"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        **{c: {"type": "integer"} for c in ("x_min", "y_min", "x_max", "y_max")},
    },
}
_ANSWER: Schema = {
    "type": "object",
    "required": ["success", "predictions", "count"],
    "properties": {
        "success": {"const": True},
        "predictions": {"type": "array", "items": _PREDICTION},
        "count": {"type": "integer"},
        "message": {"type": "string"},
        "inferenceMs": {"type": "integer"},
        "processMs": {"type": "integer"},
        "analysisRoundTripMs": {"type": "integer"},
        "moduleId": {"type": "string"},
        "command": {"type": "string"},
        "requestId": {"type": "string", "description": "the stored frame's id"},
    },
}
_FAILURE: Schema = {
    "type": "object",
    "required": ["success", "error"],
    "properties": {"success": {"const": False}, "error": {"type": "string"}},
}
_DETECT_ERRORS = {
    400: "No image, not an image, a malformed form or parameter",
    401: "No key where one is required, or a wrong key",
    403: "The key has no write scope",
    404: "No provider config of that name",
    405: "Another method",
    413: "The upload is larger than DETECTFLOW_MAX_FRAME_BYTES",
    415: "Not a multipart form",
    422: "Control characters in the path or query",
    500: "An error of ours",
    502: "The providers failed after their retries",
    503: "No provider serves the camera",
}


def _detect_operation(
    operation_id: str, summary: str, handler: HttpHandler, *, custom: bool
) -> Operation:
    """DeepStack's multipart request and answers, which are not the API's JSON ones."""
    errors = {s: d for s, d in _DETECT_ERRORS.items() if custom or s != 404}
    query = [
        {
            "name": "camera",
            "in": "query",
            "schema": {"type": "string", "maxLength": 128},
            "description": (
                "the camera id (else the X-Camera-Id header, else the camera the API "
                "key is bound to, else deepstack)"
            ),
        },
        {
            "name": "store",
            "in": "query",
            "schema": {"type": "string", "enum": ["0", "1"]},
            "description": "0: only detect, record nothing",
        },
    ]
    return Operation(
        "POST",
        operation_id,
        summary + " A write key goes in the api_key form field or as a bearer token; "
        "it is required in the 'required' auth mode and checked whenever sent.",
        KeyScope.WRITE,
        {200: _ANSWER},
        handler,
        tag="deepstack",
        parameters=query,
        extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["image"],
                            "properties": {
                                "image": {"type": "string", "format": "binary"},
                                "min_confidence": {"type": "number", "minimum": 0, "maximum": 1},
                                "api_key": {"type": "string"},
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "DeepStack's answer",
                    "content": {"application/json": {"schema": _ANSWER}},
                },
                **{
                    str(status): {
                        "description": words,
                        "content": {"application/json": {"schema": _FAILURE}},
                    }
                    for status, words in errors.items()
                },
            },
        },
    )


def _gateway(path: str, *operations: Operation, params: tuple[PathParam, ...] = ()) -> Endpoint:
    """An endpoint declared like every other (path, operations, scope, document), whose
    route answers every failure in DeepStack's shape: a wrong method too (a 405 naming
    the allowed ones), and the boundary's checks. Auth happens in the handler, since
    DeepStack clients send the key in the form body."""
    by_method = {op.method: op for op in operations}
    allowed = ", ".join(by_method)

    @_deepstack_errors
    async def endpoint(request: Request) -> Response:
        op = by_method.get(request.method if request.method != "HEAD" else "GET")
        if op is None or op.handler is None:
            raise ApiError(
                405,
                "method_not_allowed",
                f"method {request.method} not allowed on {request.url.path}; allowed: {allowed}",
                headers={"Allow": allowed},
            )
        check_request(request, params)
        return await op.handler(request)

    # Every method reaches the endpoint, which refuses the wrong ones itself.
    route = Route(path, endpoint, methods=_ANY_METHOD, name=operations[0].operation_id)
    return Endpoint(path, operations, params, route)


_ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _ping(method: str, name: str) -> Operation:
    return Operation(
        method,
        f"deepstack_{name}_ping_{method.lower()}",
        "CodeProject.AI's liveness probe.",
        None,
        {200: {"type": "object", "properties": {"success": {"const": True}}}},
        status_ping,
        errors=(),
        tag="deepstack",
    )


endpoints: tuple[Endpoint, ...] = (
    _gateway(
        DEEPSTACK_DETECT_PATH,
        _detect_operation(
            "deepstack_detect", "Detect objects, DeepStack's way.", vision_detection, custom=False
        ),
    ),
    _gateway(
        "/v1/vision/custom/{model}",
        _detect_operation(
            "deepstack_custom",
            "Detect with the provider config named by the model (active or not).",
            vision_custom,
            custom=True,
        ),
        params=(PathParam("model", max_length=255, description="a provider config's name"),),
    ),
    _gateway("/v1/status/ping", _ping("GET", "status"), _ping("POST", "status")),
    _gateway(
        "/v1/server/status/ping", _ping("GET", "server_status"), _ping("POST", "server_status")
    ),
)
"""The gateway, declared once: routes, scopes and its part of ``/openapi.json``."""


def mount(settings: Settings) -> tuple[Endpoint, ...]:
    """The gateway's endpoints when ``settings.deepstack_api`` is on, else none."""
    return endpoints if settings.deepstack_api else ()
