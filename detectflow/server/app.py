"""The Starlette application: one routes list, one lifespan.

The lifespan opens whatever the caller did not pass in (the database,
migrated to head; the in-process cache and bus when no Redis URL is set),
starts the WebSocket hub's single bus listener, and on shutdown closes, in
reverse order, exactly what it opened plus the provider adapters. Objects
passed in belong to the caller and are left open.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount

from detectflow.core.plugins import PluginRegistry, get_registry
from detectflow.core.settings import Settings
from detectflow.server import detections, providers, status, websocket
from detectflow.server.adapter_pool import AdapterPool
from detectflow.server.errors import CatchAllMiddleware, exception_handlers
from detectflow.server.hub import Hub
from detectflow.server.state import STATE_KEY, ServerState, in_thread
from detectflow.store import Database, open_database
from detectflow.store.cache import Bus, Cache
from detectflow.store.live import LiveView

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
                    *websocket.routes,
                    *detections.detail_routes,
                ],
            ),
        ],
    ),
]


def _open_cache_and_bus(settings: Settings) -> tuple[Cache, Bus]:
    """The in-process cache and bus (one process only).

    The Redis implementation is a later issue; until it lands a configured
    Redis URL is reported loudly instead of being half-used.
    """
    if settings.redis_url:
        log.warning(
            "DETECTFLOW_REDIS_URL is set but this server has no Redis cache/bus yet; "
            "using the in-process cache and bus (live data is not shared across processes)"
        )
    from detectflow.store.memory import MemoryBus, MemoryCache

    return MemoryCache(), MemoryBus()


def create_app(
    settings: Settings | None = None,
    *,
    database: Database | None = None,
    cache: Cache | None = None,
    bus: Bus | None = None,
    registry: PluginRegistry | None = None,
    ws_queue_size: int = DEFAULT_WS_QUEUE_SIZE,
) -> Starlette:
    """Build the app; nothing is opened until the lifespan starts."""
    settings = settings or Settings.from_env()

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
                the_cache = the_cache or made_cache
                the_bus = the_bus or made_bus
            plugins = registry or get_registry(settings)
            adapters = AdapterPool(plugins)
            stack.push_async_callback(adapters.aclose)
            hub = Hub(the_bus, queue_size=ws_queue_size)
            tasks = await stack.enter_async_context(anyio.create_task_group())
            await tasks.start(hub.run)
            stack.callback(tasks.cancel_scope.cancel)
            state = ServerState(
                settings=settings,
                database=db,
                cache=the_cache,
                bus=the_bus,
                live=LiveView(the_cache, the_bus),
                hub=hub,
                adapters=adapters,
                registry=plugins,
            )
            yield {STATE_KEY: state}

    return Starlette(
        routes=routes,
        middleware=[Middleware(CatchAllMiddleware)],
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
