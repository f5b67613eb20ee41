"""Health and summary: what an operator or a load balancer asks first.

``/api/v1/health`` reports each part of a deployment as ``ok``,
``degraded`` or ``down``; the whole is ``ok`` when every part is, ``down``
(and a 503) only when the database does not answer: without it nothing works, so a
load balancer should take the process out of rotation. Every other part
failing leaves the server useful (reads fall back to the database, frames
queue), so it answers 200 and says what is wrong:

- ``database``: ping.
- ``cache``: the live cache (Redis or in-process) answers a ping.
- ``bus``: publishing reaches the bus, and the WebSocket hub is subscribed.
- ``dataflow``: each worker's heartbeat (:mod:`detectflow.store.heartbeat`),
  down once silent for ``HEARTBEAT_STALE`` seconds; with no worker at all
  the part is down (queued frames wait); unreadable (cache down) is degraded.
- ``providers``: each provider's circuit breaker, as in the summary; with
  none configured the part is down (inline send-frame cannot detect).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse

from detectflow import __version__
from detectflow.core.models import ProviderConfig, utcnow
from detectflow.core.routing import DEFAULT_PRIORITY
from detectflow.server.endpoints import Operation, http
from detectflow.server.openapi import enveloped, ref
from detectflow.server.params import Query
from detectflow.server.state import ServerState, in_thread, server_state
from detectflow.store.cache import CacheUnavailableError
from detectflow.store.heartbeat import HEARTBEAT_STALE, HEARTBEAT_TTL, WorkerBeat
from detectflow.store.keys import Scope as KeyScope

__all__ = ["PART_STATUSES", "endpoints"]

log = logging.getLogger(__name__)

Status = Literal["ok", "degraded", "down"]
PART_STATUSES: tuple[Status, ...] = ("ok", "degraded", "down")

_BREAKER_STATUS: dict[str, Status] = {"closed": "ok", "half_open": "degraded", "open": "down"}


def _overall(statuses: list[Status]) -> Status:
    """With the database up the server is at worst degraded, whatever else is down."""
    return "ok" if all(s == "ok" for s in statuses) else "degraded"


def _of_many(statuses: list[Status]) -> Status:
    """A part made of several (workers, providers): ok if all are, down if none
    is, else degraded; down when there are none."""
    if not statuses:
        return "down"
    if all(s == "ok" for s in statuses):
        return "ok"
    return "down" if all(s == "down" for s in statuses) else "degraded"


def _part(status: Status, message: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"status": status, "message": message, **extra}


@dataclass(frozen=True, slots=True)
class _Report:
    parts: dict[str, dict[str, Any]]
    active_provider: ProviderConfig | None

    @property
    def database_ok(self) -> bool:
        return bool(self.parts["database"]["status"] == "ok")


def _check(state: ServerState) -> _Report:
    """Every part's status, in one worker thread (a few round trips, each bounded
    by its client's timeouts; an unreachable Redis fails fast after the first)."""
    try:
        state.database.ping()
        active = state.database.active_provider()
        configs = state.database.list_providers()
    except Exception as exc:  # any failure of the database is the one fatal outage
        log.warning("health: the database does not answer: %s", exc)
        database = _part("down", "the database does not answer")
        return _Report(
            {
                "database": database,
                "cache": _cache_part(state),
                "bus": _bus_part(state),
                "dataflow": _dataflow_part(state),
                "providers": _part(
                    "degraded", "unknown: the database does not answer", providers=[]
                ),
            },
            None,
        )
    return _Report(
        {
            "database": _part("ok"),
            "cache": _cache_part(state),
            "bus": _bus_part(state),
            "dataflow": _dataflow_part(state),
            "providers": _providers_part(state, configs),
        },
        active,
    )


def _cache_part(state: ServerState) -> dict[str, Any]:
    backend = state.live.backend
    try:
        state.live.ping()
    except CacheUnavailableError as exc:
        return _part("down", f"{exc}; live reads fall back to the database", backend=backend)
    return _part("ok", backend=backend)


def _bus_part(state: ServerState) -> dict[str, Any]:
    subscribed = state.hub.bus_connected
    try:
        state.live.ping_bus()
        publish_error = None
    except CacheUnavailableError as exc:
        publish_error = str(exc)
    problems = [
        *([] if publish_error is None else [f"publishing fails ({publish_error})"]),
        *([] if subscribed else ["the WebSocket hub is not subscribed (reconnecting)"]),
    ]
    statuses: list[Status] = [
        "ok" if publish_error is None else "down",
        "ok" if subscribed else "down",
    ]
    return _part(
        _of_many(statuses),
        "; ".join(problems) or None,
        subscribed=subscribed,
        reconnections=state.hub.bus_gaps,
    )


