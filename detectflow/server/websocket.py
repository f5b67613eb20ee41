"""The guide's WebSocket: ``/api/v1/detections/ws/{client_id}``.

Client messages (JSON text): ``subscribe`` {camera_id?, event_types?,
min_confidence?}, ``unsubscribe`` {camera_id?, event_types?}, ``ping``,
``get_stats``, ``auth`` {token} (see :mod:`detectflow.server.auth`, which
also says when a key is needed and how a socket without one is refused).
Server messages: ``subscription``, ``unsubscription``,
``pong``, ``stats``, ``error``, and the ``detection`` / ``event`` /
``object`` broadcasts the hub forwards (``object``: a tracked object's
``object_started`` / ``object_updated`` / ``object_ended`` with ``before``
and ``after``, filtered like events by camera and ``event_types``), plus
``lagged`` when this client's outbox overflowed. A bad message gets an
``error`` reply; the connection stays open, except for one the server
will not parse at all (longer than ``MAX_MESSAGE_CHARS``, or nested
deeper than ``MAX_JSON_DEPTH``): that one gets an ``error`` and the socket
closes with 1007. A socket whose key is
revoked gets an ``unauthorized`` error and closes with 4401
(:mod:`detectflow.server.key_watch`).

A receiver, a sender and the key's watcher run in one task group (as in
encode/broadcaster's example): any one ending (client gone, send failed,
key revoked) cancels the others.
"""

from __future__ import annotations

import json
import logging
from typing import Any, cast

import anyio
from starlette.websockets import WebSocket, WebSocketDisconnect

from detectflow.core.frames import CAMERA_ID_PATTERN
from detectflow.core.models import utcnow
from detectflow.core.serialize import isoformat
from detectflow.server.auth import (
    WS_INVALID_PAYLOAD,
    auth_reply,
    authenticate_websocket,
    close_unauthorized,
)
from detectflow.server.endpoints import Operation, PathParam, websocket
from detectflow.server.errors import ApiError
from detectflow.server.hub import Client
from detectflow.server.key_watch import KEY_WATCH_KEY, KeyWatch, Ticket
from detectflow.server.openapi import WEBSOCKET_MESSAGES, query
from detectflow.server.outbox import Outbox
from detectflow.server.params import MAX_MESSAGE_CHARS, Body, parse_json
from detectflow.server.state import ServerState, in_thread, server_state
from detectflow.store.keys import Scope as KeyScope

__all__ = ["MAX_MESSAGE_CHARS", "endpoints"]

log = logging.getLogger(__name__)

MAX_EVENT_TYPES = 64
_POLICY_VIOLATION = 1008


def _event_types(body: Body) -> list[str] | None:
    if not body.has("event_types") or body.data["event_types"] is None:
        return None
    value = body.data["event_types"]
    if (
        not isinstance(value, list)
        or len(value) > MAX_EVENT_TYPES
        or not all(isinstance(v, str) and 0 < len(v) <= 64 for v in value)
    ):
        body.error("event_types", f"must be a list of at most {MAX_EVENT_TYPES} event type names")
        return None
    return value


def _camera(body: Body) -> str | None:
    return body.text("camera_id", min_length=1, max_length=128, pattern=CAMERA_ID_PATTERN)


async def _subscribe(state: ServerState, client: Client, body: Body) -> dict[str, Any]:
    camera_id = _camera(body)
    event_types = _event_types(body)
    min_confidence = body.number("min_confidence", minimum=0.0, maximum=1.0)
    body.check()
    client.filter.subscribe(camera_id, event_types, min_confidence)
    snapshot = await state.live.reads.live(camera_id)
    floor = client.filter.min_confidence
    current = [
        d
        for d in (snapshot.detections if snapshot is not None else [])
        if isinstance(d.get("confidence"), int | float) and d["confidence"] >= floor
    ]
    target = f"camera {camera_id}" if camera_id is not None else "all cameras"
    return {
        "type": "subscription",
        "camera_id": camera_id,
        "event_types": sorted(client.filter.event_types)
        if client.filter.event_types is not None
        else None,
        "min_confidence": floor,
        "subscribed": True,
        "message": f"Subscribed to {target}",
        "current_detections": current,
        "detection_count": len(current),
    }


def _unsubscribe(client: Client, body: Body) -> dict[str, Any]:
    camera_id = _camera(body)
    event_types = _event_types(body)
    body.check()
    client.filter.unsubscribe(camera_id, event_types)
    return {
        "type": "unsubscription",
        "camera_id": camera_id,
        "event_types": event_types,
        "subscribed": client.filter.active,
        "message": "Unsubscribed",
    }


