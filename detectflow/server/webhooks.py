"""Webhook subscriptions: CRUD and each one's deliveries (admin scope).

A subscription names a URL, the event types it wants (default: the object
events) and the cameras (default: all). Its URL passes the SSRF guard of
provider URLs (:mod:`detectflow.adapters.urls`) on every write, and only
``http``/``https`` URLs are taken. The secret that signs deliveries is
write-only: given or generated at creation, it is shown once, in the 201,
and never again (``has_secret``).
"""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from detectflow.adapters.urls import UnsafeProviderUrlError, allow_link_local, check_provider_url
from detectflow.core.frames import CAMERA_ID_PATTERN
from detectflow.core.ids import new_id
from detectflow.core.models import EventType, utcnow
from detectflow.core.object_events import OBJECT_ENDED, OBJECT_STARTED, OBJECT_UPDATED
from detectflow.core.serialize import isoformat
from detectflow.server.detections import page_meta
from detectflow.server.endpoints import BODY_ERRORS, READ_ERRORS, Operation, PathParam, http
from detectflow.server.errors import ApiError, not_found
from detectflow.server.openapi import LIMIT, OFFSET, enveloped, nullable, paged, query
from detectflow.server.params import MAX_OFFSET, Body, Query, read_json
from detectflow.server.state import ServerState, in_thread, server_state
from detectflow.store.keys import Scope as KeyScope
from detectflow.store.webhooks import DELIVERY_STATUSES, Delivery, Webhook

__all__ = ["EVENT_TYPES", "endpoints", "webhook_to_dict"]

EVENT_TYPES = (OBJECT_STARTED, OBJECT_UPDATED, OBJECT_ENDED, *(str(t) for t in EventType))
"""What a subscription may ask for: object events and the per-frame event types."""
_DEFAULT_EVENT_TYPES = [OBJECT_STARTED, OBJECT_UPDATED, OBJECT_ENDED]
_MAX_BODY = 64 * 1024
_MAX_CAMERAS = 256
_NO_SPACE = re.compile(r"\S+")
_SECRET = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces
_WEBHOOKS = "/api/v1/webhooks"


def webhook_to_dict(w: Webhook) -> dict[str, Any]:
    return {
        "id": w.id,
        "url": w.url,
        "event_types": list(w.event_types),
        "cameras": list(w.cameras),
        "enabled": w.enabled,
        "has_secret": bool(w.secret),
        "createdAt": isoformat(w.created_at),
        "updatedAt": isoformat(w.updated_at),
    }


def delivery_to_dict(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "webhook_id": d.webhook_id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "status": d.status,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "response_code": d.response_code,
        "next_attempt_at": isoformat(d.next_attempt_at),
        "delivered_at": isoformat(d.delivered_at),
        "createdAt": isoformat(d.created_at),
        "updatedAt": isoformat(d.updated_at),
    }


