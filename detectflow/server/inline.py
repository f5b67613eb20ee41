"""Inline ``send-frame``: detect now, record through the one recorder.

The frame takes the dataflow's path through the providers
(:class:`~detectflow.adapters.detector.Detector`: the camera's provider
group, retries, failover with the server's own breakers) and its result is
recorded by the same :class:`~detectflow.store.recorder.Recorder` the flow
uses, so the event log, live view, plugins and statistics see it exactly
as they would a flow's result.
"""

from __future__ import annotations

import logging

from detectflow.core.models import Frame, FrameResult
from detectflow.server.state import ServerState, in_thread

__all__ = ["detect_and_record"]

log = logging.getLogger(__name__)


async def detect_and_record(state: ServerState, frame: Frame) -> FrameResult | None:
    """Detect ``frame`` and record the result; None when no provider serves its camera.

    A failed frame is first put in the queue so its bytes are kept with the
    failure (``failed`` status, error message) and can be retried: nothing
    a client sent is lost.
    """
    result = await state.detector.detect(frame, await state.routes.get())
    if result is None:
        return None
    try:
        await state.record_breakers()
    except Exception:
        log.exception("recording circuit breaker changes failed")
    if not result.ok:
        await in_thread(state.database.enqueue, frame)
    await in_thread(state.recorder.record, [result])
    return result
