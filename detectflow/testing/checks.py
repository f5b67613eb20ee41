"""The rules every provider adapter must keep, one coroutine per rule.

Each check raises :class:`ConformanceFailure` with a message naming the rule
and what the adapter did instead, or :class:`CheckSkipped` when the target
cannot produce the situation. They need no pytest, so a vendor can also run
them from a script; :mod:`detectflow.testing.suite` wraps them as tests.
"""

from __future__ import annotations

from collections.abc import Sequence

from detectflow.core.adapter import ProviderAdapter
from detectflow.core.errors import NormalizationError, ProviderError, TransientProviderError
from detectflow.core.models import Frame, ProbeResult, RawDetection
from detectflow.core.normalize import normalize_detections
from detectflow.core.pipeline import RetryPolicy, run_frame
from detectflow.testing._answers import (
    answers_alone,
    detect_all,
    raw_list,
    report_failed_calls,
    report_wrong_answers,
)
from detectflow.testing._harness import ConformanceFailure, bounded, describe, open_adapter
from detectflow.testing.target import ConformanceTarget

__all__ = [
    "BOX_TOLERANCE",
    "check_aclose_idempotent",
    "check_async_context_manager",
    "check_concurrent_answers",
    "check_fault",
    "check_health",
    "check_provider_type",
    "check_timeout",
    "check_valid_answers",
]

BOX_TOLERANCE = 0.05
"""How far (in fractions of the frame) a raw box may overshoot the frame.

Real detectors overshoot a little and normalization clamps that; a box far
outside is an adapter declaring the wrong ``units`` or ``box_format``, which
clamping would silently turn into a wrong, frame-sized box.
"""

_CLOSE_SECONDS = 5.0


async def check_provider_type(target: ConformanceTarget) -> None:
    async with open_adapter(target, "healthy", target.healthy_timeout_seconds) as adapter:
        provider_type = getattr(type(adapter), "provider_type", None)
        if not isinstance(provider_type, str) or not provider_type:
            raise ConformanceFailure(
                f"{type(adapter).__name__}.provider_type must be a non-empty str class "
                "attribute (it keys the adapter in detectflow_provider_types), "
                f"got {provider_type!r}"
            )


async def check_valid_answers(target: ConformanceTarget) -> None:
    """Healthy answers normalize cleanly: no rejected confidence, no lost or misplaced box."""
    timeout = target.healthy_timeout_seconds
    found = 0
    async with open_adapter(target, "healthy", timeout) as adapter:
        for index in range(target.valid_frames):
            frame = target.frame(index)
            outcome = await bounded(adapter.detect(frame), timeout + target.grace_seconds)
            if outcome.hung:
                raise ConformanceFailure(
                    f"healthy provider did not answer frame {index} within {timeout:g} s"
                )
            if outcome.error is not None:
                raise ConformanceFailure(
                    f"healthy provider failed frame {index}: {describe(outcome.error)}"
                )
            raws = raw_list(outcome.value, f"detect(frame {index})")
            _check_raws(frame, index, raws)
            try:
                normalized = normalize_detections(frame, raws)
            except NormalizationError as exc:
                raise ConformanceFailure(
                    f"frame {index}: answer does not normalize: {exc}"
                ) from None
            if normalized.dropped_boxes:
                raise ConformanceFailure(
                    f"frame {index}: {normalized.dropped_boxes} box(es) have no area inside the "
                    "frame (width or height <= 0 after normalization)"
                )
            result = await run_frame(frame, adapter, retry=RetryPolicy(max_retries=0))
            if not result.ok:
                raise ConformanceFailure(f"frame {index}: run_frame failed: {result.error}")
            found += len(raws)
    if not found:
        raise ConformanceFailure(
            f"the healthy provider found nothing in {target.valid_frames} frames, so no answer "
            "was checked; make it answer these frames with detections"
        )


def _check_raws(frame: Frame, index: int, raws: Sequence[RawDetection]) -> None:
    for n, raw in enumerate(raws):
        where = f"frame {index}, detection {n}"
        if not isinstance(raw.label, str) or not raw.label.strip():
            raise ConformanceFailure(f"{where}: label must be a non-empty str, got {raw.label!r}")
        if raw.units == "pixel" and not (frame.width and frame.height):
            continue  # normalization reports this case itself
        scale = (frame.width or 1, frame.height or 1) if raw.units == "pixel" else (1, 1)
        try:
            a, b, c, d = (float(v) for v in raw.box)
        except (TypeError, ValueError):
            continue  # normalization reports a malformed box
        corners = (a, b, a + c, b + d) if raw.box_format == "xywh" else (a, b, c, d)
        fractions = [v / scale[i % 2] for i, v in enumerate(corners)]
        if any(not -BOX_TOLERANCE <= v <= 1 + BOX_TOLERANCE for v in fractions):
            raise ConformanceFailure(
                f"{where}: box {raw.box} ({raw.box_format}, {raw.units}) lies far outside the "
                f"{frame.width}x{frame.height} frame; are units/box_format declared right?"
            )