def _strings(body: Body, name: str, *, allowed: Any, max_items: int, what: str) -> list[str] | None:
    """A JSON array of distinct strings, each accepted by ``allowed``."""
    if not body.has(name):
        return None
    value = body.data[name]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        body.error(name, "must be an array of strings")
        return None
    if len(value) > max_items:
        body.error(name, f"must have at most {max_items} items")
        return None
    bad = [v for v in value if not allowed(v)]
    if bad:
        body.error(name, f"unknown {what}: {', '.join(repr(v[:64]) for v in bad[:5])}")
        return None
    return list(dict.fromkeys(value))


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        _ = parts.port  # a malformed port raises here
    except ValueError:  # "http://[x/": an unclosed IPv6 bracket
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _read_fields(body: Body, *, creating: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    url = body.text("url", required=creating, min_length=1, max_length=2048, pattern=_NO_SPACE)
    if url is not None:
        if _is_http_url(url):
            fields["url"] = url
        else:
            body.error("url", "must be an http:// or https:// URL with a host")
    event_types = _strings(
        body, "event_types", allowed=EVENT_TYPES.__contains__, max_items=32, what="event type(s)"
    )
    if event_types is not None:
        if not event_types:
            body.error("event_types", "must name at least one event type")
        fields["event_types"] = event_types
    cameras = _strings(
        body,
        "cameras",
        allowed=lambda v: CAMERA_ID_PATTERN.fullmatch(v) is not None,
        max_items=_MAX_CAMERAS,
        what="camera id(s)",
    )
    if cameras is not None:
        fields["cameras"] = cameras
    secret = body.text("secret", min_length=16, max_length=256, pattern=_SECRET)
    if secret is not None:
        fields["secret"] = secret
    enabled = body.boolean("enabled")
    if enabled is not None:
        fields["enabled"] = enabled
    body.check()
    return fields


async def _check_url(state: ServerState, url: str) -> None:
    try:
        await check_provider_url(url, allow_link_local=allow_link_local(state.settings))
    except UnsafeProviderUrlError as exc:
        raise ApiError(422, exc.code, exc.message, {"field": "body.url"}) from None


async def _body(request: Request, *, creating: bool) -> dict[str, Any]:
    data = await read_json(request, max_bytes=_MAX_BODY)
    return _read_fields(Body(data), creating=creating)


async def create_webhook(request: Request) -> JSONResponse:
    state = server_state(request)
    Query(request).check()
    fields = await _body(request, creating=True)
    await _check_url(state, fields["url"])
    now = utcnow()
    secret = fields.get("secret") or secrets.token_urlsafe(32)
    webhook = Webhook(
        id=new_id(),
        url=fields["url"],
        event_types=tuple(fields.get("event_types", _DEFAULT_EVENT_TYPES)),
        cameras=tuple(fields.get("cameras", ())),
        secret=secret,
        enabled=fields.get("enabled", True),
        created_at=now,
        updated_at=now,
    )
    created = await in_thread(state.database.create_webhook, webhook)
    return JSONResponse(
        {"data": {**webhook_to_dict(created), "secret": secret}},
        status_code=201,
        headers={"Location": f"{_WEBHOOKS}/{created.id}"},
    )


async def list_webhooks(request: Request) -> JSONResponse:
    state = server_state(request)
    Query(request).check()
    found = await in_thread(state.database.list_webhooks)
    return JSONResponse({"data": [webhook_to_dict(w) for w in found]})


async def _get(state: ServerState, webhook_id: str) -> Webhook:
    found = await in_thread(state.database.get_webhook, webhook_id)
    if found is None:
        raise not_found("webhook", webhook_id)
    return found


async def get_webhook(request: Request) -> JSONResponse:
    state = server_state(request)
    Query(request).check()
    return JSONResponse({"data": webhook_to_dict(await _get(state, request.path_params["id"]))})


async def update_webhook(request: Request) -> JSONResponse:
    state = server_state(request)
    Query(request).check()
    fields = await _body(request, creating=False)  # a bad body is a 422, found or not
    if not fields:
        raise ApiError(422, "validation_error", "request body names no field to change")
    if "url" in fields:
        await _check_url(state, fields["url"])
    try:
        updated = await in_thread(state.database.update_webhook, request.path_params["id"], fields)
    except KeyError:
        raise not_found("webhook", request.path_params["id"]) from None
    return JSONResponse({"data": webhook_to_dict(updated)})


async def delete_webhook(request: Request) -> Response:
    state = server_state(request)
    Query(request).check()
    if not await in_thread(state.database.delete_webhook, request.path_params["id"]):
        raise not_found("webhook", request.path_params["id"])
    return Response(status_code=204)


async def list_deliveries(request: Request) -> JSONResponse:
    state = server_state(request)
    q = Query(request)
    status = q.choice("status", DELIVERY_STATUSES)
    limit = q.integer("limit", default=100, minimum=1, maximum=1000)
    offset = q.integer("offset", default=0, minimum=0, maximum=MAX_OFFSET)
    q.check()
    webhook = await _get(state, request.path_params["id"])
    found, total = await in_thread(
        state.database.list_webhook_deliveries,
        webhook.id,
        status=status,
        limit=limit,
        offset=offset,
    )
    return JSONResponse(
        {"data": [delivery_to_dict(d) for d in found], "meta": page_meta(limit, offset, total)}
    )


# -- the contract ---------------------------------------------------------------

_STRING = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}
_EVENT_TYPES = {
    "type": "array",
    "maxItems": 32,
    "items": {"type": "string", "enum": list(EVENT_TYPES)},
}
_CAMERAS = {
    "type": "array",
    "maxItems": _MAX_CAMERAS,
    "items": {"type": "string", "pattern": f"^{CAMERA_ID_PATTERN.pattern}$"},
    "description": "Empty: every camera.",
}
_WRITABLE = {
    "url": {
        "type": "string",
        "minLength": 1,
        "maxLength": 2048,
        "pattern": "^(http|https)://\\S+$",
        "description": "Refused when its host is link-local or a cloud metadata address.",
    },
    "event_types": {**_EVENT_TYPES, "minItems": 1},
    "cameras": _CAMERAS,
    "secret": {
        "type": "string",
        "minLength": 16,
        "maxLength": 256,
        "pattern": "^[\\x21-\\x7e]+$",
        "description": "Signs deliveries (write-only; generated when not given).",
    },
    "enabled": {"type": "boolean"},
}
_WEBHOOK_PROPERTIES = {
    "id": _STRING,
    "url": _STRING,
    "event_types": _EVENT_TYPES,
    "cameras": _CAMERAS,
    "enabled": {"type": "boolean"},
    "has_secret": {"type": "boolean"},
    "createdAt": _TIME,
    "updatedAt": _TIME,
}


