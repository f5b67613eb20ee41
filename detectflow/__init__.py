"""detectflow: connect camera frame streams to object-detection services."""

from detectflow.core.adapter import FunctionAdapter, ProviderAdapter
from detectflow.core.errors import (
    DetectflowError,
    InvalidFrameError,
    NormalizationError,
    PermanentProviderError,
    PluginError,
    ProviderError,
    TransientProviderError,
)
from detectflow.core.hookspecs import hookimpl
from detectflow.core.models import (
    BBox,
    Detection,
    DetectionEvent,
    Frame,
    FrameResult,
    ProbeResult,
    ProviderConfig,
    QueueItem,
    RawDetection,
)
from detectflow.core.settings import Settings

__version__ = "0.1.0"

__all__ = [
    "BBox",
    "DetectflowError",
    "Detection",
    "DetectionEvent",
    "Frame",
    "FrameResult",
    "FunctionAdapter",
    "InvalidFrameError",
    "NormalizationError",
    "PermanentProviderError",
    "PluginError",
    "ProbeResult",
    "ProviderAdapter",
    "ProviderConfig",
    "ProviderError",
    "QueueItem",
    "RawDetection",
    "Settings",
    "TransientProviderError",
    "__version__",
    "hookimpl",
]
