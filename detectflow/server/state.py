"""The objects every request shares, and how handlers reach them.

The lifespan builds one :class:`ServerState` and yields it under the
``detectflow`` key, so handlers get a typed object from ``request.state``
instead of a bag of loosely named attributes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar, cast

import anyio.to_thread
from starlette.requests import HTTPConnection

from detectflow.adapters.failover import BreakerBoard
from detectflow.core.models import FrameResult, ProviderConfig
from detectflow.core.pipeline import RetryPolicy
from detectflow.core.plugins import PluginRegistry
from detectflow.core.settings import Settings
from detectflow.server.adapter_pool import AdapterPool
from detectflow.server.hub import Hub
from detectflow.store.breakers import BreakerRecorder
from detectflow.store.cache import Bus, Cache
from detectflow.store.live import LiveView
from detectflow.store.repository import Database

__all__ = ["STATE_KEY", "ServerState", "in_thread", "server_state"]

STATE_KEY = "detectflow"

P = ParamSpec("P")
T = TypeVar("T")


async def in_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run blocking store I/O (SQL, Redis) off the event loop."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


@dataclass(frozen=True, slots=True)
class ServerState:
    settings: Settings
    database: Database
    cache: Cache
    bus: Bus
    live: LiveView
    hub: Hub
    adapters: AdapterPool
    registry: PluginRegistry
    breakers: BreakerBoard = field(
        default_factory=lambda: BreakerBoard(source_system="detectflow.server")
    )
    """Inline send-frame's circuit breakers (the dataflow has its own)."""

    def retry_policy(self, config: ProviderConfig) -> RetryPolicy:
        return RetryPolicy(
            max_retries=config.max_retries,
            base_seconds=self.settings.retry_base_seconds,
            max_seconds=self.settings.retry_max_seconds,
        )

    async def record_breakers(self) -> None:
        """Record what inline send-frame changed in the breakers (events, live states)."""
        changes = self.breakers.take_changes()
        if changes:
            recorder = BreakerRecorder(self.database, live=self.live, registry=self.registry)
            await in_thread(recorder.record, changes)

    async def record(self, result: FrameResult, *, keep_failed_frame: bool = True) -> None:
        """Store a processed frame and publish it live, the way the dataflow's sinks do.

        A failed frame is first put in the queue so its bytes are kept with
        the failure (``failed`` status, error message) and can be retried;
        nothing a client sent is lost.
        """
        if not result.ok and keep_failed_frame:
            await in_thread(self.database.enqueue, result.frame)
        await in_thread(self.database.record_results, [result])
        await in_thread(self.live.publish, [result])


def server_state(conn: HTTPConnection) -> ServerState:
    return cast(ServerState, getattr(conn.state, STATE_KEY))
