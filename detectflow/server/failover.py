"""Inline ``send-frame`` with the dataflow's provider routing and failover.

The frame goes to its camera's provider group (:mod:`detectflow.core.routing`:
assignments in the configs' ``options``, else the active config followed by
the other unassigned ones). One provider: as before, with its retries. More:
a :class:`~detectflow.adapters.failover.FailoverAdapter` over the pooled
adapters, with the server's own breakers (``ServerState.breakers``), whose
changes are recorded like the dataflow's (event log, live view, plugins).
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack

from detectflow.adapters.failover import FailoverAdapter
from detectflow.core.adapter import ProviderAdapter
from detectflow.core.errors import PluginError
from detectflow.core.models import Frame, FrameResult, ProviderConfig
from detectflow.core.pipeline import failed_result, run_frame
from detectflow.core.routing import RouteTable
from detectflow.server.state import ServerState, in_thread

__all__ = ["detect_inline"]

log = logging.getLogger(__name__)


async def detect_inline(state: ServerState, frame: Frame, *, source: str) -> FrameResult | None:
    """Detect ``frame`` now; None when no provider serves its camera."""
    routes = RouteTable.build(await in_thread(state.database.list_providers))
    group = routes.for_camera(frame.camera_id)
    if not group:
        return None
    async with AsyncExitStack() as stack:
        members: list[tuple[ProviderConfig, ProviderAdapter]] = []
        gone: list[str] = []
        for config in group:
            try:
                adapter = await stack.enter_async_context(state.adapters.lease(config))
            except PluginError as exc:  # the provider's plugin is gone
                gone.append(exc.args[0] if exc.args else str(exc))
                continue
            members.append((config, adapter))
        if not members:
            return failed_result(frame, "; ".join(gone), source=source)
        if gone:
            log.warning("send-frame skips provider(s): %s", "; ".join(gone))
        if len(members) == 1:
            config, adapter = members[0]
            return await run_frame(
                frame,
                adapter,
                config=config,
                registry=state.registry,
                retry=state.retry_policy(config),
                source=source,
            )
        failover = FailoverAdapter(members, state.breakers, routes.policy)
        try:
            return await run_frame(
                frame,
                failover,
                registry=state.registry,
                retry=state.retry_policy(failover.config),
                source=source,
            )
        finally:
            try:
                await state.record_breakers()
            except Exception:
                log.exception("recording circuit breaker changes failed")
