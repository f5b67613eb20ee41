"""Test a provider the one way that proves it works: detect on a real frame.

``POST /api/v1/detections/test-provider`` and ``detectflow provider test``
both call :func:`probe_provider`, so an operator gets the same verdict from
either. A health endpoint only says a process is up; the probe sends the
built-in probe image (:func:`detectflow.core.adapter.probe_frame`) through
the adapter, as a frame would go, and normalizes the answer. That exercises
the URL, the dialect, the API key and the answer's shape in one call, and a
provider that passes will not fail the first real frame for a reason a test
could have shown.

The outcome is a :class:`ProbeResult`, never an exception: a refused URL
(:mod:`detectflow.adapters.urls`), an unknown provider type, a timeout or a
broken adapter are all failed tests with a reason. With a ``recorder`` (the
:class:`~detectflow.store.Database`) it is stored as the config's
``test_status``, ``last_tested`` and ``last_error``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from typing import Protocol

import anyio
import anyio.to_thread

from detectflow.adapters.urls import Resolver, UnsafeProviderUrlError, check_provider_url
from detectflow.core.adapter import ProviderAdapter, probe_frame
from detectflow.core.errors import DetectflowError, NormalizationError, ProviderError
from detectflow.core.models import ProbeResult, ProviderConfig
from detectflow.core.normalize import normalize_detections
from detectflow.core.plugins import PluginRegistry
from detectflow.core.redact import redact_text

__all__ = ["AdapterOpener", "ProviderTestRecorder", "build_adapter", "probe_provider"]

log = logging.getLogger(__name__)

AdapterOpener = Callable[[ProviderConfig], AbstractAsyncContextManager[ProviderAdapter]]
"""Lends the adapter for a config: the server's pooled one, or a fresh one closed after."""


class ProviderTestRecorder(Protocol):
    """Where a test result is stored; :class:`~detectflow.store.Database` is one."""

    def record_provider_test(self, provider_id: str, result: ProbeResult) -> object: ...


def build_adapter(registry: PluginRegistry) -> AdapterOpener:
    """An opener that builds the adapter through ``registry`` and closes it afterwards."""

    @asynccontextmanager
    async def open_adapter(config: ProviderConfig) -> AsyncIterator[ProviderAdapter]:
        adapter = registry.create_adapter(config)
        try:
            yield adapter
        finally:
            await adapter.aclose()

    return open_adapter


async def probe_provider(
    config: ProviderConfig,
    *,
    open_adapter: AdapterOpener,
    recorder: ProviderTestRecorder | None = None,
    timeout: float | None = None,
    allow_link_local: bool = False,
    resolver: Resolver | None = None,
) -> ProbeResult:
    """Round-trip the probe frame through ``config``'s adapter; record the outcome.

    ``timeout`` (default ``config.timeout_seconds``) bounds the whole test.
    The result is recorded even when the test fails; a config deleted
    meanwhile is logged, and the result still returned.
    """
    limit = timeout if timeout is not None else config.timeout_seconds
    result = _redacted(await _round_trip(config, open_adapter, limit, allow_link_local, resolver))
    if recorder is not None:
        try:
            await anyio.to_thread.run_sync(recorder.record_provider_test, config.id, result)
        except KeyError:
            log.warning("provider %s was deleted before its test result could be stored", config.id)
    return result


def _redacted(result: ProbeResult) -> ProbeResult:
    """The result with the URL credentials its messages may quote redacted: it is
    shown to the caller and stored as ``last_error``."""
    error = redact_text(result.error) if result.error is not None else None
    return replace(result, message=redact_text(result.message), error=error)


async def _round_trip(
    config: ProviderConfig,
    open_adapter: AdapterOpener,
    limit: float,
    allow_link_local: bool,
    resolver: Resolver | None,
) -> ProbeResult:
    start = time.perf_counter()

    def failed(message: str, error: str) -> ProbeResult:
        return ProbeResult(False, (time.perf_counter() - start) * 1000, message, error)

    frame = probe_frame()
    try:
        with anyio.fail_after(limit):
            await check_provider_url(
                config.endpoint_url, allow_link_local=allow_link_local, resolver=resolver
            )
            async with open_adapter(config) as adapter:
                raws = await adapter.detect(frame)
    except UnsafeProviderUrlError as exc:
        return failed("Provider URL refused", exc.message)
    except TimeoutError:
        return failed("Connection failed", f"no answer within {limit:g} s")
    except ProviderError as exc:
        return failed("Connection failed", exc.message)
    except (DetectflowError, ValueError, TypeError) as exc:
        # An unknown provider type (PluginError) or a config the adapter refuses.
        return failed("Provider not usable", getattr(exc, "message", None) or str(exc))
    except Exception as exc:  # a broken vendor adapter is a failed test, not a crash
        log.exception("adapter %s failed its provider test", config.provider_type)
        return failed("Connection failed", f"adapter error: {exc!r}")
    elapsed = (time.perf_counter() - start) * 1000
    try:
        normalized = normalize_detections(frame, raws)
    except NormalizationError as exc:
        return ProbeResult(False, elapsed, "Provider answered nonsense", str(exc))
    except (TypeError, ValueError) as exc:
        return ProbeResult(False, elapsed, "Provider answered nonsense", repr(exc))
    found = len(normalized.detections)
    note = f"{found} detection{'s' if found != 1 else ''} on the probe image"
    if normalized.dropped_boxes:
        note += f", {normalized.dropped_boxes} degenerate box(es) dropped"
    return ProbeResult(True, elapsed, f"Connection successful ({note})")
