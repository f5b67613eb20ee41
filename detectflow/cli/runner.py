"""Run the server and the dataflow together in one process.

``detectflow up`` and ``detectflow demo`` share this: the dataflow runs in a
background thread, the server (uvicorn) in the main thread, and both use the
same database, cache and bus objects, which is what lets the in-process cache
and bus stand in for Redis on the embedded default. With a Redis URL set, the
cache and bus are Redis and other processes share the live data too.
"""

from __future__ import annotations

import importlib.util
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from detectflow.core.settings import Settings
from detectflow.flows import FlowOptions, run_flow
from detectflow.flows.metrics import FlowMetrics
from detectflow.flows.observe import register_flow_metrics, sql_queue_depth
from detectflow.server.app import create_app
from detectflow.server.metrics import Metrics
from detectflow.store import Database, open_database
from detectflow.store.backends import close_cache_and_bus, open_cache_and_bus
from detectflow.store.cache import Bus, Cache
from detectflow.store.live import LiveView

__all__ = ["Stack", "default_recovery_dir", "open_stack", "run_server"]

log = logging.getLogger(__name__)


@dataclass
class Stack:
    """The shared objects of one process, and the threads that use them."""

    settings: Settings
    database: Database
    cache: Cache
    bus: Bus
    metrics: FlowMetrics = field(default_factory=FlowMetrics)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    flow_error: BaseException | None = None

    @property
    def live(self) -> LiveView:
        return LiveView(self.cache, self.bus)

    def start_flow(
        self,
        *,
        workers: int = 1,
        source_url: str = "sql",
        recovery_dir: Path | None = None,
        camera_id: str | None = None,
    ) -> None:
        """Run the dataflow in a thread; with ``recovery_dir``, a restart resumes its state.

        Called once per source: the demo runs the queue and a video camera side by side.
        """
        options = FlowOptions(
            source_url=source_url,
            workers=workers,
            recovery_dir=recovery_dir,
            camera_id=camera_id,
        )

        def run() -> None:
            try:
                run_flow(
                    self.settings,
                    options,
                    database=self.database,
                    live=self.live,
                    metrics=self.metrics,
                    stop=self.stop,
                )
            except BaseException as exc:
                self.flow_error = exc
                log.exception("the dataflow stopped")

        self.spawn(run, "detectflow-flow")

    def start_camera_flow(self, *, workers: int = 1, recovery_dir: Path | None = None) -> bool:
        """Read the cameras table's enabled cameras beside the queue; False without PyAV.

        A second flow in this process rather than a second source in one: a
        Bytewax flow has one input, and the queue's leases and acknowledgements
        stay as they are. The video source follows the table (cameras added,
        changed, disabled) by itself. Its snapshots go in a directory of their
        own, beside the queue flow's.
        """
        if importlib.util.find_spec("av") is None:
            log.info("cameras not read: PyAV is missing (pip install 'detectflow[video]')")
            return False
        self.start_flow(
            workers=workers,
            source_url="cameras",
            recovery_dir=None if recovery_dir is None else recovery_dir / "cameras",
        )
        return True

    def spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def serve(self, host: str, port: int) -> None:
        """Serve the API in this thread until interrupted, then stop everything."""
        metrics = Metrics()
        register_flow_metrics(
            metrics.registry, self.metrics, queue_depth=sql_queue_depth(self.database)
        )
        app = create_app(
            self.settings,
            database=self.database,
            cache=self.cache,
            bus=self.bus,
            metrics=metrics,
        )
        try:
            run_server(app, self.settings.with_overrides(host=host, port=port))
        finally:
            self.close()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=15)
        close_cache_and_bus(self.cache, self.bus)
        self.database.dispose()


def default_recovery_dir(settings: Settings) -> Path:
    """Where ``detectflow up`` keeps its recovery snapshots unless told otherwise."""
    return settings.recovery_dir or settings.data_dir / "recovery"


def run_server(app: ASGIApp, settings: Settings) -> None:
    """Serve ``app`` on ``settings.port``, and on ``deepstack_port`` too when set.

    One server, one app, one lifespan on both sockets: the DeepStack port is
    the same API (NVRs expect DeepStack at the root of a port of its own),
    not a second process with its own state.
    """
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    if settings.deepstack_port is None:
        server.run()
        return
    sockets = [
        socket.create_server((settings.host, port))
        for port in (settings.port, settings.deepstack_port)
    ]
    try:
        server.run(sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()


def open_stack(settings: Settings) -> Stack:
    """Open and migrate the database, and the cache and bus the settings name."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = open_database(settings)
    try:
        database.upgrade()
        cache, bus = open_cache_and_bus(settings)
    except BaseException:
        database.dispose()
        raise
    return Stack(settings, database, cache, bus)
