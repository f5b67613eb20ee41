"""Provider adapters kept open across frames: the one pool of the process.

An adapter owns a connection pool, so building one per frame would throw
away keep-alive. Inline ``send-frame`` and the dataflow's engine both get
their adapters here (through :class:`~detectflow.adapters.detector.Detector`).
The pool keeps one adapter per provider config and replaces it when the
config's connection settings change; the old adapter is closed only once
the last frame using it has finished, so an update never breaks a frame
in flight.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from detectflow.core.adapter import ProviderAdapter
from detectflow.core.models import ProviderConfig
from detectflow.core.plugins import PluginRegistry

__all__ = ["AdapterPool", "Lease"]

log = logging.getLogger(__name__)


def _fingerprint(config: ProviderConfig) -> str:
    """What the adapter was built from; test results and timestamps do not count."""
    return json.dumps(
        [
            config.provider_type,
            config.endpoint_url,
            config.api_key,
            config.timeout_seconds,
            config.confidence_threshold,
            config.max_retries,
            config.max_faces_per_frame,
            config.enable_person_detection,
            config.enable_face_detection,
            config.enable_face_encoding,
            dict(config.options),
        ],
        sort_keys=True,
        default=str,
    )


@dataclass(eq=False)
class Lease:
    """One adapter of the pool and how many frames use it right now."""

    fingerprint: str
    adapter: ProviderAdapter
    config: ProviderConfig | None = None
    users: int = 0
    retired: bool = False


class AdapterPool:
    """One live adapter per provider id, created through the plugin registry."""

    def __init__(self, registry: PluginRegistry) -> None:
        self._registry = registry
        self._entries: dict[str, Lease] = {}
        self._draining: set[Lease] = set()
        self._closed = False

    @asynccontextmanager
    async def lease(self, config: ProviderConfig) -> AsyncIterator[ProviderAdapter]:
        """Use the adapter for ``config``; raises PluginError for an unknown type."""
        entry = await self.acquire(config)
        try:
            yield entry.adapter
        finally:
            await self.release(entry)

    async def acquire(self, config: ProviderConfig) -> Lease:
        """:meth:`lease` in two calls, for the per-frame path (no context manager
        object per frame); every ``acquire`` needs its :meth:`release`."""
        if self._closed:
            raise RuntimeError("adapter pool is closed")
        entry = self._entries.get(config.id)
        # A config object seen before is unchanged: skip the fingerprint.
        if entry is None or entry.config is not config:
            fingerprint = _fingerprint(config)
            if entry is None or entry.fingerprint != fingerprint:
                adapter = self._registry.create_adapter(config)
                if entry is not None:
                    await self._retire(entry)
                entry = Lease(fingerprint, adapter)
                self._entries[config.id] = entry
            entry.config = config
        entry.users += 1
        return entry

    async def release(self, entry: Lease) -> None:
        entry.users -= 1
        if entry.retired and entry.users == 0 and entry in self._draining:
            self._draining.discard(entry)
            await entry.adapter.aclose()

    async def discard(self, provider_id: str) -> None:
        """Forget a deleted provider's adapter (closed once idle)."""
        entry = self._entries.pop(provider_id, None)
        if entry is not None:
            await self._retire(entry)

    async def _retire(self, entry: Lease) -> None:
        entry.retired = True
        if entry.users == 0:
            await entry.adapter.aclose()
        else:
            self._draining.add(entry)

    @property
    def open_count(self) -> int:
        return len(self._entries) + len(self._draining)

    async def aclose(self) -> None:
        """Close every adapter, in use or not (the server is shutting down)."""
        self._closed = True
        entries = [*self._entries.values(), *self._draining]
        self._entries.clear()
        self._draining.clear()
        for entry in entries:
            try:
                await entry.adapter.aclose()
            except Exception:
                log.exception("closing the %s adapter failed", entry.adapter.provider_type)
