"""API-key auth for REST and the WebSocket.

Keys (``dfk_<id>_<secret>``, see :mod:`detectflow.store.keys`) carry a scope:
read < write < admin. What each request needs:

=========================================================  =========
``GET /api/v1/health``                                     none (load balancers)
``/api/v1/detections/providers...``, ``/provider/config``,  admin
``POST /test-provider`` (any method: provider config is
operator data)
``POST /api/v1/detections/send-frame``                     write
any other ``GET``/``HEAD``/``OPTIONS`` under ``/api/``     read
any other method under ``/api/``                           write
anything outside ``/api/`` (``/metrics``,                  none for reads,
``/openapi.json``, the live page and its static files)     write otherwise
=========================================================  =========

Unknown API routes fall into the last two rows, so a route added later is
never open for writing by accident. ``DETECTFLOW_AUTH_MODE`` decides only
whether *read* routes need a key: ``reads-open`` (the default: the demo and
curl work without one) or ``required``. Writes and provider config always
need a key. A key that is presented is always checked, even where none is
needed: a client sending a wrong key wants to hear about it.

REST takes ``Authorization: Bearer <key>`` only: keys in URLs end up in
access logs. Browsers cannot set headers on a WebSocket, so it also takes
``?token=<key>`` or a first message ``{"type": "auth", "token": "<key>"}``;
without a valid key where one is needed the server sends
``{"type": "error", "code": "unauthorized", "message"}`` and closes with code
4401 (4000 + the HTTP status, a common convention for application closes).
"""

from __future__ import annotations

import json
import logging
from enum import StrEnum

import anyio
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from detectflow.core.settings import Settings
from detectflow.server.errors import ApiError, error_response
from detectflow.server.state import ServerState, in_thread, server_state
from detectflow.store.keys import ApiKey
from detectflow.store.keys import Scope as KeyScope

__all__ = [
    "API_KEY_SCOPE_KEY",
    "AUTH_TIMEOUT_SECONDS",
    "WS_UNAUTHORIZED",
    "AuthMiddleware",
    "AuthMode",
    "auth_reply",
    "authenticate",
    "authenticate_websocket",
    "authenticated_message",
    "bearer_token",
    "required_scope",
]

log = logging.getLogger(__name__)

API_KEY_SCOPE_KEY = "detectflow.api_key"
"""Where the middleware leaves the verified :class:`ApiKey` in the ASGI scope."""

WS_UNAUTHORIZED = 4401
AUTH_TIMEOUT_SECONDS = 10.0
"""How long a WebSocket that must authenticate by message may stay silent."""

_API_PREFIX = "/api/"
_OPEN_API_PATHS = frozenset({"/api/v1/health"})
_DETECTIONS_PREFIX = "/api/v1/detections/"
_ADMIN_SEGMENTS = frozenset({"providers", "provider", "test-provider"})
_WRITE_SEGMENTS = frozenset({"send-frame"})
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_REALM = 'Bearer realm="detectflow"'


class AuthMode(StrEnum):
    READS_OPEN = "reads-open"
    REQUIRED = "required"


def required_scope(method: str, path: str) -> KeyScope | None:
    """The scope a request needs by the table above; None means no key at all."""
    reading = method.upper() in _READ_METHODS
    if not (path.startswith(_API_PREFIX) or path == _API_PREFIX.rstrip("/")):
        return None if reading else KeyScope.WRITE
    if path.rstrip("/") in _OPEN_API_PATHS:
        return None
    if path.startswith(_DETECTIONS_PREFIX):
        segment = path[len(_DETECTIONS_PREFIX) :].split("/", 1)[0]
        if segment in _ADMIN_SEGMENTS:
            return KeyScope.ADMIN
        if segment in _WRITE_SEGMENTS:
            return KeyScope.WRITE
    return KeyScope.READ if reading else KeyScope.WRITE


def _unauthorized(message: str, *, invalid_token: bool = False) -> ApiError:
    challenge = _REALM + (', error="invalid_token"' if invalid_token else "")
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header; None when there is no header."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise _unauthorized(
            "malformed Authorization header; expected 'Authorization: Bearer <key>'",
            invalid_token=True,
        )
    return token


async def authenticate(state: ServerState, token: str) -> ApiKey:
    """The live key ``token`` is, or a 401 ApiError."""
    if len(token) > 256:  # keys are 85 characters; do not hash megabytes
        key = None
    else:
        key = await in_thread(state.database.verify_api_key, token)
    if key is None:
        raise _unauthorized("invalid or revoked API key", invalid_token=True)
    return key


