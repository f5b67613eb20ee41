"""One frame's way through a provider: detect, retry, normalize, transform.

The dataflow runs this for every frame it reads and the server runs it for
``send-frame`` in inline mode, so both record exactly the same outcome. The
function never raises for a provider's fault: it returns a
:class:`~detectflow.core.models.FrameResult` that either completed or failed
with its reason, and the events that say so.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from detectflow.core.adapter import ProviderAdapter
from detectflow.core.errors import DetectflowError, PluginError, ProviderError
from detectflow.core.ids import event_id
from detectflow.core.models import (
    DetectionEvent,
    EventType,
    Frame,
    FrameResult,
    ProviderConfig,
    Severity,
)
from detectflow.core.normalize import DEFAULT_LABEL_MAP, normalize_detections
from detectflow.core.plugins import PluginRegistry
from detectflow.core.redact import redact_text

__all__ = ["RetryPolicy", "failed_result", "run_frame"]

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter: delay n is uniform in [0, base * 2**n]."""

    max_retries: int = 3
    base_seconds: float = 0.2
    max_seconds: float = 10.0

    @classmethod
    def for_provider(
        cls, config: ProviderConfig, *, base_seconds: float, max_seconds: float
    ) -> RetryPolicy:
        """A provider's retry budget with the deployment's backoff timings: the
        one place both send-frame and the dataflow get their policy from."""
        return cls(config.max_retries, base_seconds, max_seconds)

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.max_seconds, self.base_seconds * (2**retry))
        return (rng or random).uniform(0.0, ceiling)


def failed_result(
    frame: Frame, reason: str, *, attempts: int = 0, elapsed_ms: int = 0, source: str = "detectflow"
) -> FrameResult:
    """The record of a frame that ends failed: no detections, one failure event.

    ``reason`` often quotes the provider's URL; its credentials are redacted
    here, once, before the text reaches events, the live cache or a client.
    """
    reason = redact_text(reason)
    event = DetectionEvent(
        id=event_id(frame.frame_id, EventType.DETECTION_FAILED),
        camera_id=frame.camera_id,
        event_type=EventType.DETECTION_FAILED,
        severity=Severity.WARNING,
        message=f"Detection failed: {reason}",
        source_system=source,
        created_at=frame.timestamp,
        updated_at=frame.timestamp,
    )
    return FrameResult(frame, (), (event,), reason, attempts, elapsed_ms)


async def run_frame(
    frame: Frame,
    adapter: ProviderAdapter,
    *,
    config: ProviderConfig | None = None,
    registry: PluginRegistry | None = None,
    retry: RetryPolicy | None = None,
    sleep: Sleep = asyncio.sleep,
    source: str = "detectflow",
) -> FrameResult:
    """Detect ``frame`` with retries on transient errors; never raises for provider faults."""
    config = config or adapter.config
    policy = retry or RetryPolicy(max_retries=config.max_retries)
    start = time.perf_counter()
    attempts = 0

    def elapsed() -> int:
        return int((time.perf_counter() - start) * 1000)

    while True:
        attempts += 1
        try:
            raws = await adapter.detect(frame)
            break
        except ProviderError as exc:
            if exc.transient and attempts <= policy.max_retries:
                await sleep(policy.delay(attempts - 1))
                continue
            kind = "transient" if exc.transient else "permanent"
            reason = f"{kind} provider error after {attempts} attempt(s): {exc.message}"
            return failed_result(
                frame, reason, attempts=attempts, elapsed_ms=elapsed(), source=source
            )
        except Exception as exc:  # an adapter bug is a permanent failure, not a crash
            reason = f"adapter error: {exc!r}"
            return failed_result(
                frame, reason, attempts=attempts, elapsed_ms=elapsed(), source=source
            )

    # Rows are keyed (id, created_at) (day partitions): created_at must be what a
    # replay of this frame brings again, like the ids, so it is the frame's time.
    now = frame.timestamp
    try:
        label_map = registry.label_map() if registry else DEFAULT_LABEL_MAP
        normalized = normalize_detections(
            frame,
            raws,
            confidence_threshold=config.confidence_threshold,
            label_map=label_map,
            now=now,
        )
        detections = list(normalized.detections)
        if registry is not None:
            detections = registry.transform(frame, detections)
    except PluginError as exc:
        reason = str(exc)
        return failed_result(frame, reason, attempts=attempts, elapsed_ms=elapsed(), source=source)
    except DetectflowError as exc:
        reason = f"malformed provider answer: {exc}"
        return failed_result(frame, reason, attempts=attempts, elapsed_ms=elapsed(), source=source)

    count = len(detections)
    event = DetectionEvent(
        id=event_id(frame.frame_id, EventType.DETECTION_COMPLETED),
        camera_id=frame.camera_id,
        event_type=EventType.DETECTION_COMPLETED,
        severity=Severity.INFO,
        message=f"Detected {count} object{'s' if count != 1 else ''}",
        detection_id=detections[0].id if detections else None,
        confidence_score=max([d.confidence for d in detections]) if detections else None,
        source_system=source,
        created_at=now,
        updated_at=now,
    )
    return FrameResult(
        frame,
        tuple(detections),
        (event,),
        None,
        attempts,
        elapsed(),
        dropped_boxes=normalized.dropped_boxes,
    )
