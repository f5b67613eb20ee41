"""Errors, split by what the caller should do next.

A provider error is either *transient* (retry it later: timeouts, 5xx,
refused connections, an unavailable broker) or *permanent* (retrying cannot
help: 4xx, a malformed answer). The dataflow's retry step looks only at this
split, so every adapter must raise one of the two.
"""

from __future__ import annotations

__all__ = [
    "DetectflowError",
    "InvalidFrameError",
    "NormalizationError",
    "PermanentProviderError",
    "PluginError",
    "ProviderError",
    "TransientProviderError",
]


class DetectflowError(Exception):
    """Base of every error detectflow raises on purpose."""

    code: str = "detectflow_error"


class ProviderError(DetectflowError):
    """A detection provider could not produce detections for a frame."""

    code = "provider_error"
    transient: bool = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class TransientProviderError(ProviderError):
    """Worth retrying: timeout, 5xx, connection refused, broker unavailable."""

    code = "provider_unavailable"
    transient = True


class PermanentProviderError(ProviderError):
    """Not worth retrying: the provider refused the frame or answered nonsense."""

    code = "provider_rejected"
    transient = False


class InvalidFrameError(DetectflowError):
    """A frame failed validation before it reached a provider."""

    code = "invalid_frame"


class NormalizationError(DetectflowError):
    """A raw detection cannot be turned into a stored one (bad confidence...)."""

    code = "invalid_detection"


class PluginError(DetectflowError):
    """A plugin failed to load or broke a hook contract."""

    code = "plugin_error"
