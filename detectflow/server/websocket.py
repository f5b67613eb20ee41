"""The guide's WebSocket: ``/api/v1/detections/ws/{client_id}``.

Client messages (JSON text): ``subscribe`` {camera_id?, event_types?,
min_confidence?}, ``unsubscribe`` {camera_id?, event_types?}, ``ping``,
``get_stats``, ``auth`` {token} (see :mod:`detectflow.server.auth`, which
also says when a key is needed and how a socket without one is refused).
Server messages: ``subscription``, ``unsubscription``,
``pong``, ``stats``, ``error``, and the ``detection`` / ``event``
broadcasts the hub forwards, plus ``lagged`` when this client's outbox
overflowed. A bad message gets an ``error`` reply; the connection stays open.

A receiver and a sender run in one task group (as in encode/broadcaster's
example): either one ending (client gone, send failed) cancels the other.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from detectflow.core.frames import CAMERA_ID_PATTERN
from detectflow.core.models import utcnow
from detectflow.core.serialize import isoformat
from detectflow.server.auth import auth_reply, authenticate_websocket
from detectflow.server.errors import ApiError
from detectflow.server.hub import Client
from detectflow.server.outbox import Outbox
from detectflow.server.params import Body
from detectflow.server.state import ServerState, in_thread, server_state

__all__ = ["MAX_MESSAGE_CHARS", "routes"]

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 64 * 1024
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


async def _handle(state: ServerState, client: Client, text: str) -> dict[str, Any]:
    """One client message in, one reply out; ApiError becomes an ``error`` reply."""
    if len(text) > MAX_MESSAGE_CHARS:
        raise ApiError(413, "payload_too_large", f"message longer than {MAX_MESSAGE_CHARS}")
    try:
        data = json.loads(text)
    except ValueError:
        raise ApiError(400, "invalid_json", "message is not valid JSON") from None
    body = Body(data)
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
        return await auth_reply(state, body.data.get("token"))
    raise ApiError(
        422,
        "unknown_type",
        f"unknown message type {kind!r}; expected subscribe, unsubscribe, ping or get_stats",
    )


async def _receiver(websocket: WebSocket, state: ServerState, client: Client) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        try:
            if text is None:
                raise ApiError(400, "bad_request", "expected a text message holding JSON")
            reply = await _handle(state, client, text)
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


async def detections_ws(websocket: WebSocket) -> None:
    state = server_state(websocket)
    client_id = websocket.path_params["client_id"]
    if not CAMERA_ID_PATTERN.fullmatch(client_id):
        await websocket.close(code=_POLICY_VIOLATION, reason="bad client_id")
        return
    await websocket.accept()
    if not await authenticate_websocket(websocket, state):
        return
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

            tg.start_soon(run, _receiver, websocket, state, client)
            tg.start_soon(run, _sender, websocket, client, outbox)
    finally:
        state.hub.disconnect(client)
        outbox.close()


routes = [WebSocketRoute("/ws/{client_id}", detections_ws)]
