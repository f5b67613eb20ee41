"""The Starlette application: one routes list, one lifespan.

``ENDPOINTS`` declares every endpoint once (:mod:`detectflow.server.endpoints`):
``routes``, the OpenAPI document and the scope each request needs all come
from it.

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
from starlette.requests import Request
from starlette.responses import JSONResponse

from detectflow.adapters.detector import Detector
from detectflow.adapters.failover import BreakerBoard
from detectflow.core.plugins import PluginRegistry, get_registry
from detectflow.core.redact import install_log_redaction
from detectflow.core.settings import Settings
from detectflow.server import (
    camera_status,
    cameras,
    deepstack,
    detections,
    metrics,
    objects,
    page,
    providers,
    statistics,
    status,
    webhooks,
    websocket,
)
from detectflow.server.detections import SOURCE_SYSTEM
from detectflow.server.endpoints import Endpoint, Operation, http
from detectflow.server.errors import CatchAllMiddleware, exception_handlers
from detectflow.server.hub import Hub
from detectflow.server.inline import record_inline_results
from detectflow.server.key_watch import DEFAULT_INTERVAL_SECONDS, KEY_WATCH_KEY, KeyWatch
from detectflow.server.metrics import METRICS_KEY, Metrics, MetricsMiddleware
from detectflow.server.openapi import build_spec
from detectflow.server.params import Query
from detectflow.server.state import (
    STATE_KEY,
    ProviderRoutes,
    ServerState,
    VerifiedKeys,
    in_thread,
    server_state,
)
from detectflow.store import Database, open_database
from detectflow.store.backends import close_cache_and_bus, open_cache_and_bus
from detectflow.store.cache import Bus, Cache
from detectflow.store.group_commit import GroupCommit
from detectflow.store.live import LiveView
from detectflow.store.recorder import Recorder

__all__ = ["DEFAULT_WS_QUEUE_SIZE", "ENDPOINTS", "create_app", "openapi_document", "routes"]

log = logging.getLogger(__name__)

DEFAULT_WS_QUEUE_SIZE = 256

_DOCUMENTS: dict[tuple[bool, bool], dict[str, Any]] = {}


def openapi_document(*, reads_open: bool = True, deepstack_api: bool = False) -> dict[str, Any]:
    """The OpenAPI document of this app (built once per auth mode and gateway setting)."""
    if (reads_open, deepstack_api) not in _DOCUMENTS:
        endpoints = (*ENDPOINTS, *(deepstack.endpoints if deepstack_api else ()))
        _DOCUMENTS[reads_open, deepstack_api] = build_spec(endpoints, reads_open=reads_open)
    return _DOCUMENTS[reads_open, deepstack_api]


async def _openapi(request: Request) -> JSONResponse:
    Query(request).check()
    settings = server_state(request).settings
    return JSONResponse(
        openapi_document(
            reads_open=settings.auth_mode == "reads-open", deepstack_api=settings.deepstack_api
        )
    )


ENDPOINTS: tuple[Endpoint, ...] = (
    *status.endpoints,
    *providers.endpoints,
    *webhooks.endpoints,
    *camera_status.endpoints,  # /cameras/status before /cameras/{camera_id}
    *cameras.endpoints,
    *statistics.endpoints,
    *websocket.endpoints,
    *objects.endpoints,
    *page.frame_endpoints,
    *detections.endpoints,  # ends with /{detection_id}
    *page.page_endpoints,
    *metrics.endpoints,
    http(
        "/openapi.json",
        Operation(
            "GET",
            "openapi",
            "This document.",
            None,  # the contract holds no data; clients read it before they have a key
            {200: {"type": "object"}},
            _openapi,
            tag="operations",
        ),
    ),
)

routes = [endpoint.route for endpoint in ENDPOINTS]


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
    key_check_seconds: float = DEFAULT_INTERVAL_SECONDS,
) -> Starlette:
    """Build the app; nothing is opened until the lifespan starts.

    Pass ``metrics`` to add series of your own to ``/metrics`` (the one-process
    runner adds the dataflow's). ``key_check_seconds`` is how often open
    WebSockets' keys are checked for revocation.
    """
    settings = settings or Settings.from_env()
    install_log_redaction()  # provider URLs may carry credentials; logs never show them
    app_metrics = metrics or Metrics()
    endpoints = (*ENDPOINTS, *deepstack.mount(settings))  # the DeepStack API, when enabled
    app_routes = [endpoint.route for endpoint in endpoints]
    templates = {id(endpoint.route): endpoint.path for endpoint in endpoints}

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
            hub = Hub(the_bus, queue_size=ws_queue_size, on_lag=app_metrics.observe_lag)
            app_metrics.watch(hub)
            stack.callback(app_metrics.watch, None)
            key_watch = KeyWatch(db, interval=key_check_seconds)
            tasks = await stack.enter_async_context(anyio.create_task_group())
            await tasks.start(hub.run)
            await tasks.start(key_watch.run)
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
                queue=GroupCommit(db.enqueue_many),
                routes=ProviderRoutes(db),
                keys=VerifiedKeys(db),
            )
            yield {STATE_KEY: state, METRICS_KEY: app_metrics, KEY_WATCH_KEY: key_watch}

    return Starlette(
        routes=app_routes,
        middleware=[
            Middleware(
                MetricsMiddleware, metrics=app_metrics, routes=app_routes, templates=templates
            ),
            Middleware(CatchAllMiddleware),
        ],
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
