"""A camera's reader settings, read from :attr:`Camera.options <detectflow.core.cameras.Camera>`.

The camera row (or a ``--source`` URL) carries them as loose JSON-ish
values; :func:`reader_options` checks them once, before any thread starts,
so a typo is refused by name instead of surfacing as a stream error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from detectflow.core.cameras import Camera, check_fps

__all__ = [
    "DEFAULT_JPEG_QUALITY",
    "DEFAULT_STALL_SECONDS",
    "READER_OPTIONS",
    "ReaderOptions",
    "reader_options",
]

DEFAULT_JPEG_QUALITY = 80
DEFAULT_STALL_SECONDS = 10.0
READER_OPTIONS = frozenset({"realtime", "loop", "stall_seconds", "jpeg_quality", "transport"})
"""The option names the reader takes; the rest of ``options`` (zones, filters...) is not its."""

_TRUE = {True, "1", "true", "yes", "on"}  # True == 1 in a set
_FALSE = {False, "0", "false", "no", "off"}


@dataclass(frozen=True, slots=True)
class ReaderOptions:
    """``realtime`` and ``loop`` apply to files; ``transport`` to RTSP."""

    fps: float
    realtime: bool = True
    loop: bool = False
    stall_seconds: float = DEFAULT_STALL_SECONDS
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    transport: str = "tcp"


def reader_options(camera: Camera) -> ReaderOptions:
    """The reader settings of ``camera``; :class:`ValueError` naming a bad one."""
    options: Mapping[str, Any] = camera.options or {}
    stall = _number(options, "stall_seconds", DEFAULT_STALL_SECONDS, 0.5, 3600.0)
    quality = _number(options, "jpeg_quality", DEFAULT_JPEG_QUALITY, 1, 95)
    if quality != int(quality):
        raise ValueError(f"camera option jpeg_quality must be a whole number: {quality!r}")
    transport = str(options.get("transport", "tcp")).lower()
    if transport not in ("tcp", "udp"):
        raise ValueError(f"camera option transport must be tcp or udp: {transport!r}")
    return ReaderOptions(
        fps=check_fps(camera.fps),
        realtime=_flag(options, "realtime", default=True),
        loop=_flag(options, "loop", default=False),
        stall_seconds=float(stall),
        jpeg_quality=int(quality),
        transport=transport,
    )


def _flag(options: Mapping[str, Any], name: str, *, default: bool) -> bool:
    value = options.get(name, default)
    if isinstance(value, str):
        value = value.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"camera option {name} must be 0 or 1: {value!r}")


def _number(
    options: Mapping[str, Any], name: str, default: float, low: float, high: float
) -> float:
    value = options.get(name, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"camera option {name} is not a number: {value!r}") from None
    if not (math.isfinite(number) and low <= number <= high):
        raise ValueError(f"camera option {name} must be {low:g}..{high:g}: {value!r}")
    return number