def _closed(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": False,
    }


_WEBHOOK = _closed(_WEBHOOK_PROPERTIES, list(_WEBHOOK_PROPERTIES))
_CREATED_WEBHOOK = _closed(
    {**_WEBHOOK_PROPERTIES, "secret": {**_STRING, "description": "Shown this once."}},
    [*_WEBHOOK_PROPERTIES, "secret"],
)
_DELIVERY_PROPERTIES = {
    "id": _STRING,
    "webhook_id": _STRING,
    "event_id": _STRING,
    "event_type": _STRING,
    "status": {"type": "string", "enum": list(DELIVERY_STATUSES)},
    "attempts": {"type": "integer", "minimum": 0},
    "last_error": nullable(_STRING),
    "response_code": nullable({"type": "integer"}),
    "next_attempt_at": nullable(_TIME),
    "delivered_at": nullable(_TIME),
    "createdAt": _TIME,
    "updatedAt": _TIME,
}
_DELIVERY = _closed(_DELIVERY_PROPERTIES, list(_DELIVERY_PROPERTIES))
_ID = PathParam("id", max_length=64, description="The webhook's id.")

endpoints = [
    http(
        _WEBHOOKS,
        Operation(
            "GET",
            "list_webhooks",
            "Every webhook subscription (secrets never included).",
            KeyScope.ADMIN,
            {200: enveloped({"type": "array", "items": _WEBHOOK})},
            list_webhooks,
            tag="webhooks",
        ),
        Operation(
            "POST",
            "create_webhook",
            "Subscribe a URL to events; the 201 shows the signing secret, once.",
            KeyScope.ADMIN,
            {201: enveloped(_CREATED_WEBHOOK)},
            create_webhook,
            errors=BODY_ERRORS,
            body=_closed(_WRITABLE, ["url"]),
            tag="webhooks",
        ),
    ),
    http(
        _WEBHOOKS + "/{id}",
        Operation(
            "GET",
            "get_webhook",
            "One webhook subscription.",
            KeyScope.ADMIN,
            {200: enveloped(_WEBHOOK)},
            get_webhook,
            errors=(404, *READ_ERRORS),
            tag="webhooks",
        ),
        Operation(
            "PUT",
            "update_webhook",
            "Change some fields of a webhook subscription.",
            KeyScope.ADMIN,
            {200: enveloped(_WEBHOOK)},
            update_webhook,
            errors=(404, *BODY_ERRORS),
            body={**_closed(_WRITABLE, []), "minProperties": 1},
            tag="webhooks",
        ),
        Operation(
            "DELETE",
            "delete_webhook",
            "Delete a webhook subscription and its deliveries.",
            KeyScope.ADMIN,
            {204: None},
            delete_webhook,
            errors=(404, *READ_ERRORS),
            tag="webhooks",
        ),
        params=[_ID],
    ),
    http(
        _WEBHOOKS + "/{id}/deliveries",
        Operation(
            "GET",
            "list_webhook_deliveries",
            "A webhook's deliveries, newest first, with their outcomes.",
            KeyScope.ADMIN,
            {200: paged(_DELIVERY)},
            list_deliveries,
            errors=(404, *READ_ERRORS),
            parameters=[
                query("status", {"type": "string", "enum": list(DELIVERY_STATUSES)}),
                LIMIT,
                OFFSET,
            ],
            tag="webhooks",
        ),
        params=[_ID],
    ),
]
"""Webhooks are operator data (a URL the server will call): admin scope throughout."""