class _Unreadable(Exception):
    """A message the server will not parse: the socket closes with 1007."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


def _parse(text: str) -> Any:
    if len(text) > MAX_MESSAGE_CHARS:
        raise _Unreadable(
            ApiError(413, "payload_too_large", f"message longer than {MAX_MESSAGE_CHARS}")
        )
    try:
        return parse_json(text, location="message")
    except ApiError as exc:
        if exc.code == "too_deeply_nested":
            raise _Unreadable(exc) from None
        raise


async def _handle(state: ServerState, client: Client, ticket: Ticket, text: str) -> dict[str, Any]:
    """One client message in, one reply out; ApiError becomes an ``error`` reply."""
    body = Body(_parse(text))
    kind = body.text("type", required=True, max_length=32)
    if kind is None:
        body.check()
    if kind == "subscribe":
        return await _subscribe(state, client, body)
    if kind == "unsubscribe":
        return _unsubscribe(client, body)
    if kind == "ping":
        body.check()
        return {"type": "pong", "timestamp": isoformat(utcnow())}
    if kind == "get_stats":
        body.check()
        return {"type": "stats", "queue_stats": await in_thread(state.database.queue_stats)}
    if kind == "auth":
        reply, key = await auth_reply(state, body.data.get("token"))
        ticket.key = key  # the socket now stands on this key: its revocation closes it
        return reply
    raise ApiError(
        422,
        "unknown_type",
        f"unknown message type {kind!r}; expected subscribe, unsubscribe, ping or get_stats",
    )


async def _receiver(
    websocket: WebSocket, state: ServerState, client: Client, ticket: Ticket
) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        try:
            if text is None:
                raise ApiError(400, "bad_request", "expected a text message holding JSON")
            reply = await _handle(state, client, ticket, text)
        except _Unreadable as exc:
            error = {"type": "error", "code": exc.error.code, "message": exc.error.message}
            await websocket.send_text(json.dumps(error))
            await websocket.close(code=WS_INVALID_PAYLOAD, reason=exc.error.code)
            return
        except ApiError as exc:
            reply = {"type": "error", "code": exc.code, "message": exc.message}
        except Exception:  # our fault (a store outage): say so, keep the connection
            log.exception("websocket %s: handling a message failed", client.client_id)
            reply = {"type": "error", "code": "internal_error", "message": "internal server error"}
        await client.reply(reply)


async def _sender(websocket: WebSocket, client: Client, outbox: Outbox) -> None:
    async for text in outbox:
        dropped = client.take_lagged()
        if dropped:
            await websocket.send_text(json.dumps({"type": "lagged", "dropped": dropped}))
        await websocket.send_text(text)
        client.mark_sent(text)


async def _close_when_revoked(websocket: WebSocket, ticket: Ticket) -> None:
    await ticket.revoked.wait()
    key_id = ticket.key.id if ticket.key is not None else "?"
    await close_unauthorized(websocket, f"API key {key_id} was revoked")


def _key_watch(socket: WebSocket) -> KeyWatch:
    return cast(KeyWatch, getattr(socket.state, KEY_WATCH_KEY))


async def detections_ws(websocket: WebSocket) -> None:
    state = server_state(websocket)
    client_id = websocket.path_params["client_id"]
    if not CAMERA_ID_PATTERN.fullmatch(client_id):
        await websocket.close(code=_POLICY_VIOLATION, reason="bad client_id")
        return
    await websocket.accept()
    standing = await authenticate_websocket(websocket, state)
    if standing is None:
        return
    watch = _key_watch(websocket)
    ticket = watch.watch(standing.key)
    client, outbox = state.hub.connect(client_id)
    try:
        async with anyio.create_task_group() as tg:

            async def run(part: Any, *args: Any) -> None:
                try:
                    await part(*args)
                except (WebSocketDisconnect, OSError, RuntimeError) as exc:
                    log.debug("websocket %s ended: %r", client_id, exc)
                finally:
                    tg.cancel_scope.cancel()

            tg.start_soon(run, _receiver, websocket, state, client, ticket)
            tg.start_soon(run, _sender, websocket, client, outbox)
            tg.start_soon(run, _close_when_revoked, websocket, ticket)
    finally:
        watch.forget(ticket)
        state.hub.disconnect(client)
        outbox.close()


endpoints = [
    websocket(
        "/api/v1/detections/ws/{client_id}",
        detections_ws,
        Operation(
            "GET",
            "detections_websocket",
            "The WebSocket: subscribe / unsubscribe / ping / get_stats in, detection and event "
            "broadcasts out (message schemas under x-websocket-messages). A client_id outside "
            "[A-Za-z0-9_.:-]{1,128} is closed with code 1008; a message longer than "
            f"{MAX_MESSAGE_CHARS} characters or nested too deep with 1007; revoking the key "
            "the socket authenticated with closes it with 4401 within seconds.",
            KeyScope.READ,
            {101: None},
            errors=(404,),
            parameters=(
                query(
                    "token",
                    {"type": "string"},
                    "An API key, for browsers that cannot set Authorization on a WebSocket; "
                    "or send an auth message first. A socket without a valid key where one is "
                    "needed gets an unauthorized error message and close code 4401.",
                ),
            ),
            tag="websocket",
            extra={"x-websocket-messages": WEBSOCKET_MESSAGES},
        ),
        # The router takes any segment; the handler closes a bad client_id with 1008,
        # which a WebSocket client can tell from "no such route".
        params=[PathParam("client_id", valid=CAMERA_ID_PATTERN.pattern)],
    )
]
