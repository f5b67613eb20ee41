"""Camera configuration routes: ``/api/v1/cameras`` list, create, get, update, delete.

Every write goes through :func:`read_camera_fields`, which the CLI and the
fleet-file import use too, so all three refuse the same things with the same
field paths: an id that cannot be a topic or a path, a URL the video source
cannot read, an fps outside (0, 60], and zones, masks, lines or filters in
``options`` that :meth:`~detectflow.core.object_config.ObjectsConfig.from_options`
refuses (``body.options.zones.dock.polygon: ...``).

Credentials go in the URL (``rtsp://user:pass@host/...``) and nowhere else:
the URL is stored encrypted and answered only as ``display_url``, password
replaced by ``***``. So options named like credentials are refused (they
would be stored and shown in the clear), and so is a URL whose password is
``***``: that is a displayed URL sent back, and storing it would lose the
real password. ``options`` holds no ``null`` either, because the fleet file
(TOML) cannot say it; leaving a key out means the same.

Reads need the read scope; changes need admin, as provider configuration
does: a camera's URL carries its credentials.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from detectflow.core.cameras import (
    Camera,
    check_camera_id,
    check_camera_url,
    check_fps,
    has_masked_secret,
)
from detectflow.core.models import utcnow
from detectflow.core.object_config import ObjectsConfig
from detectflow.core.redact import REDACTED, SECRET_PARAMETERS
from detectflow.core.serialize import camera_to_dict
from detectflow.server.detections import page_meta
from detectflow.server.endpoints import BODY_ERRORS, READ_ERRORS, Operation, PathParam, http
from detectflow.server.errors import ApiError, not_found
from detectflow.server.openapi import LIMIT, OFFSET, enveloped, paged, query, ref
from detectflow.server.params import MAX_OFFSET, Body, Query, read_json
from detectflow.server.state import ServerState, in_thread, server_state
from detectflow.store.cameras import CameraExistsError
from detectflow.store.keys import Scope as KeyScope

__all__ = [
    "CAMERAS",
    "MAX_CAMERA_BYTES",
    "RESERVED_CAMERA_IDS",
    "check_camera_provider",
    "endpoints",
    "read_camera_fields",
]

CAMERAS = "/api/v1/cameras"
MAX_CAMERA_BYTES = 256 * 1024
"""A camera with many zones is a few KB; this leaves room without inviting abuse."""
RESERVED_CAMERA_IDS = frozenset({"status"})
"""``/api/v1/cameras/status`` is every camera's status, so no camera may be called that."""
_NO_SPACE = re.compile(r"\S+")
_SECRET_OPTIONS = frozenset(SECRET_PARAMETERS) | {"username", "user", "credentials"}


def read_camera_fields(body: Body, *, creating: bool) -> dict[str, Any]:
    """The writable fields present in ``body``, validated; ``id`` only when creating
    (an id never changes: it is every other table's camera_id)."""
    fields: dict[str, Any] = {}
    if creating:
        camera_id = body.text("id", required=True, min_length=1, max_length=128)
        if camera_id is not None:
            _check(body, "id", check_camera_id, camera_id, fields)
            if camera_id in RESERVED_CAMERA_IDS:
                body.error("id", f"{camera_id!r} is reserved ({CAMERAS}/{camera_id})")
    name = body.text("name", max_length=255)
    if name is not None:
        fields["name"] = name
    if body.has("url") and body.data["url"] is None:
        fields["url"] = None  # a camera fed through the API, Redis or MQTT
    else:
        url = body.text("url", min_length=1, max_length=2048, pattern=_NO_SPACE)
        checked = url is not None and _check(body, "url", check_camera_url, url, fields)
        if checked and url is not None and has_masked_secret(url):
            body.error(
                "url",
                f"holds {REDACTED} for a credential, the masked form display_url shows; "
                "send the real one (it is stored encrypted)",
            )
    enabled = body.boolean("enabled")
    if enabled is not None:
        fields["enabled"] = enabled
    fps = body.number("fps")
    if fps is not None:
        _check(body, "fps", check_fps, fps, fields)
    if body.has("provider") and body.data["provider"] is None:
        fields["provider"] = None  # the routing rules choose
    else:
        provider = body.text("provider", min_length=1, max_length=64)
        if provider is not None:
            fields["provider"] = provider
    options = body.mapping("options")
    if options is not None:
        for path, message in options_errors(options):
            body.error(f"options.{path}" if path else "options", message)
        fields["options"] = options
    body.check()
    return fields


def _check(body: Body, name: str, check: Any, value: Any, fields: dict[str, Any]) -> bool:
    """Run a core check; its ValueError becomes the field's error."""
    try:
        fields[name] = check(value)
    except ValueError as exc:
        body.error(name, str(exc))
        return False
    return True


def options_errors(options: dict[str, Any]) -> list[tuple[str, str]]:
    """(path inside options, message) for everything wrong with ``options``."""
    errors: list[tuple[str, str]] = []
    for key in options:
        if key.lower() in _SECRET_OPTIONS:
            errors.append(
                (
                    key,
                    "credentials go in the url (rtsp://user:pass@host/...), which is stored "
                    "encrypted; options are shown as they are",
                )
            )
    errors.extend((path, "must not be null (leave the key out)") for path in _nulls(options, ""))
    try:
        ObjectsConfig.from_options(options)
    except ValueError as exc:
        path, sep, message = str(exc).partition(": ")
        errors.append((path, message) if sep else ("", str(exc)))
    return errors


def _nulls(value: Any, path: str) -> list[str]:
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nulls(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nulls(v, f"{path}[{i}]")]
    return []


