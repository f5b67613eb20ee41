"""Prometheus metrics for one app: request latency, WebSocket clients, broadcast lag.

Each app gets its own ``CollectorRegistry`` rather than the process-global
one, so several apps in one process (tests, an embedded server next to a
dataflow) never clash over metric names. Latency is labelled by route
*template* (``/api/v1/detections/{detection_id}``), never the raw path, so a
scan of random ids cannot blow up the number of series; a request no route
matched is labelled ``unmatched``. The hub's counters are read at scrape
time rather than mirrored, so they cannot drift from what ``/health`` says.

Series with a ``camera`` label (the dataflow's frames per camera) are bounded
the same way: cameras in the cameras table or named in a provider's
``options.cameras`` keep their name, other cameras get one while fewer
than ``max_cameras`` have one (the first seen keep theirs for good, so a
series never changes name), and every camera after that is counted under
``camera="_other"``. Made-up camera ids therefore add at most one series,
however many there are. The cameras' status series (``detectflow_camera_*``,
:mod:`detectflow.server.camera_status`) exist for configured cameras only.

``/metrics`` is a read: open in the default auth mode, and in ``required``
mode it needs a key of any scope (Prometheus sends one with
``authorization: {credentials: <key>}`` in its scrape config).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from detectflow.server.camera_status import camera_metric_families, camera_statuses
from detectflow.server.endpoints import Operation, http
from detectflow.server.hub import Hub
from detectflow.server.params import Query
from detectflow.server.state import in_thread, server_state
from detectflow.store.keys import Scope as KeyScope
from detectflow.store.outages import OutageCollector

__all__ = [
    "CAMERA_LABEL",
    "CONTENT_TYPE",
    "DEFAULT_MAX_CAMERAS",
    "METRICS_KEY",
    "OTHER_CAMERAS",
    "UNMATCHED",
    "CameraLabels",
    "Metrics",
    "MetricsMiddleware",
    "endpoints",
]

log = logging.getLogger(__name__)

METRICS_KEY = "detectflow_metrics"
"""Where the lifespan state keeps the app's :class:`Metrics`."""

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The classic text format, which generate_latest writes and every Prometheus reads."""
UNMATCHED = "unmatched"
CAMERA_LABEL = "camera"
OTHER_CAMERAS = "_other"
"""The one series every camera past the cap is counted in (not a valid camera id)."""
DEFAULT_MAX_CAMERAS = 64

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _HubCollector(Collector):
    """Reads the hub's live numbers at scrape time; nothing before the lifespan starts."""

    def __init__(self) -> None:
        self.hub: Hub | None = None

    def collect(self) -> Iterable[Metric]:
        hub = self.hub
        if hub is None:
            return
        stats = hub.stats()
        clients = GaugeMetricFamily(
            "detectflow_websocket_clients", "WebSocket clients connected now."
        )
        clients.add_metric([], stats["clients"])
        yield clients
        for name, value, text in (
            ("received", hub.received, "Detection and event messages the hub read from the bus."),
            ("malformed", hub.malformed, "Detection and event messages dropped as malformed."),
            ("dropped", hub.dropped_total, "Broadcasts dropped for clients too slow to keep up."),
        ):
            counter = CounterMetricFamily(f"detectflow_websocket_{name}_messages", text)
            counter.add_metric([], value)
            yield counter


class CameraLabels:
    """Which cameras keep their own series; see the module docstring."""

    def __init__(self, max_cameras: int = DEFAULT_MAX_CAMERAS) -> None:
        if max_cameras < 0:
            raise ValueError("max_cameras must not be negative")
        self.max_cameras = max_cameras
        self._named: set[str] = set()

    def label(self, camera: str, configured: Collection[str] = ()) -> str:
        if camera in configured or camera in self._named:
            return camera
        if len(self._named) < self.max_cameras:
            self._named.add(camera)
            return camera
        return OTHER_CAMERAS


def _folded(families: Iterable[Metric], label: Callable[[str], str]) -> Iterator[Metric]:
    """``families`` with every ``camera`` label passed through ``label``; samples
    that end up with the same labels are added up (counts, buckets and sums all add)."""
    for family in families:
        if not any(CAMERA_LABEL in sample.labels for sample in family.samples):
            yield family
            continue
        merged: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for sample in family.samples:
            labels = dict(sample.labels)
            if CAMERA_LABEL in labels:
                labels[CAMERA_LABEL] = label(labels[CAMERA_LABEL])
            key = (sample.name, tuple(labels.items()))
            merged[key] = merged.get(key, 0.0) + sample.value
        folded = Metric(family.name, family.documentation, family.type, family.unit)
        for (name, labels_items), value in merged.items():
            folded.add_sample(name, dict(labels_items), value)
        yield folded


