"""The objects every request shares, and how handlers reach them.

The lifespan builds one :class:`ServerState` and yields it under the
``detectflow`` key, so handlers get a typed object from ``request.state``
instead of a bag of loosely named attributes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar, cast

import anyio.to_thread
from starlette.requests import HTTPConnection

from detectflow.adapters.detector import Detector
from detectflow.core.plugins import PluginRegistry
from detectflow.core.settings import Settings
from detectflow.server.hub import Hub
from detectflow.store.breakers import BreakerRecorder
from detectflow.store.cache import Bus, Cache
from detectflow.store.live import LiveView
from detectflow.store.recorder import Recorder
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
    registry: PluginRegistry
    detector: Detector
    """Inline send-frame's way to the providers, with its own circuit breakers."""
    recorder: Recorder
    """The one recorder of results, shared with every dataflow."""

    async def record_breakers(self) -> None:
        """Record what inline send-frame changed in the breakers (events, live states)."""
        changes = self.detector.breakers.take_changes()
        if changes:
            recorder = BreakerRecorder(self.database, live=self.live, registry=self.registry)
            await in_thread(recorder.record, changes)


def server_state(conn: HTTPConnection) -> ServerState:
    return cast(ServerState, getattr(conn.state, STATE_KEY))
