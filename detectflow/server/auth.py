"""API-key auth for REST and the WebSocket.

Keys (``dfk_<id>_<secret>``, see :mod:`detectflow.store.keys`) carry a scope:
read < write < admin. Each operation declares the scope it needs next to its
handler (:mod:`detectflow.server.endpoints`), and its route calls
:func:`authorize` before the handler runs, so the scope a request needs, the
route that serves it and the document that describes it are one declaration.
A path no operation declares is a 404/405 and runs nothing.

``DETECTFLOW_AUTH_MODE`` decides only whether *read* operations need a key:
``reads-open`` (the default: the demo and curl work without one) or
``required``. Writes and provider config always need a key. Operations
declared with no scope stay open in both modes: ``/api/v1/health`` (load
balancers), ``/openapi.json`` (the contract, no data), and the live page
``/`` with its static files (code, no data; the page asks for a key when
reads need one). ``/metrics`` is a read: open by default, keyed in
``required`` mode. A key that is presented to an operation with a scope is
always checked, even where none is needed: a client sending a wrong key
wants to hear about it.

REST takes ``Authorization: Bearer <key>`` only: keys in URLs end up in
access logs. Browsers cannot set headers on a WebSocket, so it also takes
``?token=<key>`` or a first message ``{"type": "auth", "token": "<key>"}``;
without a valid key where one is needed the server sends
``{"type": "error", "code": "unauthorized", "message"}`` and closes with code
4401 (4000 + the HTTP status, a common convention for application closes).
A socket stays tied to the key it authenticated with: revoking that key
closes it the same way within seconds (:mod:`detectflow.server.key_watch`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

import anyio
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket, WebSocketDisconnect

from detectflow.server.errors import ApiError
from detectflow.server.params import MAX_MESSAGE_CHARS, parse_json
from detectflow.server.state import ServerState, server_state
from detectflow.store.keys import ApiKey
from detectflow.store.keys import Scope as KeyScope

__all__ = [
    "AUTH_TIMEOUT_SECONDS",
    "WS_INVALID_PAYLOAD",
    "WS_UNAUTHORIZED",
    "AuthMode",
    "SocketAuth",
    "auth_reply",
    "authenticate",
    "authenticate_websocket",
    "authenticated_message",
    "authorize",
    "bearer_token",
    "close_unauthorized",
]

log = logging.getLogger(__name__)

WS_UNAUTHORIZED = 4401
WS_INVALID_PAYLOAD = 1007
"""RFC 6455: a message the server will not parse (here: nested too deep, too long)."""
AUTH_TIMEOUT_SECONDS = 10.0
"""How long a WebSocket that must authenticate by message may stay silent."""

_REALM = 'Bearer realm="detectflow"'


class AuthMode(StrEnum):
    READS_OPEN = "reads-open"
    REQUIRED = "required"


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
        key = await state.keys.verify(token)
    if key is None:
        raise _unauthorized("invalid or revoked API key", invalid_token=True)
    return key


def _check(key: ApiKey | None, needed: KeyScope, mode: AuthMode) -> None:
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


async def authorize(conn: HTTPConnection, needed: KeyScope | None) -> ApiKey | None:
    """Check an HTTP request against the scope its operation declares (None: open).

    Raises a 401/403 ApiError; returns the verified key, if one was sent.
    """
    if needed is None:
        return None
    state = server_state(conn)
    token = bearer_token(conn.headers.get("authorization"))
    key = None if token is None else await authenticate(state, token)
    _check(key, needed, AuthMode(state.settings.auth_mode))
    return key


async def close_unauthorized(websocket: WebSocket, message: str) -> None:
    """Tell the client why and close with 4401; quiet if it already left."""
    await _close(websocket, WS_UNAUTHORIZED, "unauthorized", message)


async def _close(websocket: WebSocket, code: int, error: str, message: str) -> None:
    try:
        await websocket.send_json({"type": "error", "code": error, "message": message})
        await websocket.close(code=code, reason=error)
    except (WebSocketDisconnect, OSError, RuntimeError):
        pass  # the client left first; nothing to tell it


@dataclass(frozen=True, slots=True)
class SocketAuth:
    """An accepted socket's standing: the key it showed (None: reads are open)."""

    key: ApiKey | None


async def authenticate_websocket(
    websocket: WebSocket, state: ServerState, *, timeout: float | None = None
) -> SocketAuth | None:
    """Authenticate an accepted WebSocket; None means it was refused (and closed).

    The key comes from an ``Authorization`` header, ``?token=``, or, when
    reads are not open and neither was given, a first ``auth`` message that
    must arrive within ``timeout`` seconds (default AUTH_TIMEOUT_SECONDS).
    """
    mode = AuthMode(state.settings.auth_mode)
    try:
        token = bearer_token(websocket.headers.get("authorization"))
    except ApiError as exc:
        await close_unauthorized(websocket, exc.message)
        return None
    if token is None:
        token = websocket.query_params.get("token")
    if token is None and mode is AuthMode.READS_OPEN:
        return SocketAuth(None)
    by_message = token is None
    if token is None:
        token = await _first_message_token(
            websocket, AUTH_TIMEOUT_SECONDS if timeout is None else timeout
        )
        if token is None:
            return None
    try:
        key = await authenticate(state, token)
    except ApiError as exc:
        await close_unauthorized(websocket, exc.message)
        return None
    if by_message:
        await websocket.send_json(authenticated_message(key))
    return SocketAuth(key)


def authenticated_message(key: ApiKey) -> dict[str, str]:
    """The reply to an ``auth`` message that named a live key."""
    return {"type": "authenticated", "key_id": key.id, "scope": key.scope.value}


async def _first_message_token(websocket: WebSocket, timeout: float) -> str | None:
    """The token of the first message, or None after refusing the socket.

    The message is parsed with the same caps as every other (length,
    nesting): one that breaks them closes the socket with 1007 before any
    key is looked at.
    """
    expected = 'send {"type": "auth", "token": "<key>"} first, or connect with ?token=<key>'
    with anyio.move_on_after(timeout):
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text") or ""
        if len(text) > MAX_MESSAGE_CHARS:
            await _close(
                websocket,
                WS_INVALID_PAYLOAD,
                "payload_too_large",
                f"message longer than {MAX_MESSAGE_CHARS} characters",
            )
            return None
        try:
            data = parse_json(text)
        except ApiError as exc:
            if exc.code == "too_deeply_nested":
                await _close(websocket, WS_INVALID_PAYLOAD, exc.code, exc.message)
                return None
            data = None
        token = data.get("token") if isinstance(data, dict) and data.get("type") == "auth" else None
        if isinstance(token, str) and token:
            return token
        await close_unauthorized(websocket, f"an API key is required: {expected}")
        return None
    await close_unauthorized(websocket, f"no auth message within {timeout:g} s: {expected}")
    return None


async def auth_reply(state: ServerState, token: object) -> tuple[dict[str, str], ApiKey]:
    """The reply to an ``auth`` message on an open socket, and the key it named
    (a 401 ApiError if the key is bad).

    Sent where reads are open, or again after authenticating: the socket is
    already allowed to read, so a bad key is reported and the socket stays.
    """
    if not isinstance(token, str) or not token:
        raise ApiError(422, "validation_error", "auth message needs a non-empty string 'token'")
    key = await authenticate(state, token)
    return authenticated_message(key), key
