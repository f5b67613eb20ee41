"""The objects step: one camera's results in, the same results out with their objects.

Engine-agnostic (the Bytewax wiring is :class:`detectflow.flows.dataflow.ObjectsLogic`).
Results arrive as their frames finish, in any order; :class:`CameraStep`
hands them to :class:`~detectflow.core.objects.CameraObjects`, which puts
them back in frame-time order, and gives each back once tracked: its
detections carry their ``track_id``, ``FrameResult.objects`` its object
events, and the frame keeps its image only when it became an object's best
(the recorder saves it as the snapshot). Failed frames have nothing to
track and pass straight through.

Nothing is lost to the reorder buffer: :meth:`CameraStep.flush` lets out
what waits when a camera goes quiet (the flow calls it after a wall-clock
pause, so a finite run is not held up by its last frames), and the
:meth:`CameraStep.snapshot` holds the waiting results (without their images)
with the tracker state, for Bytewax recovery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, Protocol

from detectflow.core.cameras import Camera
from detectflow.core.models import FrameResult, strip_image, with_track_id
from detectflow.core.object_config import ObjectsConfig
from detectflow.core.object_events import FrameObjects
from detectflow.core.objects import CameraObjects

__all__ = [
    "CameraStep",
    "ObjectsConfigLookup",
    "default_objects_config",
    "objects_configs_from",
    "table_objects_config",
]

log = logging.getLogger(__name__)

ObjectsConfigLookup = Callable[[str], ObjectsConfig]
"""A camera id -> its zones, masks, filters and tracking settings."""

_STATE_VERSION = 1


def default_objects_config(camera_id: str) -> ObjectsConfig:
    """Every camera tracks every label with Frigate's defaults, no zones."""
    return ObjectsConfig()


class CameraLookup(Protocol):
    def get_camera(self, camera_id: str) -> Camera | None: ...


def table_objects_config(database: CameraLookup) -> ObjectsConfigLookup:
    """Each camera's config from its row of the cameras table (``options``), read when
    the flow first sees the camera; a camera not in the table gets the defaults. The
    API refuses a bad config, so one that does not parse was edited by hand: the
    camera gets the defaults and the log says why."""

    def lookup(camera_id: str) -> ObjectsConfig:
        camera = database.get_camera(camera_id)
        if camera is None:
            return ObjectsConfig()
        try:
            return ObjectsConfig.from_options(camera.options)
        except ValueError as exc:
            log.warning("camera %s: objects config ignored, defaults used: %s", camera_id, exc)
            return ObjectsConfig()

    return lookup


class CameraStep:
    """One camera's objects; push results, get tracked results back in frame order."""

    def __init__(
        self, camera_id: str, config: ObjectsConfig, state: dict[str, Any] | None = None
    ) -> None:
        self.camera_id = camera_id
        self._pending: dict[str, FrameResult] = {}
        if state is None:
            self.objects = CameraObjects(camera_id, config)
            return
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"unknown objects step state, expected version {_STATE_VERSION}")
        self.objects = CameraObjects.resume(state["objects"], config)
        for result in state["pending"]:
            self._pending[result.frame.frame_id] = result

    @property
    def waiting(self) -> int:
        return len(self._pending)

    def push(self, results: Iterable[FrameResult]) -> list[FrameResult]:
        out: list[FrameResult] = []
        for r in results:
            if not r.ok:
                out.append(strip_image(r))
                continue
            frame = r.frame
            self._pending[frame.frame_id] = r  # a copy delivered again replaces the first
            for tracked in self.objects.push(frame.frame_id, frame.timestamp, r.detections):
                out.append(self._attach(tracked))
        return out

    def flush(self) -> list[FrameResult]:
        """Let out every waiting result now, ending no object."""
        return [self._attach(tracked) for tracked in self.objects.flush()]

    def stop(self) -> list[FrameResult]:
        """The camera stopped (its input ended): let out what waits and end every object.

        The end events ride on the last result let out. When nothing waited
        there is no result left to carry them: the objects stay in progress in
        the store (logged), as they would after a crash without recovery.
        """
        frames, ended = self.objects.stop()
        out = [self._attach(tracked) for tracked in frames]
        if ended:
            if out:
                last = out[-1]
                assert last.objects is not None
                objects = replace(last.objects, events=(*last.objects.events, *ended))
                out[-1] = replace(last, objects=objects)
            else:
                log.info(
                    "camera %s stopped with no frame waiting: %d object(s) stay in progress",
                    self.camera_id,
                    len(ended),
                )
        return out

    def snapshot(self) -> dict[str, Any]:
        """Plain tracker state plus the waiting results (images dropped: a snapshot
        must stay small, and a snapshot lost with a crash is only a picture)."""
        return {
            "version": _STATE_VERSION,
            "objects": self.objects.snapshot(),
            "pending": [strip_image(r) for r in self._pending.values()],
        }

    def _attach(self, tracked: FrameObjects) -> FrameResult:
        r = self._pending.pop(tracked.frame_id)
        detections = r.detections
        if any(tracked.track_ids):
            detections = tuple(
                d if t is None else with_track_id(d, t)
                for d, t in zip(detections, tracked.track_ids, strict=True)
            )
        kept = r if tracked.best else strip_image(r)
        return FrameResult(
            kept.frame,
            detections,
            r.events,
            r.error,
            r.attempts,
            r.processing_time_ms,
            r.dropped_boxes,
            tracked,
        )


def objects_configs_from(document: Any) -> ObjectsConfigLookup:
    """Per-camera configs from a JSON document ``{camera_id: options, "*": options}``
    (``"*"`` for every camera not named; the options as a camera's ``options`` hold
    them). Every entry is parsed now, so a bad zone fails the flow at start with the
    key at fault (ValueError), not at its camera's first frame."""
    if not isinstance(document, dict):
        raise ValueError("objects config: expected an object keyed by camera id")
    parsed: dict[str, ObjectsConfig] = {}
    for camera, options in document.items():
        try:
            parsed[str(camera)] = ObjectsConfig.from_options(options)
        except ValueError as exc:
            raise ValueError(f"objects config for {camera!r}: {exc}") from None
    fallback = parsed.pop("*", ObjectsConfig())
    return lambda camera_id: parsed.get(camera_id, fallback)
