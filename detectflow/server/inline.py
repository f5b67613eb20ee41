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
from collections.abc import Sequence

from detectflow.core.models import Frame, FrameResult
from detectflow.core.routing import RouteTable
from detectflow.server.state import ServerState
from detectflow.store.recorder import Recorder
from detectflow.store.repository import Database

__all__ = ["detect_and_record", "record_inline_results"]

log = logging.getLogger(__name__)


def record_inline_results(
    database: Database, recorder: Recorder, results: Sequence[FrameResult]
) -> None:
    """Record a group of inline results (:class:`~detectflow.store.group_commit.GroupCommit`).

    A failed frame is first put in the queue so its bytes are kept with the
    failure (``failed`` status, error message) and can be retried: nothing
    a client sent is lost.
    """
    for result in results:
        if not result.ok:
            database.enqueue(result.frame)
    recorder.record(results)


async def detect_and_record(
    state: ServerState,
    frame: Frame,
    *,
    routes: RouteTable | None = None,
    record: bool = True,
) -> FrameResult | None:
    """Detect ``frame`` and record the result; None when no provider serves its camera.

    ``routes`` replaces the configured provider groups for this frame (the
    DeepStack gateway's ``/v1/vision/custom/{model}`` names one config);
    ``record=False`` only detects: nothing is stored or published, but the
    breakers' changes still are, since they describe the providers, not the frame.
    The answer waits until the result is durable; concurrent requests'
    results are written together.
    """
    table = routes if routes is not None else await state.routes.get()
    result = await state.detector.detect(frame, table)
    if result is None:
        return None
    try:
        await state.record_breakers()
    except Exception:
        log.exception("recording circuit breaker changes failed")
    if record:
        await state.results.submit(result)
    return result
