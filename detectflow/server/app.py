"""The Starlette application: one routes list, one lifespan.

The lifespan opens whatever the caller did not pass in (the database,
migrated to head; the cache and bus: Redis when a Redis URL is set, else
the in-process twins),
starts the WebSocket hub's single bus listener, and on shutdown closes, in
reverse order, exactly what it opened plus the provider adapters. Objects
passed in belong to the caller and are left open.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route

from detectflow.adapters.detector import Detector
from detectflow.adapters.failover import BreakerBoard
from detectflow.core.plugins import PluginRegistry, get_registry
from detectflow.core.settings import Settings
from detectflow.server import detections, page, providers, statistics, status, websocket
from detectflow.server.auth import AuthMiddleware
from detectflow.server.detections import SOURCE_SYSTEM
from detectflow.server.errors import CatchAllMiddleware, exception_handlers
from detectflow.server.hub import Hub
from detectflow.server.inline import record_inline_results
from detectflow.server.metrics import METRICS_KEY, Metrics, MetricsMiddleware, metrics_endpoint
from detectflow.server.openapi import openapi_endpoint, route_table
from detectflow.server.state import STATE_KEY, ProviderRoutes, ServerState, in_thread
from detectflow.store import Database, open_database
from detectflow.store.backends import close_cache_and_bus, open_cache_and_bus
from detectflow.store.cache import Bus, Cache
from detectflow.store.group_commit import GroupCommit
from detectflow.store.live import LiveView
from detectflow.store.recorder import Recorder

__all__ = ["DEFAULT_WS_QUEUE_SIZE", "create_app", "routes"]

log = logging.getLogger(__name__)

DEFAULT_WS_QUEUE_SIZE = 256

# Fixed paths before "/{detection_id}", which would match any single segment.
routes = [
    Mount(
        "/api/v1",
        routes=[
            *status.health_routes,
            Mount(
                "/detections",
                routes=[
                    *detections.routes,
                    *providers.routes,
                    *status.summary_routes,
                    *statistics.routes,
                    *websocket.routes,
                    *page.frame_routes,
                    *detections.detail_routes,
                ],
            ),
        ],
    ),
    *page.page_routes,
    Route("/openapi.json", openapi_endpoint, methods=["GET"]),
    Route("/metrics", metrics_endpoint, methods=["GET"]),
]


def _open_cache_and_bus(settings: Settings) -> tuple[Cache, Bus]:
    """Redis when ``DETECTFLOW_REDIS_URL`` is set (live data shared by every
    server and dataflow process), else the in-process twins (one process only)."""
    return open_cache_and_bus(settings)


def create_app(
    settings: Settings | None = None,
    *,
    database: Database | None = None,
    cache: Cache | None = None,
    bus: Bus | None = None,
    registry: PluginRegistry | None = None,
    ws_queue_size: int = DEFAULT_WS_QUEUE_SIZE,
    metrics: Metrics | None = None,
) -> Starlette:
    """Build the app; nothing is opened until the lifespan starts.

    Pass ``metrics`` to add series of your own to ``/metrics`` (the one-process
    runner adds the dataflow's).
    """
    settings = settings or Settings.from_env()
    metrics = metrics or Metrics()
    templates = {id(info.route): info.path for info in route_table(routes)}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with AsyncExitStack() as stack:
            db = database
            if db is None:
                db = await in_thread(open_database, settings)
                stack.callback(db.dispose)
                await in_thread(db.upgrade)
            the_cache, the_bus = cache, bus
            if the_cache is None or the_bus is None:
                made_cache, made_bus = _open_cache_and_bus(settings)
                # Both are closed on shutdown, the one not used included.
                stack.callback(close_cache_and_bus, made_cache, made_bus)
                the_cache = the_cache or made_cache
                the_bus = the_bus or made_bus
            plugins = registry or get_registry(settings)
            detector = Detector(
                plugins,
                settings,
                breakers=BreakerBoard(source_system=SOURCE_SYSTEM),
                source_system=SOURCE_SYSTEM,
            )
            stack.push_async_callback(detector.aclose)
            live = LiveView(the_cache, the_bus)
            hub = Hub(the_bus, queue_size=ws_queue_size, on_lag=metrics.observe_lag)
            metrics.watch(hub)
            stack.callback(metrics.watch, None)
            tasks = await stack.enter_async_context(anyio.create_task_group())
            await tasks.start(hub.run)
            stack.callback(tasks.cancel_scope.cancel)
            recorder = Recorder(db, live=live, stats=live.stats, registry=plugins)
            state = ServerState(
                settings=settings,
                database=db,
                live=live,
                hub=hub,
                registry=plugins,
                detector=detector,
                recorder=recorder,
                results=GroupCommit(partial(record_inline_results, db, recorder)),
                routes=ProviderRoutes(db),
            )
            yield {STATE_KEY: state, METRICS_KEY: metrics}

    return Starlette(
        routes=routes,
        middleware=[
            Middleware(MetricsMiddleware, metrics=metrics, routes=routes, templates=templates),
            Middleware(CatchAllMiddleware),
            Middleware(AuthMiddleware, settings=settings),
        ],
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