def _dataflow_part(state: ServerState) -> dict[str, Any]:
    try:
        beats = state.live.workers()
    except CacheUnavailableError as exc:
        return _part("degraded", f"heartbeats unreadable: {exc}", workers=[])
    now = utcnow()
    workers = [_worker(beat, (now - beat.beat_at).total_seconds()) for beat in beats]
    status = _of_many([w["status"] for w in workers])
    if not workers:
        message = f"no dataflow worker beat in the last {HEARTBEAT_TTL:.0f}s; queued frames wait"
    elif status != "ok":
        message = f"a worker silent for over {HEARTBEAT_STALE:.0f}s is down"
    else:
        message = None
    return _part(status, message, workers=workers)


def _worker(beat: WorkerBeat, age: float) -> dict[str, Any]:
    status: Status = "ok" if age <= HEARTBEAT_STALE else "down"
    return {**beat.as_dict(), "status": status, "age_seconds": round(max(0.0, age), 3)}


def _providers_part(state: ServerState, configs: list[ProviderConfig]) -> dict[str, Any]:
    # Every config may serve frames (routing falls back to inactive ones), so all count.
    providers = [
        {
            "id": e["id"],
            "name": e["name"],
            "is_active": e["is_active"],
            "breaker": e["breaker"],
            "status": _BREAKER_STATUS.get(str(e["breaker"]), "degraded"),
        }
        for e in _provider_entries(state, configs)
    ]
    status = _of_many([p["status"] for p in providers])
    if not providers:
        message = "no provider configured: inline send-frame cannot detect, queued frames wait"
    elif status != "ok":
        message = "a provider whose circuit breaker is open gets no frames"
    else:
        message = None
    return _part(status, message, providers=providers)


async def health(request: Request) -> JSONResponse:
    state = server_state(request)
    Query(request).check()
    report = await in_thread(_check, state)
    statuses: list[Status] = [part["status"] for part in report.parts.values()]
    provider = report.active_provider
    data = {
        "status": _overall(statuses) if report.database_ok else "down",
        "version": __version__,
        "parts": report.parts,
        "provider_configured": provider is not None,
        "provider_name": provider.provider_name if provider else None,
        "websocket": state.hub.stats(),
    }
    return JSONResponse({"data": data}, status_code=200 if report.database_ok else 503)


def _provider_entries(state: ServerState, configs: list[ProviderConfig]) -> list[dict[str, Any]]:
    """Every provider with its circuit breaker: the state last published by any
    process (the dataflow's engine or a server), else this server's own, else
    closed (no breaker has seen it fail)."""
    published = state.live.breakers([c.id for c in configs])
    entries = []
    for config in configs:
        own = state.detector.breakers.get(config.id)
        breaker = published.get(config.id) or (own.as_dict() if own else None)
        if breaker is None:
            breaker = {"breaker": "closed", "failures": 0, "opened_at": None}
        routing = config.options
        entries.append(
            {
                "id": config.id,
                "name": config.provider_name,
                "provider_type": config.provider_type,
                "is_active": config.is_active,
                "cameras": routing.get("cameras"),
                "priority": routing.get("priority", DEFAULT_PRIORITY),
                "breaker": breaker.get("breaker", "closed"),
                "failures": breaker.get("failures", 0),
                "opened_at": breaker.get("opened_at"),
            }
        )
    return entries


async def summary(request: Request) -> JSONResponse:
    """The guide's system summary: provider, queue and detection counts, plus
    every provider's routing and circuit breaker state (``providers``)."""
    state = server_state(request)
    Query(request).check()
    provider = await in_thread(state.database.active_provider)
    configs = await in_thread(state.database.list_providers)
    providers = await in_thread(_provider_entries, state, configs)
    queue_stats = await in_thread(state.database.queue_stats)
    # From the window statistics (day, hour, then minute rows), never a count of detections.
    totals = await in_thread(state.database.detection_totals)
    data = {
        "provider_configured": provider is not None,
        "provider_name": provider.provider_name if provider else None,
        "provider_active": bool(provider and provider.is_active),
        "provider_test_status": provider.test_status if provider else None,
        "queue_stats": queue_stats,
        "detection_stats": {
            "total_detections": totals.total,
            "detections_last_hour": totals.last_hour,
        },
        "providers": providers,
    }
    return JSONResponse({"data": data})


endpoints = [
    http(
        "/api/v1/health",
        Operation(
            "GET",
            "health",
            "Each part ok / degraded / down; 503 only when the database does not answer.",
            None,  # load balancers ask without a key, in every auth mode
            {200: enveloped(ref("Health")), 503: enveloped(ref("Health"))},
            health,
            tag="operations",
        ),
    ),
    http(
        "/api/v1/detections/summary",
        Operation(
            "GET",
            "summary",
            "Provider, queue and detection counts at a glance.",
            KeyScope.READ,
            {200: enveloped(ref("Summary"))},
            summary,
        ),
    ),
]
