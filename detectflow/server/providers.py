"""Provider configuration routes: CRUD, the guide's active config, and test-provider.

A config is checked by actually building its adapter through the plugin
registry before it is stored, so an unknown ``provider_type`` or a bad
option (an unknown HTTP dialect, a malformed gRPC URL) is a 422 at write
time rather than a failed frame later; ``endpoint_url`` is required unless
the type declares ``in_process``. ``api_key`` is write-only: responses
carry only ``has_api_key``. Network URLs also pass the SSRF guard
(:mod:`detectflow.adapters.urls`) on every write and every test, so the
server cannot be pointed at a cloud metadata service. The routing options
(``options.cameras``, ``priority``, ``breaker_failures``,
``breaker_cooldown_seconds``: see :mod:`detectflow.core.routing`) are
validated here too.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from detectflow.adapters.probe import probe_provider
from detectflow.adapters.urls import UnsafeProviderUrlError, allow_link_local, check_provider_url
from detectflow.core.errors import DetectflowError
from detectflow.core.ids import new_id
from detectflow.core.models import ProviderConfig, utcnow
from detectflow.core.plugins import PluginRegistry
from detectflow.core.redact import redact_text
from detectflow.core.routing import assignment_errors
from detectflow.core.serialize import provider_to_dict
from detectflow.server.endpoints import BODY_ERRORS, READ_ERRORS, Operation, PathParam, http
from detectflow.server.errors import ApiError, not_found
from detectflow.server.openapi import enveloped, ref
from detectflow.server.params import Body, Query, read_json
from detectflow.server.state import ServerState, in_thread, server_state
from detectflow.store.keys import Scope as KeyScope

__all__ = ["MAX_CONFIG_BYTES", "check_provider_config", "endpoints", "read_provider_fields"]

MAX_CONFIG_BYTES = 64 * 1024
_PROVIDERS = "/api/v1/detections/providers"
_NO_SPACE = re.compile(r"\S+")


def read_provider_fields(body: Body, *, creating: bool) -> dict[str, Any]:
    """The writable fields present in ``body``, validated; required ones only when creating."""
    fields: dict[str, Any] = {}

    def put(name: str, value: Any) -> None:
        if value is not None:
            fields[name] = value

    name = body.text("provider_name", required=creating, min_length=1, max_length=255)
    put("provider_name", name)
    kind = body.text("provider_type", required=creating, min_length=1, max_length=64)
    put("provider_type", kind)
    put(
        "endpoint_url",
        # Required unless the type runs in-process: check_provider_config knows the type.
        body.text("endpoint_url", min_length=1, max_length=2048, pattern=_NO_SPACE),
    )
    if body.has("api_key") and body.data["api_key"] is None:
        fields["api_key"] = None  # null clears the key
    else:
        put("api_key", body.text("api_key", min_length=1, max_length=4096))
    put(
        "timeout_seconds",
        body.number("timeout_seconds", minimum=0.0, maximum=600.0, exclusive_minimum=True),
    )
    put("confidence_threshold", body.number("confidence_threshold", minimum=0.0, maximum=1.0))
    put("max_retries", body.integer("max_retries", minimum=0, maximum=10))
    put("max_faces_per_frame", body.integer("max_faces_per_frame", minimum=1, maximum=1000))
    for flag in (
        "is_active",
        "enable_person_detection",
        "enable_face_detection",
        "enable_face_encoding",
    ):
        put(flag, body.boolean(flag))
    options = body.mapping("options")
    if options is not None:
        dialect = options.get("dialect")
        if dialect is not None and not isinstance(dialect, str):
            body.error("options", "options.dialect must be a string")
        for message in assignment_errors(options):  # cameras, priority, breaker_*
            body.error("options", message)
        fields["options"] = options
    body.check()
    return fields


async def _check_buildable(state: ServerState, config: ProviderConfig) -> None:
    await check_provider_config(state.registry, config, link_local=allow_link_local(state.settings))


async def check_provider_config(
    registry: PluginRegistry, config: ProviderConfig, *, link_local: bool
) -> None:
    """Build (and close) the adapter: the one check that knows every plugin's rules.

    Also used by ``detectflow provider add|update``, so the CLI refuses what the
    API refuses. ``endpoint_url`` may be empty only for an ``in_process`` type.
    """
    types = registry.provider_types()
    if config.provider_type not in types:
        known = sorted(types)
        raise ApiError(
            422,
            "unknown_provider_type",
            f"unknown provider_type {config.provider_type!r}; known types: "
            f"{', '.join(known) or 'none'}",
            {"field": "body.provider_type", "known_types": known},
        )
    if not config.endpoint_url and not types[config.provider_type].in_process:
        raise ApiError(
            422,
            "validation_error",
            "invalid request: body.endpoint_url: is required "
            f"(provider_type {config.provider_type!r} does not run in-process)",
            [{"field": "body.endpoint_url", "message": "is required"}],
        )
    try:
        adapter = registry.create_adapter(config)
    except (DetectflowError, ValueError, TypeError) as exc:
        message = redact_text(getattr(exc, "message", None) or str(exc))
        raise ApiError(422, "invalid_provider_config", message) from None
    await adapter.aclose()
    try:
        await check_provider_url(config.endpoint_url, allow_link_local=link_local)
    except UnsafeProviderUrlError as exc:
        raise ApiError(422, exc.code, exc.message, {"field": "body.endpoint_url"}) from None


async def _read_body(request: Request, *, allow_empty: bool = False) -> Body:
    return Body(await read_json(request, max_bytes=MAX_CONFIG_BYTES, allow_empty=allow_empty))


async def create_provider(request: Request) -> JSONResponse:
    state = server_state(request)
    Query(request).check()
    fields = read_provider_fields(await _read_body(request), creating=True)
    now = utcnow()
    fields.setdefault("endpoint_url", "")  # an in-process type's; refused for the rest
    config = ProviderConfig(id=new_id(), created_at=now, updated_at=now, **fields)
    await _check_buildable(state, config)
    created = await in_thread(state.database.create_provider, config)
    state.routes.invalidate()
    return JSONResponse(
        {"data": provider_to_dict(created)},
        status_code=201,
        headers={"Location": f"{_PROVIDERS}/{created.id}"},
    )


async def list_providers(request: Request) -> JSONResponse:
    state = server_state(request)
    Query(request).check()
    configs = await in_thread(state.database.list_providers)
    return JSONResponse({"data": [provider_to_dict(c) for c in configs]})


async def _get(state: ServerState, provider_id: str) -> ProviderConfig:
    config = None
    if len(provider_id) <= 64:
        config = await in_thread(state.database.get_provider, provider_id)
    if config is None:
        raise not_found("provider", provider_id)
    return config


async def _active(state: ServerState) -> ProviderConfig:
    config = await in_thread(state.database.active_provider)
    if config is None:
        raise ApiError(
            404,
            "no_active_provider",
            "no active detection provider; create one with POST /api/v1/detections/providers",
        )
    return config


async def _read_changes(request: Request) -> dict[str, Any]:
    """The fields an update names, validated before anything is looked up: a bad
    body is a 422 whether or not the provider exists."""
    fields = read_provider_fields(await _read_body(request), creating=False)
    if not fields:
        raise ApiError(422, "validation_error", "request body names no field to change")
    return fields


async def _update(
    state: ServerState, current: ProviderConfig, fields: dict[str, Any]
) -> JSONResponse:
    await _check_buildable(state, replace(current, **fields))
    try:
        updated = await in_thread(state.database.update_provider, current.id, fields)
        state.routes.invalidate()
    except KeyError:
        raise not_found("provider", current.id) from None
    return JSONResponse({"data": provider_to_dict(updated)})


async def get_provider(request: Request) -> JSONResponse:
    state = server_state(request)
    Query(request).check()
    config = await _get(state, request.path_params["provider_id"])
    return JSONResponse({"data": provider_to_dict(config)})


async def update_provider(request: Request) -> JSONResponse:
    state = server_state(request)
    Query(request).check()
    fields = await _read_changes(request)
    current = await _get(state, request.path_params["provider_id"])
    return await _update(state, current, fields)


async def delete_provider(request: Request) -> Response:
    state = server_state(request)
    Query(request).check()
    provider_id = request.path_params["provider_id"]
    if len(provider_id) > 64 or not await in_thread(state.database.delete_provider, provider_id):
        raise not_found("provider", provider_id)
    state.routes.invalidate()
    await state.detector.pool.discard(provider_id)
    return Response(status_code=204)


async def get_active_config(request: Request) -> JSONResponse:
    state = server_state(request)
    Query(request).check()
    return JSONResponse({"data": provider_to_dict(await _active(state))})


async def update_active_config(request: Request) -> JSONResponse:
    state = server_state(request)
    Query(request).check()
    fields = await _read_changes(request)
    return await _update(state, await _active(state), fields)


async def test_provider(request: Request) -> JSONResponse:
    """Round-trip the built-in probe frame and record the outcome on the config."""
    state = server_state(request)
    Query(request).check()
    body = await _read_body(request, allow_empty=True)
    provider_id = body.text("provider_config_id", min_length=1, max_length=64)
    timeout = body.number("timeout_seconds", minimum=0.0, maximum=120.0, exclusive_minimum=True)
    body.check()
    config: ProviderConfig | None
    if provider_id is not None:
        config = await _get(state, provider_id)
    else:
        config = await in_thread(state.database.active_provider)
    if config is None:
        raise ApiError(409, "no_active_provider", "no active detection provider to test")
    result = await probe_provider(
        config,
        open_adapter=state.detector.pool.lease,
        recorder=state.database,
        timeout=timeout,
        allow_link_local=allow_link_local(state.settings),
    )
    data = {
        "success": result.ok,
        "provider_name": config.provider_name,
        "message": result.message,
        "response_time_ms": round(result.response_time_ms),
        "error": result.error,
    }
    return JSONResponse({"data": data})


_PROVIDER_ID = PathParam("provider_id", max_length=64)
_CREATED_ID = "$response.body#/data/id"
_CREATED = {
    "headers": {
        "Location": {
            "description": "The new configuration's URL.",
            "schema": {"type": "string"},
        }
    },
    "links": {
        name: {"operationId": operation_id, "parameters": {"provider_id": _CREATED_ID}}
        for name, operation_id in (
            ("GetProvider", "get_provider"),
            ("UpdateProvider", "update_provider"),
            ("DeleteProvider", "delete_provider"),
        )
    },
}
"""What a 201 says about the configuration it created, for clients and stateful tests."""

endpoints = [
    http(
        _PROVIDERS,
        Operation(
            "GET",
            "list_providers",
            "Every provider configuration (api_key never included).",
            KeyScope.ADMIN,
            {200: enveloped({"type": "array", "items": ref("Provider")})},
            list_providers,
            tag="providers",
        ),
        Operation(
            "POST",
            "create_provider",
            "Create a provider configuration; its adapter is built first, so a bad one is a 422.",
            KeyScope.ADMIN,
            {201: enveloped(ref("Provider"))},
            create_provider,
            errors=BODY_ERRORS,
            body=ref("ProviderCreate"),
            tag="providers",
            response_extras={201: _CREATED},
        ),
    ),
    http(
        _PROVIDERS + "/{provider_id}",
        Operation(
            "GET",
            "get_provider",
            "One provider configuration.",
            KeyScope.ADMIN,
            {200: enveloped(ref("Provider"))},
            get_provider,
            errors=(404, *READ_ERRORS),
            tag="providers",
        ),
        Operation(
            "PUT",
            "update_provider",
            "Change some fields of a provider configuration.",
            KeyScope.ADMIN,
            {200: enveloped(ref("Provider"))},
            update_provider,
            errors=(404, *BODY_ERRORS),
            body=ref("ProviderUpdate"),
            tag="providers",
        ),
        Operation(
            "DELETE",
            "delete_provider",
            "Delete a provider configuration.",
            KeyScope.ADMIN,
            {204: None},
            delete_provider,
            errors=(404, *READ_ERRORS),
            tag="providers",
        ),
        params=[_PROVIDER_ID],
    ),
    http(
        "/api/v1/detections/provider/config",
        Operation(
            "GET",
            "get_active_provider",
            "The active provider configuration (404 when none is active).",
            KeyScope.ADMIN,
            {200: enveloped(ref("Provider"))},
            get_active_config,
            errors=(404, *READ_ERRORS),
            tag="providers",
        ),
        Operation(
            "PUT",
            "update_active_provider",
            "Change some fields of the active provider configuration.",
            KeyScope.ADMIN,
            {200: enveloped(ref("Provider"))},
            update_active_config,
            errors=(404, *BODY_ERRORS),
            body=ref("ProviderUpdate"),
            tag="providers",
        ),
    ),
    http(
        "/api/v1/detections/test-provider",
        Operation(
            "POST",
            "test_provider",
            "Round-trip the built-in probe frame through a provider and record the outcome.",
            KeyScope.ADMIN,
            {200: enveloped(ref("ProviderTest"))},
            test_provider,
            errors=(404, 409, *BODY_ERRORS),
            body=ref("TestProvider"),
            body_required=False,
            tag="providers",
        ),
    ),
]
"""Provider configuration is operator data: every method needs the admin scope."""
