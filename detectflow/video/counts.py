"""A camera reader's counters: a plain record, so the flow's metrics can read it
without loading PyAV."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ReaderCounts"]


@dataclass(frozen=True, slots=True)
class ReaderCounts:
    """One camera's frames since its reader started.

    ``decoded`` = ``sampled`` (handed to the flow) + ``skipped`` (never
    handed on) + at most one waiting in the slot. ``dropped`` counts
    connections lost (errors, ends of a live stream, stalls).
    """

    decoded: int = 0
    sampled: int = 0
    skipped: int = 0
    dropped: int = 0
    online: bool = False
    last_error: str | None = None
