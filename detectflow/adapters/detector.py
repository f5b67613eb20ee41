"""Detect one frame with its camera's providers: the one detection path.

Inline ``send-frame`` and the dataflow's engine both call
:meth:`Detector.detect`, so a frame meets the same routing, adapters,
retries and failover whichever way it came in. The camera's provider group
comes from a :class:`~detectflow.core.routing.RouteTable` the caller keeps
current; one provider is called with its retries, several through a
:class:`~detectflow.adapters.failover.FailoverAdapter` over the pooled
adapters and the caller's breakers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from detectflow.adapters.failover import BreakerBoard, FailoverAdapter
from detectflow.adapters.pool import AdapterPool, Lease
from detectflow.core.models import Frame, FrameResult, ProviderConfig
from detectflow.core.pipeline import RetryPolicy, failed_result, run_frame
from detectflow.core.plugins import PluginRegistry
from detectflow.core.routing import RouteTable
from detectflow.core.settings import Settings

__all__ = ["Detector"]

log = logging.getLogger(__name__)


class Detector:
    """Routes frames to providers through one :class:`AdapterPool`.

    ``on_failover`` runs after every frame served by a provider group, so
    the owner can record what the breakers changed.
    """

    def __init__(
        self,
        registry: PluginRegistry,
        settings: Settings,
        *,
        breakers: BreakerBoard,
        source_system: str,
        on_failover: Callable[[], None] | None = None,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.breakers = breakers
        self.pool = AdapterPool(registry)
        self.source_system = source_system
        self.on_failover = on_failover

    def retry_policy(self, config: ProviderConfig) -> RetryPolicy:
        return RetryPolicy.for_provider(
            config,
            base_seconds=self.settings.retry_base_seconds,
            max_seconds=self.settings.retry_max_seconds,
        )

    async def detect(self, frame: Frame, routes: RouteTable) -> FrameResult | None:
        """Detect ``frame`` now; None when no provider serves its camera."""
        group = routes.for_camera(frame.camera_id)
        if not group:
            return None
        leases, unbuildable = await self._acquire(group)
        try:
            if not leases:
                reason = "cannot create adapter(s) for " + "; ".join(unbuildable)
                return failed_result(frame, reason, source=self.source_system)
            if unbuildable:
                log.warning("skipping provider(s) without an adapter: %s", "; ".join(unbuildable))
            if len(group) == 1:
                config, lease = leases[0]
                return await run_frame(
                    frame,
                    lease.adapter,
                    config=config,
                    registry=self.registry,
                    retry=self.retry_policy(config),
                    source=self.source_system,
                )
            members = [(config, lease.adapter) for config, lease in leases]
            failover = FailoverAdapter(members, self.breakers, routes.policy)
            try:
                return await run_frame(
                    frame,
                    failover,
                    registry=self.registry,
                    retry=self.retry_policy(failover.config),
                    source=self.source_system,
                )
            finally:
                if self.on_failover is not None:
                    self.on_failover()
        finally:
            for _, lease in leases:
                await self.pool.release(lease)

    async def _acquire(
        self, group: Sequence[ProviderConfig]
    ) -> tuple[list[tuple[ProviderConfig, Lease]], list[str]]:
        leases: list[tuple[ProviderConfig, Lease]] = []
        unbuildable: list[str] = []
        for config in group:
            try:
                leases.append((config, await self.pool.acquire(config)))
            except Exception as exc:  # an unknown type, a plugin gone, bad options
                unbuildable.append(f"{config.provider_name!r}: {exc}")
        return leases, unbuildable

    async def aclose(self) -> None:
        await self.pool.aclose()
