"""Provider type ``opencv``: detection inside the detectflow process.

Registered through the ``detectflow`` entry point, exactly like any vendor's
plugin. It declares ``in_process``: a config needs no ``endpoint_url`` (one
given is ignored), and the conformance kit skips its network faults. Options (all
optional) tune the detectors, see
:class:`~detectflow_opencv.detector.DetectorSettings`, plus ``max_workers``:
how many frames are detected at once (default 2, the cores of a small box).

OpenCV is imported when an adapter is created, not when the plugin loads, so
``detectflow plugins`` and every process that never uses this provider stay
as fast as without it.
"""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from detectflow import (
    Frame,
    PermanentProviderError,
    ProviderAdapter,
    ProviderConfig,
    RawDetection,
    TransientProviderError,
    hookimpl,
)

if TYPE_CHECKING:
    from detectflow_opencv.detector import OpenCVDetector

__all__ = ["DEFAULT_MAX_WORKERS", "OpenCVAdapter", "detectflow_provider_types"]

DEFAULT_MAX_WORKERS = 2


class OpenCVAdapter(ProviderAdapter):
    """Runs OpenCV's face cascade and HOG people detector on a small thread pool.

    OpenCV releases the GIL while it works, so the event loop keeps serving
    other frames and requests during a detection. A call that outlives
    ``timeout_seconds`` raises :class:`~detectflow.TransientProviderError`;
    the detection still finishes on its thread (OpenCV cannot be interrupted)
    and its result is dropped. Frames waiting for a free worker count against
    their timeout too, so an overloaded adapter sheds work instead of queueing
    it without bound.
    """

    provider_type = "opencv"
    in_process = True

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        from detectflow_opencv.detector import DetectorSettings, OpenCVDetector

        timeout = config.timeout_seconds
        if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
            raise PermanentProviderError(f"timeout_seconds must be > 0, got {timeout!r}")
        self.timeout = float(timeout)
        options = dict(config.options)
        workers = options.pop("max_workers", DEFAULT_MAX_WORKERS)
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise PermanentProviderError(f"opencv option max_workers must be >= 1, got {workers!r}")
        settings = DetectorSettings.from_config(config, options)
        self.detector: OpenCVDetector = OpenCVDetector(settings)
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="detectflow-opencv")
        self._closed = False

    async def detect(self, frame: Frame) -> list[RawDetection]:
        if self._closed:
            raise PermanentProviderError("opencv adapter is closed")
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(self._executor, self.detector.detect, frame.image)
        try:
            found = await asyncio.wait_for(work, self.timeout)
        except TimeoutError:
            raise TransientProviderError(
                f"OpenCV detection did not finish within {self.timeout:g} s"
            ) from None
        threshold = self.config.confidence_threshold
        return [d for d in found if d.confidence >= threshold]

    async def aclose(self) -> None:
        """Stop taking frames; detections already running finish on their threads."""
        if not self._closed:
            self._closed = True
            self._executor.shutdown(wait=False, cancel_futures=True)


@hookimpl
def detectflow_provider_types() -> list[type[ProviderAdapter]]:
    return [OpenCVAdapter]