async def check_camera_provider(state: ServerState, fields: dict[str, Any]) -> None:
    """A 422 when ``provider`` names no provider config (a typo would otherwise
    route the camera by the rules, silently)."""
    provider = fields.get("provider")
    if provider is not None and await in_thread(state.database.get_provider, provider) is None:
        raise ApiError(
            422,
            "validation_error",
            f"invalid request: body.provider: no provider config with id {provider!r}",
            [{"field": "body.provider", "message": f"no provider config with id {provider!r}"}],
        )


async def _read_body(request: Request) -> Body:
    return Body(await read_json(request, max_bytes=MAX_CAMERA_BYTES))


async def list_cameras(request: Request) -> JSONResponse:
    state = server_state(request)
    query_params = Query(request)
    limit = query_params.integer("limit", default=100, minimum=1, maximum=1000)
    offset = query_params.integer("offset", default=0, minimum=0, maximum=MAX_OFFSET)
    enabled = query_params.choice("enabled", ("true", "false"))
    query_params.check()
    cameras, total = await in_thread(
        state.database.page_cameras,
        limit=limit,
        offset=offset,
        enabled=None if enabled is None else enabled == "true",
    )
    return JSONResponse(
        {"data": [camera_to_dict(c) for c in cameras], "meta": page_meta(limit, offset, total)}
    )


async def create_camera(request: Request) -> JSONResponse:
    state = server_state(request)
    Query(request).check()
    fields = read_camera_fields(await _read_body(request), creating=True)
    await check_camera_provider(state, fields)
    now = utcnow()
    camera = Camera(created_at=now, updated_at=now, **fields)
    try:
        created = await in_thread(state.database.create_camera, camera)
    except CameraExistsError as exc:
        raise ApiError(409, "camera_exists", str(exc), {"field": "body.id"}) from None
    return JSONResponse(
        {"data": camera_to_dict(created)},
        status_code=201,
        headers={"Location": f"{CAMERAS}/{created.id}"},
    )


async def find_camera(state: ServerState, camera_id: str) -> Camera:
    camera = await in_thread(state.database.get_camera, camera_id)
    if camera is None:
        raise not_found("camera", camera_id)
    return camera


async def get_camera(request: Request) -> JSONResponse:
    state = server_state(request)
    Query(request).check()
    camera = await find_camera(state, request.path_params["camera_id"])
    return JSONResponse({"data": camera_to_dict(camera)})


async def update_camera(request: Request) -> JSONResponse:
    """The fields given change, the rest stay (as the provider routes' PUT)."""
    state = server_state(request)
    Query(request).check()
    fields = read_camera_fields(await _read_body(request), creating=False)
    if not fields:
        raise ApiError(422, "validation_error", "request body names no field to change")
    await check_camera_provider(state, fields)
    camera_id = request.path_params["camera_id"]
    try:
        updated = await in_thread(state.database.update_camera, camera_id, fields)
    except KeyError:
        raise not_found("camera", camera_id) from None
    return JSONResponse({"data": camera_to_dict(updated)})


async def delete_camera(request: Request) -> Response:
    state = server_state(request)
    Query(request).check()
    camera_id = request.path_params["camera_id"]
    if not await in_thread(state.database.delete_camera, camera_id):
        raise not_found("camera", camera_id)
    return Response(status_code=204)


CAMERA_ID_PARAM = PathParam(
    "camera_id",
    pattern="[A-Za-z0-9_.:-]+",
    max_length=128,
    description="The camera's id (the camera_id of its detections and events); "
    "'status' is reserved.",
)
_CREATED = {
    "headers": {"Location": {"description": "The new camera's URL.", "schema": {"type": "string"}}},
    "links": {
        name: {
            "operationId": operation_id,
            "parameters": {"camera_id": "$response.body#/data/id"},
        }
        for name, operation_id in (
            ("GetCamera", "get_camera"),
            ("UpdateCamera", "update_camera"),
            ("DeleteCamera", "delete_camera"),
        )
    },
}

endpoints = [
    http(
        CAMERAS,
        Operation(
            "GET",
            "list_cameras",
            "Configured cameras by id, paged (URLs as display_url, passwords masked).",
            KeyScope.READ,
            {200: paged(ref("Camera"))},
            list_cameras,
            parameters=(
                LIMIT,
                OFFSET,
                query("enabled", {"type": "string", "enum": ["", "true", "false"]}),
            ),
            tag="cameras",
        ),
        Operation(
            "POST",
            "create_camera",
            "Add a camera; 409 when its id is taken.",
            KeyScope.ADMIN,
            {201: enveloped(ref("Camera"))},
            create_camera,
            errors=(409, *BODY_ERRORS),
            body=ref("CameraCreate"),
            tag="cameras",
            response_extras={201: _CREATED},
        ),
    ),
    http(
        CAMERAS + "/{camera_id}",
        Operation(
            "GET",
            "get_camera",
            "One camera.",
            KeyScope.READ,
            {200: enveloped(ref("Camera"))},
            get_camera,
            errors=(404, *READ_ERRORS),
            tag="cameras",
        ),
        Operation(
            "PUT",
            "update_camera",
            "Change the fields given; the others stay.",
            KeyScope.ADMIN,
            {200: enveloped(ref("Camera"))},
            update_camera,
            errors=(404, *BODY_ERRORS),
            body=ref("CameraUpdate"),
            tag="cameras",
        ),
        Operation(
            "DELETE",
            "delete_camera",
            "Delete a camera (its detections stay).",
            KeyScope.ADMIN,
            {204: None},
            delete_camera,
            errors=(404, *READ_ERRORS),
            tag="cameras",
        ),
        params=[CAMERA_ID_PARAM],
    ),
]