class _BoundedView:
    """The registry as /metrics shows it: camera labels bounded."""

    def __init__(
        self,
        registry: CollectorRegistry,
        label: Callable[[str], str],
        extra: Iterable[Metric] = (),
    ) -> None:
        self._registry = registry
        self._label = label
        self._extra = extra

    def collect(self) -> Iterable[Metric]:
        yield from _folded(self._registry.collect(), self._label)
        yield from self._extra


class Metrics:
    """The metrics of one app, in a registry of their own."""

    def __init__(self, *, max_cameras: int = DEFAULT_MAX_CAMERAS) -> None:
        self.cameras = CameraLabels(max_cameras)
        self.registry = CollectorRegistry()
        self.request_seconds = Histogram(
            "detectflow_http_request_duration_seconds",
            "HTTP request latency by route template, method and status.",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.broadcast_lag_seconds = Histogram(
            "detectflow_websocket_broadcast_lag_seconds",
            "Time from a broadcast's publish to its send to a client. clock=publish when "
            "the bus message carried published_at, clock=hub when only the hub's receipt "
            "time was known.",
            ["clock"],
            buckets=_LAG_BUCKETS,
            registry=self.registry,
        )
        self._hub = _HubCollector()
        self.registry.register(self._hub)
        self.registry.register(OutageCollector())  # live updates dropped in an outage

    def watch(self, hub: Hub | None) -> None:
        """Report this hub's clients and counters (None: stop, at shutdown)."""
        self._hub.hub = hub

    def observe_lag(self, seconds: float, from_publish: bool) -> None:
        self.broadcast_lag_seconds.labels("publish" if from_publish else "hub").observe(
            max(0.0, seconds)
        )

    def render(
        self, configured_cameras: Collection[str] = (), extra: Iterable[Metric] = ()
    ) -> bytes:
        """The text exposition; ``configured_cameras`` always keep their names.
        ``extra`` families (read at scrape time, such as the cameras' status) are added."""

        def label(camera: str) -> str:
            return self.cameras.label(camera, configured_cameras)

        return generate_latest(_BoundedView(self.registry, label, extra))


def _find_route(routes: Sequence[BaseRoute], scope: Scope) -> BaseRoute | None:
    """The leaf route the router would pick (a full match, else a partial one: 405)."""
    partial: BaseRoute | None = None
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.NONE:
            continue
        if isinstance(route, Mount) and route.routes:
            found = _find_route(route.routes, {**scope, **child})
            if found is None:
                continue
            route = found
        if match is Match.FULL:
            return route
        partial = partial or route
    return partial


class MetricsMiddleware:
    """Times every HTTP request and labels it with its route template.

    The router records the route it picked in ``scope["route"]`` (the leaf,
    since a mount's router overwrites its own entry), so the template is
    usually a dict lookup. A request answered before routing (a 401 from
    the auth middleware) is matched against ``routes`` here instead.
    WebSocket connections are long-lived and are measured by the hub's
    gauges instead.
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        routes: Sequence[BaseRoute],
        templates: Mapping[int, str],
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self.templates = templates

    def _template(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:
            route = _find_route(self.routes, scope)
        return self.templates.get(id(route), UNMATCHED)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # unless the app answers; an exception escaping is our fault

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            elapsed = time.perf_counter() - start
            route = self._template(scope)
            self.metrics.request_seconds.labels(scope["method"], route, str(status)).observe(
                elapsed
            )


def _configured_cameras(configs: Iterable[Any]) -> frozenset[str]:
    names: set[str] = set()
    for config in configs:
        cameras = config.options.get("cameras")
        if isinstance(cameras, list):
            names.update(c for c in cameras if isinstance(c, str))
    return frozenset(names)


async def metrics_endpoint(request: Request) -> Response:
    Query(request).check()
    metrics: Any = getattr(request.state, METRICS_KEY)
    assert isinstance(metrics, Metrics)
    state = server_state(request)
    try:
        configs = await in_thread(state.database.list_providers)
        cameras = await in_thread(state.database.list_cameras)
    except Exception:  # a database outage must not take the scrape down with it
        log.warning("metrics: cannot read the configured cameras", exc_info=True)
        configs, cameras = [], []
    statuses = await in_thread(camera_statuses, state, cameras)
    configured = _configured_cameras(configs) | {c.id for c in cameras}
    body = await in_thread(metrics.render, configured, camera_metric_families(statuses))
    return Response(body, media_type=CONTENT_TYPE)


endpoints = [
    http(
        "/metrics",
        Operation(
            "GET",
            "metrics",
            "Prometheus metrics (text exposition format). A read: needs a key when "
            "DETECTFLOW_AUTH_MODE=required.",
            KeyScope.READ,
            {200: None},
            metrics_endpoint,
            tag="operations",
            extra={"x-content-type": ("text/plain",)},
        ),
    )
]
