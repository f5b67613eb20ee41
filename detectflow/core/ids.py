"""Deterministic ids.

A frame replayed after a crash must write the same rows, not new ones, so
every id the dataflow writes is a UUIDv5 of what identifies it.

Ids are made on the hot path (four per frame: three detections and an
event), so :func:`_uuid5` computes RFC 4122 version-5 UUIDs straight from
SHA-1 instead of through :func:`uuid.uuid5`, which builds a ``UUID`` object
only to turn it back into text: measured 0.9 us against 3.4 us per id. The
text is the same, byte for byte (``tests/core/test_ids.py`` checks it).
"""

from __future__ import annotations

import hashlib
import uuid

__all__ = ["detection_id", "event_id", "frame_id_for", "new_id", "track_id"]

_NAMESPACE = uuid.UUID("6f1c1f5e-3f0a-4d8e-9a39-2f6f0c6b7d10")
_NAMESPACE_HASH = hashlib.sha1(_NAMESPACE.bytes, usedforsecurity=False)


def _uuid5(name: str) -> str:
    """``str(uuid.uuid5(_NAMESPACE, name))``, without the ``UUID`` object."""
    digest = _NAMESPACE_HASH.copy()
    digest.update(name.encode())
    raw = bytearray(digest.digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_id() -> str:
    """A random id, for things created once by a person (configs, keys)."""
    return str(uuid.uuid4())


def frame_id_for(camera_id: str, frame_number: int | None, image: bytes) -> str:
    """A frame's id when its source gave none: camera + number, else camera + bytes."""
    if frame_number is not None:
        return _uuid5(f"frame:{camera_id}:{frame_number}")
    return _uuid5(f"frame:{camera_id}:sha256:{hashlib.sha256(image).hexdigest()}")


def detection_id(frame_id: str, index: int) -> str:
    return _uuid5(f"detection:{frame_id}:{index}")


def event_id(frame_id: str, event_type: str, discriminator: str | int = "") -> str:
    return _uuid5(f"event:{frame_id}:{event_type}:{discriminator}")


def track_id(camera_id: str, frame_id: str, index: int) -> str:
    """A tracked object's id: the camera, the frame it was first seen in and the
    box's position there, so a replay tracks the same objects under the same ids."""
    return _uuid5(f"track:{camera_id}:{frame_id}:{index}")
