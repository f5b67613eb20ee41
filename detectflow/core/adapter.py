"""The one interface every detection provider adapter implements.

Like httpx's ``BaseTransport.handle_request``, there is one method to write,
:meth:`ProviderAdapter.detect`; health checks and closing have defaults.
:class:`FunctionAdapter` is the ready test double, as ``MockTransport`` is
for httpx: wrap a function and you have an adapter.
"""

from __future__ import annotations

import inspect
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import ClassVar, Self

from detectflow.core.errors import ProviderError
from detectflow.core.frames import make_frame
from detectflow.core.images import encode_png
from detectflow.core.models import Frame, ProbeResult, ProviderConfig, RawDetection

__all__ = ["FunctionAdapter", "ProviderAdapter", "probe_frame"]


def probe_frame() -> Frame:
    """A small built-in image for health checks and provider tests."""
    width, height = 64, 48
    rgb = bytes((x * 4) % 256 for _ in range(height) for x in range(width) for _ in range(3))
    return make_frame(
        "detectflow-probe",
        encode_png(width, height, rgb),
        max_bytes=1 << 20,
        frame_id="probe",
    )


class ProviderAdapter(ABC):
    """Base class of provider adapters.

    Subclasses set ``provider_type`` and implement :meth:`detect`. ``detect``
    must raise :class:`~detectflow.core.errors.TransientProviderError` for
    faults worth retrying and :class:`~detectflow.core.errors.PermanentProviderError`
    for the rest; any other exception is treated as permanent.
    """

    provider_type: ClassVar[str]

    in_process: ClassVar[bool] = False
    """True when the detector runs inside detectflow's process (a local model).

    Such a type needs no ``endpoint_url``: ``detectflow provider add`` asks
    for no ``--url`` and the REST API stores none, and there is no network
    between detectflow and the detector to fail, so the conformance kit skips
    its network fault checks. An adapter that talks to a service, even at a
    fixed address, leaves it False.
    """

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config

    @abstractmethod
    async def detect(self, frame: Frame) -> list[RawDetection]:
        """Send ``frame`` to the provider and return its detections, unnormalized."""

    async def health(self) -> ProbeResult:
        """Round-trip the built-in probe frame; override for a cheaper native probe."""
        start = time.perf_counter()
        try:
            detections = await self.detect(probe_frame())
        except ProviderError as exc:
            elapsed = (time.perf_counter() - start) * 1000
            return ProbeResult(False, elapsed, "Connection failed", exc.message)
        elapsed = (time.perf_counter() - start) * 1000
        return ProbeResult(True, elapsed, f"Connection successful ({len(detections)} detections)")

    async def aclose(self) -> None:  # noqa: B027
        """Release connections. Must be safe to call more than once."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


Handler = Callable[[Frame], list[RawDetection] | Awaitable[list[RawDetection]]]


class FunctionAdapter(ProviderAdapter):
    """An adapter whose answers come from a function (sync or async)."""

    provider_type = "function"

    def __init__(self, handler: Handler, config: ProviderConfig | None = None) -> None:
        super().__init__(
            config
            or ProviderConfig(
                id="function", provider_name="function", provider_type="function", endpoint_url=""
            )
        )
        self.handler = handler
        self.closed = False

    async def detect(self, frame: Frame) -> list[RawDetection]:
        result = self.handler(frame)
        if inspect.isawaitable(result):
            return await result
        return result

    async def aclose(self) -> None:
        self.closed = True
