"""The objects every request shares, and how handlers reach them.

The lifespan builds one :class:`ServerState` and yields it under the
``detectflow`` key, so handlers get a typed object from ``request.state``
instead of a bag of loosely named attributes.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar, cast

import anyio
import anyio.to_thread
from starlette.requests import HTTPConnection

from detectflow.adapters.detector import Detector
from detectflow.core.models import Frame, FrameResult, ProviderConfig
from detectflow.core.plugins import PluginRegistry
from detectflow.core.routing import RouteTable
from detectflow.core.settings import Settings
from detectflow.server.hub import Hub
from detectflow.store.breakers import BreakerRecorder
from detectflow.store.group_commit import GroupCommit
from detectflow.store.keys import ApiKey, hash_key
from detectflow.store.live import LiveView
from detectflow.store.queue import Queued
from detectflow.store.recorder import Recorder
from detectflow.store.repository import Database

__all__ = [
    "STATE_KEY",
    "ProviderRoutes",
    "ServerState",
    "VerifiedKeys",
    "in_thread",
    "server_state",
]

STATE_KEY = "detectflow"

P = ParamSpec("P")
T = TypeVar("T")


async def in_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run blocking store I/O (SQL, Redis) off the event loop."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


class ProviderRoutes:
    """Every camera's provider group, read from the database at most every ``ttl`` seconds.

    Configs change rarely and reading them all costs a SQL round trip, which
    send-frame paid for every frame. This process's own provider changes
    :meth:`invalidate` it at once; another process's are seen within ``ttl``.
    """

    def __init__(self, database: Database, *, ttl: float = 1.0) -> None:
        self._database = database
        self._ttl = ttl
        self._table: RouteTable | None = None
        self._by_name: dict[str, ProviderConfig] = {}
        self._read_at = 0.0
        self._lock = anyio.Lock()

    async def get(self) -> RouteTable:
        if self._table is None or time.monotonic() - self._read_at >= self._ttl:
            async with self._lock:  # one read for all requests arriving meanwhile
                if self._table is None or time.monotonic() - self._read_at >= self._ttl:
                    configs = await in_thread(self._database.list_providers)
                    self._table = RouteTable.build(configs)
                    self._by_name = {c.provider_name: c for c in configs}
                    self._read_at = time.monotonic()
        return self._table

    async def named(self, provider_name: str) -> ProviderConfig | None:
        """The config called ``provider_name``, active or not, from the same read."""
        await self.get()
        return self._by_name.get(provider_name)

    def invalidate(self) -> None:
        self._table = None


class VerifiedKeys:
    """Keys verified in the last ``ttl`` seconds, so a client sending frames does not
    cost a database lookup per request.

    Measured (``bench/ingest.py``): the lookup, a thread hop and a query, was
    the largest part of a queued frame's server time. A key revoked anywhere
    (``detectflow keys revoke`` from another process, or the API) stops
    working within ``ttl`` seconds, as open WebSockets are closed within
    the key watch's interval. Unknown keys are never remembered, so a key
    just created works at once.
    """

    def __init__(self, database: Database, *, ttl: float = 2.0, max_keys: int = 10_000) -> None:
        self._database = database
        self._ttl = ttl
        self._max_keys = max_keys
        self._known: dict[str, tuple[ApiKey, float]] = {}

    async def verify(self, token: str) -> ApiKey | None:
        digest = hash_key(token)
        now = time.monotonic()
        hit = self._known.get(digest)
        if hit is not None and now - hit[1] < self._ttl:
            return hit[0]
        key = await in_thread(self._database.verify_api_key, token)
        if key is None:
            self._known.pop(digest, None)
            return None
        if len(self._known) >= self._max_keys:
            self._known.pop(next(iter(self._known)))  # the oldest entry
        self._known[digest] = (key, now)
        return key


@dataclass(frozen=True, slots=True)
class ServerState:
    settings: Settings
    database: Database
    live: LiveView
    hub: Hub
    registry: PluginRegistry
    detector: Detector
    """Inline send-frame's way to the providers, with its own circuit breakers."""
    recorder: Recorder
    """The one recorder of results, shared with every dataflow."""
    results: GroupCommit[FrameResult, None]
    """Inline results on their way to the recorder, written in groups."""
    queue: GroupCommit[Frame, Queued]
    """Frames sent with ``?mode=queue``, queued in groups."""
    routes: ProviderRoutes
    keys: VerifiedKeys

    async def record_breakers(self) -> None:
        """Record what inline send-frame changed in the breakers (events, live states)."""
        changes = self.detector.breakers.take_changes()
        if changes:
            recorder = BreakerRecorder(self.database, live=self.live, registry=self.registry)
            await in_thread(recorder.record, changes)


def server_state(conn: HTTPConnection) -> ServerState:
    return cast(ServerState, getattr(conn.state, STATE_KEY))
