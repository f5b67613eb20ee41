"""Health and summary: what an operator or a load balancer asks first.

``/api/v1/health`` answers 503 when the database does not answer, so a load
balancer takes the process out of rotation; a missing provider is reported
but is not unhealthy (queue mode and reads still work).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from detectflow import __version__
from detectflow.core.models import ProviderConfig, utcnow
from detectflow.core.routing import DEFAULT_PRIORITY
from detectflow.server.params import Query
from detectflow.server.state import ServerState, in_thread, server_state

__all__ = ["health_routes", "summary_routes"]

log = logging.getLogger(__name__)


async def health(request: Request) -> JSONResponse:
    state = server_state(request)
    Query(request).check()
    try:
        database_ok = await in_thread(state.database.ping)
    except Exception:
        log.exception("health: database ping failed")
        database_ok = False
    provider = None
    if database_ok:
        try:
            provider = await in_thread(state.database.active_provider)
        except Exception:
            log.exception("health: reading the active provider failed")
            database_ok = False
    data = {
        "status": "ok" if database_ok else "unavailable",
        "version": __version__,
        "database": "ok" if database_ok else "unavailable",
        "provider_configured": provider is not None,
        "provider_name": provider.provider_name if provider else None,
        "websocket": state.hub.stats(),
    }
    return JSONResponse({"data": data}, status_code=200 if database_ok else 503)


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
    _, total = await in_thread(state.database.list_detections, limit=1)
    _, last_hour = await in_thread(
        state.database.list_detections, since=utcnow() - timedelta(hours=1), limit=1
    )
    data = {
        "provider_configured": provider is not None,
        "provider_name": provider.provider_name if provider else None,
        "provider_active": bool(provider and provider.is_active),
        "provider_test_status": provider.test_status if provider else None,
        "queue_stats": queue_stats,
        "detection_stats": {"total_detections": total, "detections_last_hour": last_hour},
        "providers": providers,
    }
    return JSONResponse({"data": data})


health_routes = [Route("/health", health, methods=["GET"])]
summary_routes = [Route("/summary", summary, methods=["GET"])]
