"""Cache entries and bus messages as compact JSON bytes, read back leniently.

Shared by everything that writes the cache (:mod:`detectflow.store.live`,
:mod:`detectflow.store.heartbeat`), so an entry one writes the other could read.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["dump_entry", "load_entry"]

_ENCODER = json.JSONEncoder(separators=(",", ":"))
"""One encoder for every entry and message (``json.dumps`` would build one per call)."""


def dump_entry(value: Any) -> bytes:
    return _ENCODER.encode(value).encode()


def load_entry(raw: bytes | None) -> Any:
    """None for a missing entry and for a corrupt one (the next write replaces it)."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None
