"""What it takes to make the cameras table match a fleet file: added, changed, removed.

``detectflow camera import`` computes a :class:`SyncPlan` from the cameras
stored and the cameras a file describes, prints it, and applies it in one
transaction. A file is the whole description of each camera it names: a
field it leaves out takes the default, so the same file imported twice
changes nothing the second time (:attr:`SyncPlan.changes` is empty).
Cameras stored but not in the file are kept unless ``prune`` is asked for,
since a file may describe part of a fleet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from detectflow.core.cameras import Camera

__all__ = ["COMPARED_FIELDS", "CameraChange", "SyncPlan", "changed_fields", "plan_sync"]

COMPARED_FIELDS = ("name", "url", "enabled", "fps", "provider", "options")
"""The configuration a file holds; timestamps and last_error are the store's."""


@dataclass(frozen=True, slots=True)
class CameraChange:
    camera: Camera
    """The camera as the file wants it."""
    fields: tuple[str, ...]
    """What differs from the stored camera, in :data:`COMPARED_FIELDS` order."""


@dataclass(frozen=True, slots=True)
class SyncPlan:
    added: tuple[Camera, ...] = ()
    changed: tuple[CameraChange, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    """Stored, not in the file, and left alone (no ``prune``)."""

    @property
    def changes(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def changed_fields(current: Camera, wanted: Camera) -> tuple[str, ...]:
    """Options compare as mappings: key order, and 1 against 1.0, are no change."""
    return tuple(f for f in COMPARED_FIELDS if getattr(current, f) != getattr(wanted, f))


def plan_sync(current: Sequence[Camera], wanted: Sequence[Camera], *, prune: bool) -> SyncPlan:
    """The plan, each part in the file's order (stored-only cameras by id).

    ValueError when ``wanted`` names a camera twice: which one should win is
    the author's call, not ours.
    """
    seen: set[str] = set()
    for camera in wanted:
        if camera.id in seen:
            raise ValueError(f"camera {camera.id!r} is described twice")
        seen.add(camera.id)
    stored = {c.id: c for c in current}
    added: list[Camera] = []
    changed: list[CameraChange] = []
    unchanged: list[str] = []
    for camera in wanted:
        before = stored.get(camera.id)
        if before is None:
            added.append(camera)
            continue
        fields = changed_fields(before, camera)
        if fields:
            changed.append(CameraChange(camera, fields))
        else:
            unchanged.append(camera.id)
    others = tuple(sorted(set(stored) - seen))
    return SyncPlan(
        added=tuple(added),
        changed=tuple(changed),
        removed=others if prune else (),
        unchanged=tuple(unchanged),
        kept=() if prune else others,
    )
