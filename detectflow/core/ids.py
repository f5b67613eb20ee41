"""Deterministic ids.

A frame replayed after a crash must write the same rows, not new ones, so
every id the dataflow writes is a UUIDv5 of what identifies it.
"""

from __future__ import annotations

import hashlib
import uuid

__all__ = ["detection_id", "event_id", "frame_id_for", "new_id"]

_NAMESPACE = uuid.UUID("6f1c1f5e-3f0a-4d8e-9a39-2f6f0c6b7d10")


def new_id() -> str:
    """A random id, for things created once by a person (configs, keys)."""
    return str(uuid.uuid4())


def frame_id_for(camera_id: str, frame_number: int | None, image: bytes) -> str:
    """A frame's id when its source gave none: camera + number, else camera + bytes."""
    if frame_number is not None:
        key = f"frame:{camera_id}:{frame_number}"
    else:
        key = f"frame:{camera_id}:sha256:{hashlib.sha256(image).hexdigest()}"
    return str(uuid.uuid5(_NAMESPACE, key))


def detection_id(frame_id: str, index: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"detection:{frame_id}:{index}"))


def event_id(frame_id: str, event_type: str, discriminator: str | int = "") -> str:
    return str(uuid.uuid5(_NAMESPACE, f"event:{frame_id}:{event_type}:{discriminator}"))