def _check(key: ApiKey | None, needed: KeyScope | None, mode: AuthMode) -> None:
    if needed is None:
        return
    if key is None:
        if needed is KeyScope.READ and mode is AuthMode.READS_OPEN:
            return
        raise _unauthorized(
            f"this endpoint needs an API key with the {needed.value} scope; "
            "send 'Authorization: Bearer <key>' (create one with `detectflow keys create`)"
        )
    if not key.scope.allows(needed):
        raise ApiError(
            403,
            "forbidden",
            f"API key {key.id} has the {key.scope.value} scope; this endpoint needs {needed.value}",
            headers={
                "WWW-Authenticate": f'{_REALM}, error="insufficient_scope", scope="{needed.value}"'
            },
        )


class AuthMiddleware:
    """Checks HTTP requests against :func:`required_scope` before routing.

    It sits inside ``CatchAllMiddleware``: a database outage while checking
    a key is a logged 500, not a dropped connection. WebSockets pass through;
    the endpoint authenticates them (it has to accept first to send a reason).
    """

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.mode = AuthMode(settings.auth_mode)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        needed = required_scope(scope["method"], scope["path"])
        if needed is None:
            await self.app(scope, receive, send)
            return
        try:
            token = bearer_token(Headers(scope=scope).get("authorization"))
            key = None
            if token is not None:
                key = await authenticate(_state(scope), token)
            _check(key, needed, self.mode)
        except ApiError as exc:
            response = error_response(exc.status, exc.code, exc.message, headers=exc.headers)
            await response(scope, receive, send)
            return
        scope[API_KEY_SCOPE_KEY] = key
        await self.app(scope, receive, send)


def _state(scope: Scope) -> ServerState:
    return server_state(HTTPConnection(scope))


async def _reject(websocket: WebSocket, message: str) -> None:
    try:
        await websocket.send_json({"type": "error", "code": "unauthorized", "message": message})
        await websocket.close(code=WS_UNAUTHORIZED, reason="unauthorized")
    except (WebSocketDisconnect, OSError, RuntimeError):
        pass  # the client left first; nothing to tell it


async def authenticate_websocket(
    websocket: WebSocket, state: ServerState, *, timeout: float | None = None
) -> bool:
    """Authenticate an accepted WebSocket; False means it was refused (and closed).

    The key comes from an ``Authorization`` header, ``?token=``, or, when
    reads are not open and neither was given, a first ``auth`` message that
    must arrive within ``timeout`` seconds (default AUTH_TIMEOUT_SECONDS).
    """
    mode = AuthMode(state.settings.auth_mode)
    try:
        token = bearer_token(websocket.headers.get("authorization"))
    except ApiError as exc:
        await _reject(websocket, exc.message)
        return False
    if token is None:
        token = websocket.query_params.get("token")
    if token is None and mode is AuthMode.READS_OPEN:
        return True
    by_message = token is None
    if token is None:
        token = await _first_message_token(
            websocket, AUTH_TIMEOUT_SECONDS if timeout is None else timeout
        )
        if token is None:
            return False
    try:
        key = await authenticate(state, token)
    except ApiError as exc:
        await _reject(websocket, exc.message)
        return False
    if by_message:
        await websocket.send_json(authenticated_message(key))
    return True


def authenticated_message(key: ApiKey) -> dict[str, str]:
    """The reply to an ``auth`` message that named a live key."""
    return {"type": "authenticated", "key_id": key.id, "scope": key.scope.value}


async def _first_message_token(websocket: WebSocket, timeout: float) -> str | None:
    """The token of the first message, or None after refusing the socket."""
    expected = 'send {"type": "auth", "token": "<key>"} first, or connect with ?token=<key>'
    with anyio.move_on_after(timeout):
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return None
        try:
            data = json.loads(message.get("text") or "")
        except ValueError:
            data = None
        token = data.get("token") if isinstance(data, dict) and data.get("type") == "auth" else None
        if isinstance(token, str) and token:
            return token
        await _reject(websocket, f"an API key is required: {expected}")
        return None
    await _reject(websocket, f"no auth message within {timeout:g} s: {expected}")
    return None


async def auth_reply(state: ServerState, token: object) -> dict[str, str]:
    """The reply to an ``auth`` message on an open socket (a 401 ApiError if the key is bad).

    Sent where reads are open, or again after authenticating: the socket is
    already allowed to read, so a bad key is reported and the socket stays.
    """
    if not isinstance(token, str) or not token:
        raise ApiError(422, "validation_error", "auth message needs a non-empty string 'token'")
    return authenticated_message(await authenticate(state, token))
