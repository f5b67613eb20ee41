"""Pick the cache and bus the settings name, and close them again.

One function for the server and the dataflow, so both processes of a
deployment land on the same Redis (``DETECTFLOW_REDIS_URL``) or, with none
set, on the in-process twins, which only share data inside one process.
"""

from __future__ import annotations

import contextlib
from typing import Protocol, runtime_checkable

from detectflow.core.settings import Settings
from detectflow.store.cache import Bus, Cache
from detectflow.store.memory import MemoryBus, MemoryCache
from detectflow.store.redis_backend import RedisBus, RedisCache

__all__ = ["close_cache_and_bus", "open_cache_and_bus"]


@runtime_checkable
class _Closeable(Protocol):
    def close(self) -> None: ...


def open_cache_and_bus(settings: Settings, *, prefix: str | None = None) -> tuple[Cache, Bus]:
    """Redis when ``settings.redis_url`` is set, else the in-process twins.

    Nothing connects yet: a Redis that is down shows up on first use (and the
    bus's subscriptions keep retrying), so start-up order does not matter. A
    malformed URL fails here with :class:`~detectflow.store.redis_backend.RedisURLError`.
    ``prefix`` (default ``settings.redis_prefix``) namespaces keys and
    channels so deployments can share a Redis.
    """
    if not settings.redis_url:
        return MemoryCache(), MemoryBus()
    prefix = settings.redis_prefix if prefix is None else prefix
    cache = RedisCache(settings.redis_url, prefix=prefix)
    try:
        bus = RedisBus(settings.redis_url, prefix=prefix)
    except BaseException:
        cache.close()
        raise
    return cache, bus


def close_cache_and_bus(cache: Cache, bus: Bus) -> None:
    """Close what :func:`open_cache_and_bus` returned (the in-process ones need nothing)."""
    with contextlib.ExitStack() as stack:  # the bus closes even if the cache fails to
        for resource in (cache, bus):
            if isinstance(resource, _Closeable):
                stack.callback(resource.close)