async def check_timeout(target: ConformanceTarget) -> None:
    """``detect`` against a provider that does not answer ends transiently, in time."""
    timeout, limit = target.timeout_seconds, target.timeout_seconds + target.grace_seconds
    async with open_adapter(target, "slow", timeout) as adapter:
        outcome = await bounded(adapter.detect(target.frame(0)), limit)
    if outcome.hung:
        raise ConformanceFailure(
            f"detect was still waiting after {outcome.elapsed:.2f} s with timeout_seconds="
            f"{timeout:g} (allowed: {limit:g} s): the timeout is not honoured"
        )
    if outcome.error is None:
        raise ConformanceFailure(
            f"detect returned {outcome.value!r:.200} from a provider that does not answer "
            f"within timeout_seconds={timeout:g}; it must raise TransientProviderError"
        )
    if not isinstance(outcome.error, TransientProviderError):
        raise ConformanceFailure(
            f"a timeout must raise TransientProviderError, got {describe(outcome.error)} "
            f"after {outcome.elapsed:.2f} s"
        )


async def check_fault(
    target: ConformanceTarget, situation: str, expected: type[ProviderError]
) -> None:
    """The adapter facing ``situation`` raises ``expected`` with a message, in time."""
    timeout, limit = target.timeout_seconds, target.timeout_seconds + target.grace_seconds
    async with open_adapter(target, situation, timeout) as adapter:
        outcome = await bounded(adapter.detect(target.frame(0)), limit)
    kind = expected.__name__
    if outcome.hung:
        raise ConformanceFailure(
            f"{situation}: detect was still running after {outcome.elapsed:.2f} s "
            f"(timeout_seconds={timeout:g}); expected {kind}"
        )
    if outcome.error is None:
        raise ConformanceFailure(
            f"{situation}: detect returned {outcome.value!r:.200}; expected {kind}"
        )
    if not isinstance(outcome.error, expected):
        raise ConformanceFailure(f"{situation}: expected {kind}, got {describe(outcome.error)}")
    if not str(outcome.error.message).strip():
        raise ConformanceFailure(f"{situation}: {kind} has an empty message; say what failed")


async def check_concurrent_answers(target: ConformanceTarget) -> None:
    """Many calls in flight on one adapter each get their own frame's answer."""
    count = target.concurrency
    frames = [target.frame(i) for i in range(count)]
    async with open_adapter(target, "healthy", target.healthy_timeout_seconds) as adapter:
        alone = await answers_alone(adapter, frames)
        limit = target.healthy_timeout_seconds + target.grace_seconds
        together = await detect_all(adapter, frames, limit, f"{count} concurrent detect calls")
    report_failed_calls(together, "concurrent detect calls")
    report_wrong_answers(together, alone, f"{count} concurrent answers")


async def check_aclose_idempotent(target: ConformanceTarget) -> None:
    """``aclose`` twice is harmless, whether or not the adapter was used."""
    timeout = target.healthy_timeout_seconds
    async with open_adapter(target, "healthy", timeout) as unused:
        await _close_twice(unused, "an unused adapter")
    async with open_adapter(target, "healthy", timeout) as used:
        await used.detect(target.frame(0))
        await _close_twice(used, "an adapter after detect")


async def _close_twice(adapter: ProviderAdapter, what: str) -> None:
    for attempt in ("first", "second"):
        outcome = await bounded(adapter.aclose(), _CLOSE_SECONDS)
        if outcome.hung:
            raise ConformanceFailure(
                f"{what}: {attempt} aclose() did not finish in {_CLOSE_SECONDS:g} s"
            )
        if outcome.error is not None:
            raise ConformanceFailure(
                f"{what}: {attempt} aclose() raised {describe(outcome.error)}; "
                "it must be idempotent"
            )


async def check_async_context_manager(target: ConformanceTarget) -> None:
    """``async with adapter as a`` yields the adapter itself, usable, and exits cleanly."""
    timeout = target.healthy_timeout_seconds
    async with open_adapter(target, "healthy", timeout) as adapter, adapter as entered:
        if entered is not adapter:
            raise ConformanceFailure(
                f"`async with adapter` must yield the adapter itself, got {entered!r:.200}"
            )
        raw_list(await entered.detect(target.frame(0)), "detect inside `async with`")


async def check_health(target: ConformanceTarget, situation: str, expect_ok: bool) -> None:
    """``health()`` reports rather than raises: ok against ``healthy``, not ok otherwise."""
    timeout = target.healthy_timeout_seconds if expect_ok else target.timeout_seconds
    async with open_adapter(target, situation, timeout) as adapter:
        outcome = await bounded(adapter.health(), timeout + target.grace_seconds)
    if outcome.hung:
        raise ConformanceFailure(
            f"{situation}: health() still running after {outcome.elapsed:.2f} s"
        )
    if outcome.error is not None:
        raise ConformanceFailure(
            f"{situation}: health() raised {describe(outcome.error)}; "
            "it must return a ProbeResult with ok=False instead"
        )
    probe = outcome.value
    if not isinstance(probe, ProbeResult):
        raise ConformanceFailure(
            f"{situation}: health() returned {probe!r:.200}, not a ProbeResult"
        )
    if probe.ok is not expect_ok:
        raise ConformanceFailure(
            f"{situation}: health() returned ok={probe.ok} ({probe.message}; {probe.error}); "
            f"expected ok={expect_ok}"
        )
    if not expect_ok and not (probe.error or probe.message):
        raise ConformanceFailure(f"{situation}: a failed health() must say why (error or message)")
