"""From boxes to objects: one camera's tracked objects and their lifecycle.

:class:`CameraObjects` is the whole per-camera state the dataflow keeps:
frames go in as they finish (any order), and out come, per frame in
frame-time order, the track id of each detection and the object events it
caused. Its steps, in order:

1. reorder (:mod:`detectflow.core.reorder`); a late frame is handed back
   marked late, its detections untracked, never lost;
2. drop boxes the camera does not want: labels outside ``objects`` or turned
   off by the provider's flags, areas outside the label's ``min_area`` ..
   ``max_area``, boxes whose bottom centre is in a mask, faces past
   ``max_faces_per_frame``, and scores below the tracker's ``low_score``;
   each is counted;
3. track (:mod:`detectflow.core.tracking`); boxes at or above the label's
   ``min_score`` lead, weaker ones only keep tracks alive;
4. the lifecycle, as Frigate has it: an object **starts** once its track is
   confirmed (``min_hits`` frames), the median of its last 10 scores reaches
   the label's ``threshold`` and, with ``required_zones``, it has entered one
   of them; it is **updated** when its zones, label or best detection change, at
   most once per ``update_interval_seconds``; it **ends** when unseen for
   ``max_disappeared_seconds`` or when the camera stops. Zone entries and line
   crossings made before the start are reported at the start, so a false
   positive that never starts counts nowhere.

Frame time decides everything, never the wall clock, and every id derives
from the input (:func:`~detectflow.core.ids.track_id`,
:func:`~detectflow.core.ids.event_id`), so a replay gives the same objects
and events. :meth:`CameraObjects.snapshot` is plain data for the dataflow's
recovery; :meth:`CameraObjects.resume` continues the same objects without
starting them again.

Event payloads (``before``/``after``) use Frigate's field names where the
meaning is the same (``id``, ``camera``, ``label``, ``sub_label``, ``score``,
``top_score``, ``start_time``, ``end_time``, ``box``, ``area``,
``current_zones``, ``entered_zones``, ``has_snapshot``), with boxes as
``[x_min, y_min, x_max, y_max]`` in frame fractions and times in unix
seconds. ``has_snapshot`` says a best detection was chosen: the flow keeps
that frame's image, told by
:attr:`~detectflow.core.object_events.FrameObjects.best`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from detectflow.core.geometry import Box
from detectflow.core.ids import event_id
from detectflow.core.models import Detection
from detectflow.core.object_config import ObjectsConfig
from detectflow.core.object_events import (
    OBJECT_ENDED,
    OBJECT_STARTED,
    OBJECT_UPDATED,
    FrameObjects,
    LineCrossing,
    ObjectEvent,
    ZoneEntry,
)
from detectflow.core.reorder import ReorderBuffer
from detectflow.core.tracking import Candidate, Tracker, TrackerConfig

__all__ = ["CameraObjects"]

_STATE_VERSION = 1
_SCORES_KEPT = 10  # Frigate's score history: the median of the last 10
_PATH_POINTS = 64  # path kept at most; when full, every other point goes

# A buffered frame: [frame_id, time, [[label, kind, score, x0, y0, x1, y1, person_id,
# person_name], ...]] -- plain values, so the reorder buffer snapshots as plain data.
_Row = list[Any]


_FIELDS = (
    "best",
    "box",
    "crossings",
    "emitted",
    "entered",
    "first_time",
    "frames",
    "id",
    "kind",
    "label",
    "labels",
    "last_emit",
    "last_time",
    "path",
    "path_every",
    "pending",
    "person_id",
    "person_name",
    "score",
    "scores",
    "started",
    "top_score",
    "zones",
)
"""Every piece of an object's state, in the order its snapshot lists them."""


class _Object:
    """The lifecycle state of one track (internal; plain via :meth:`plain`)."""

    __slots__ = _FIELDS

    def __init__(self, object_id: str, kind: str, time: float) -> None:
        self.id = object_id
        self.kind = kind
        self.first_time = time
        self.last_time = time
        self.frames = 0
        self.box: list[float] = [0.0, 0.0, 0.0, 0.0]
        self.score = 0.0
        self.scores: list[float] = []
        self.top_score = 0.0
        self.labels: dict[str, float] = {}  # label -> sum of its scores
        self.label = ""  # the label with the largest sum (ties: the larger name)
        self.best: list[Any] | None = None  # [frame_id, score, x0, y0, x1, y1, time]
        self.zones: dict[str, list[Any]] = {}  # name -> [inside, streak]
        self.entered: list[str] = []
        self.crossings: list[list[Any]] = []  # before the start: [line, dir, frame_id, time]
        self.path: list[list[float]] = []
        self.path_every = 1.0
        self.person_id: str | None = None
        self.person_name: str | None = None
        self.started = False
        self.emitted: dict[str, Any] | None = None
        self.last_emit = 0.0
        self.pending: list[str] = []

    def vote(self, label: str, score: float) -> None:
        total = self.labels[label] = self.labels.get(label, 0.0) + score
        best = self.labels.get(self.label)
        if best is None or total > best or (total == best and label > self.label):
            self.label = label

    def median(self) -> float:
        s = sorted(self.scores)
        n = len(s)
        if not n:
            return 0.0
        return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) * 0.5

    def view(self, camera_id: str, end_time: float | None = None) -> dict[str, Any]:
        x0, y0, x1, y1 = self.box
        best = self.best
        return {
            "id": self.id,
            "camera": camera_id,
            "label": self.label,
            "detection_type": self.kind,
            "sub_label": self.person_name,
            "person_id": self.person_id,
            "score": self.score,
            "top_score": self.top_score,
            "start_time": self.first_time,
            "end_time": end_time,
            "frame_time": self.last_time,
            "box": [x0, y0, x1, y1],
            "area": (x1 - x0) * (y1 - y0),
            "current_zones": sorted(n for n, (inside, _) in self.zones.items() if inside),
            "entered_zones": list(self.entered),
            "frames": self.frames,
            "has_snapshot": best is not None,
            "best": None
            if best is None
            else {"frame_id": best[0], "score": best[1], "box": best[2:6], "time": best[6]},
            "path": [list(p) for p in self.path],
        }

    def plain(self) -> list[Any]:
        return [getattr(self, name) for name in _FIELDS]

    @classmethod
    def from_plain(cls, values: list[Any]) -> _Object:
        if len(values) != len(_FIELDS):
            raise ValueError("object state has the wrong number of fields")
        obj = cls("", "", 0.0)  # every field is set below
        for name, value in zip(_FIELDS, values, strict=True):
            setattr(obj, name, value)
        return obj


def _empty_counts() -> dict[str, Any]:
    return {
        "frames": 0,
        "late": 0,
        "masked": 0,
        "filtered": 0,
        "objects_started": {},
        "zone_entries": {},
        "line_crossings": {},
    }


class CameraObjects:
    """Objects of one camera: push finished frames, get tracked frames back."""

    def __init__(self, camera_id: str, config: ObjectsConfig | None = None) -> None:
        self.camera_id = camera_id
        self.config = config or ObjectsConfig()
        cfg = self.config
        self._tracker = Tracker(camera_id, self._tracker_config(cfg))
        self._buffer: ReorderBuffer[_Row] = ReorderBuffer(cfg.reorder_frames, cfg.reorder_seconds)
        self._objects: dict[str, _Object] = {}
        self._last_frame: str | None = None
        # (label, kind) -> (tracked, min_score, min_area, max_area): the config's
        # lookups, once per label instead of once per box.
        self._rules: dict[tuple[str, str], tuple[bool, float, float, float]] = {}
        self.counts = _empty_counts()

    @staticmethod
    def _tracker_config(cfg: ObjectsConfig) -> TrackerConfig:
        return TrackerConfig(min_hits=cfg.min_hits, max_lost_seconds=cfg.max_disappeared_seconds)

    @property
    def in_progress(self) -> list[dict[str, Any]]:
        """The started objects not yet ended, as their latest ``after`` payload."""
        return [o.view(self.camera_id) for o in self._objects.values() if o.started]

    def push(
        self, frame_id: str, time: datetime, detections: Sequence[Detection]
    ) -> list[FrameObjects]:
        """A frame's detections finished; returns the frames now ready, in order.

        ``time`` is the frame's own timestamp (timezone-aware), never the arrival time.
        """
        if time.tzinfo is None:
            raise ValueError(f"frame {frame_id!r} has a naive timestamp; frame times are UTC")
        t = time.timestamp()
        row: _Row = [
            frame_id,
            t,
            [
                [
                    d.label,
                    d.detection_type,
                    d.confidence,
                    d.bbox.x,
                    d.bbox.y,
                    d.bbox.x + d.bbox.width,
                    d.bbox.y + d.bbox.height,
                    d.person_id,
                    d.person_name,
                ]
                for d in detections
            ],
        ]
        released = self._buffer.push(t, frame_id, row)
        out = [self._process(r) for r in released.ready]
        if released.late is not None:
            self.counts["late"] += 1
            out.append(FrameObjects(frame_id, t, True, (None,) * len(detections)))
        return out

    @property
    def waiting(self) -> int:
        """Frames held in the reorder buffer."""
        return len(self._buffer)

    def flush(self) -> list[FrameObjects]:
        """Track every waiting frame now, ending no object: the dataflow's guard when a
        camera goes quiet, so its last frames are not held back until the next one
        comes. A frame that then arrives with an earlier time is late."""
        return [self._process(r) for r in self._buffer.flush()]

    def stop(self) -> tuple[list[FrameObjects], list[ObjectEvent]]:
        """The camera stopped or went offline: process what waits, end every object."""
        frames = [self._process(r) for r in self._buffer.flush()]
        self._tracker.end_all()
        events = []
        for obj in self._objects.values():
            if obj.started:
                events.append(self._event(OBJECT_ENDED, obj, self._last_frame or "", obj.last_time))
        self._objects.clear()
        return frames, events

    # -- one frame, in order ------------------------------------------------------

    def _candidates(self, rows: list[list[Any]]) -> list[Candidate]:
        cfg = self.config
        counts = self.counts
        cands: list[Candidate] = []
        faces: list[tuple[float, int]] = []
        rules = self._rules
        low = cfg.low_score
        masks = cfg.masks
        for index, (label, kind, score, x0, y0, x1, y1, _, _) in enumerate(rows):
            rule = rules.get((label, kind))
            if rule is None:
                f = cfg.filter_for(label, kind)
                rule = rules[label, kind] = (
                    cfg.tracks(label, kind),
                    f.min_score,
                    f.min_area,
                    f.max_area,
                )
            tracked, min_score, min_area, max_area = rule
            area = (x1 - x0) * (y1 - y0)
            if not tracked or score < low or area < min_area or area > max_area:
                counts["filtered"] += 1
                continue
            box = (x0, y0, x1, y1)
            if masks and any(m.contains(((x0 + x1) * 0.5, y1)) for m in masks):  # its feet
                counts["masked"] += 1
                continue
            if kind == "face":
                faces.append((-score, index))
            cands.append(Candidate(box, kind, score >= min_score, index))
        limit = cfg.max_faces_per_frame
        if limit is not None and len(faces) > limit:
            extra = {index for _, index in sorted(faces)[limit:]}
            counts["filtered"] += len(extra)
            cands = [c for c in cands if c.position not in extra]
        return cands

    def _process(self, row: _Row) -> FrameObjects:
        frame_id, t, rows = row[0], float(row[1]), row[2]
        self._last_frame = frame_id
        self.counts["frames"] += 1
        cands = self._candidates(rows)
        update = self._tracker.update(frame_id, t, cands)
        track_ids: list[str | None] = [None] * len(rows)
        events: list[ObjectEvent] = []
        crossings: list[LineCrossing] = []
        entries: list[ZoneEntry] = []
        best: list[tuple[str, int]] = []
        touched: list[_Object] = []
        for cand, tid in zip(cands, update.track_ids, strict=True):
            if tid is None:
                continue
            track_ids[cand.position] = tid
            obj = self._objects.get(tid)
            if obj is None:
                obj = self._objects[tid] = _Object(tid, cand.kind, t)
            r = rows[cand.position]
            if self._observe(obj, r, cand.box, cand.high, frame_id, t, crossings, entries):
                best.append((tid, cand.position))
            touched.append(obj)
        for obj in touched:
            if not obj.started:
                self._maybe_start(obj, frame_id, t, events, crossings, entries)
        for obj in self._objects.values():
            if (
                obj.started
                and obj.pending
                and t - obj.last_emit >= self.config.update_interval_seconds
            ):
                events.append(self._event(OBJECT_UPDATED, obj, frame_id, t))
        for tid in update.ended:
            obj = self._objects.pop(tid, None)
            if obj is not None and obj.started:
                events.append(self._event(OBJECT_ENDED, obj, frame_id, t))
        for tid in update.dropped:
            self._objects.pop(tid, None)
        return FrameObjects(
            frame_id,
            t,
            False,
            tuple(track_ids),
            tuple(events),
            tuple(crossings),
            tuple(entries),
            tuple(best),
        )

    def _observe(
        self,
        obj: _Object,
        row: list[Any],
        box: Box,
        high: bool,
        frame_id: str,
        t: float,
        crossings: list[LineCrossing],
        entries: list[ZoneEntry],
    ) -> bool:
        """Fold one matched detection into its object; True when it became the best."""
        label, score, person_id, person_name = row[0], row[2], row[7], row[8]
        changes = obj.pending
        lines = self.config.lines
        b = obj.box
        previous_foot = ((b[0] + b[2]) * 0.5, b[3]) if lines and obj.frames else None
        old_label = obj.label
        obj.frames += 1
        obj.box = list(box)
        obj.score = score
        obj.last_time = t
        if person_id is not None:
            obj.person_id = person_id
        if person_name is not None:
            obj.person_name = person_name
        became_best = False
        if high:
            scores = obj.scores
            scores.append(score)
            if len(scores) > _SCORES_KEPT:
                del scores[0]
            median = obj.median()
            if median > obj.top_score:
                obj.top_score = median
            obj.vote(label, score)
            kept = obj.best
            area = (box[2] - box[0]) * (box[3] - box[1])
            # Better: a higher score, or as good and 5% larger (a closer view); the
            # margin keeps float noise in a steady box from churning snapshots.
            if (
                kept is None
                or score > kept[1]
                or (score == kept[1] and area > 1.05 * (kept[4] - kept[2]) * (kept[5] - kept[3]))
            ):
                obj.best = [frame_id, score, *box, t]
                became_best = True
                if "snapshot" not in changes:
                    changes.append("snapshot")
        elif not obj.labels:
            obj.vote(label, 0.0)
        if old_label and obj.label != old_label and "label" not in changes:
            changes.append("label")
        foot = ((box[0] + box[2]) * 0.5, box[3])  # bottom_centre, inlined (hot)
        fx, fy = foot
        zones = obj.zones  # only zones the object is in or entering: most are neither
        for zone in self.config.zones:
            x0, y0, x1, y1 = zone.area.exterior.bounds
            inside = x0 <= fx <= x1 and y0 <= fy <= y1 and zone.area.contains(foot)
            state = zones.get(zone.name)
            if state is None:
                if not inside:
                    continue
                state = zones[zone.name] = [False, 0]
            if inside == state[0]:
                state[1] = 0
                continue
            state[1] += 1
            if state[1] < zone.inertia:
                continue
            state[0], state[1] = not state[0], 0
            if not state[0]:
                del zones[zone.name]
            if "zones" not in changes:
                changes.append("zones")
            if state[0]:
                if zone.name not in obj.entered:
                    obj.entered.append(zone.name)
                if obj.started:
                    entries.append(self._zone_entry(obj, zone.name, frame_id, t))
                else:
                    obj.crossings.append(["zone", zone.name, frame_id, t])
        if previous_foot is not None:
            for named in lines:
                if previous_foot == foot:
                    break
                way = named.line.crossing(previous_foot, foot)
                if way:
                    direction = "in" if way > 0 else "out"
                    if obj.started:
                        crossings.append(self._crossing(obj, named.name, direction, frame_id, t))
                    else:
                        obj.crossings.append(["line", named.name, direction, frame_id, t])
        cx, cy = (box[0] + box[2]) * 0.5, (box[1] + box[3]) * 0.5
        if not obj.path or t - obj.path[-1][2] >= obj.path_every:
            obj.path.append([cx, cy, t])
            if len(obj.path) > _PATH_POINTS:
                obj.path = obj.path[::2]
                obj.path_every *= 2
        return became_best

    def _maybe_start(
        self,
        obj: _Object,
        frame_id: str,
        t: float,
        events: list[ObjectEvent],
        crossings: list[LineCrossing],
        entries: list[ZoneEntry],
    ) -> None:
        track = self._tracker.get(obj.id)
        if track is None or not track.confirmed or not obj.scores:
            return
        cfg = self.config
        if obj.median() < cfg.filter_for(obj.label, obj.kind).threshold:
            return
        if cfg.required_zones and not cfg.required_zones.intersection(obj.entered):
            return
        obj.started = True
        started = self.counts["objects_started"]
        started[obj.label] = started.get(obj.label, 0) + 1
        for held in obj.crossings:
            if held[0] == "zone":
                entries.append(self._zone_entry(obj, held[1], held[2], held[3]))
            else:
                crossings.append(self._crossing(obj, held[1], held[2], held[3], held[4]))
        obj.crossings = []
        events.append(self._event(OBJECT_STARTED, obj, frame_id, t))

    # -- outputs -----------------------------------------------------------------

    def _event(self, kind: str, obj: _Object, frame_id: str, t: float) -> ObjectEvent:
        after = obj.view(self.camera_id, obj.last_time if kind == OBJECT_ENDED else None)
        before = after if obj.emitted is None else obj.emitted
        changes = tuple(obj.pending) if kind == OBJECT_UPDATED else ()
        obj.emitted, obj.last_emit, obj.pending = after, t, []
        return ObjectEvent(
            id=event_id(frame_id, kind, obj.id),
            type=kind,
            object_id=obj.id,
            camera_id=self.camera_id,
            frame_id=frame_id,
            time=t,
            before=before,
            after=after,
            changes=changes,
        )

    def _zone_entry(self, obj: _Object, zone: str, frame_id: str, t: float) -> ZoneEntry:
        per_zone = self.counts["zone_entries"].setdefault(zone, {})
        per_zone[obj.label] = per_zone.get(obj.label, 0) + 1
        return ZoneEntry(zone, obj.label, obj.id, frame_id, t)

    def _crossing(
        self, obj: _Object, line: str, direction: str, frame_id: str, t: float
    ) -> LineCrossing:
        per_label = (
            self.counts["line_crossings"]
            .setdefault(line, {})
            .setdefault(obj.label, {"in": 0, "out": 0})
        )
        per_label[direction] += 1
        return LineCrossing(line, direction, obj.label, obj.id, frame_id, t)

    # -- recovery ----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The whole state as plain values (dicts, lists, strs, numbers, None)."""
        return copy.deepcopy(
            {
                "version": _STATE_VERSION,
                "camera_id": self.camera_id,
                "tracker": self._tracker.snapshot(),
                "buffer": self._buffer.snapshot(),
                "objects": [o.plain() for o in self._objects.values()],
                "last_frame": self._last_frame,
                "counts": self.counts,
            }
        )

    @classmethod
    def resume(cls, state: Any, config: ObjectsConfig | None = None) -> CameraObjects:
        """Continue from :meth:`snapshot` under ``config`` (the camera's current one)."""
        state = copy.deepcopy(state)  # the caller's copy stays as it was
        try:
            if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
                raise ValueError(f"unknown state version, expected {_STATE_VERSION}")
            camera = cls(str(state["camera_id"]), config)
            cfg = camera.config
            camera._tracker = Tracker.resume(state["tracker"], cls._tracker_config(cfg))
            camera._buffer = ReorderBuffer.resume(
                state["buffer"], cfg.reorder_frames, cfg.reorder_seconds
            )
            names = {z.name for z in cfg.zones}
            for values in state["objects"]:
                obj = _Object.from_plain(list(values))
                obj.zones = {k: v for k, v in obj.zones.items() if k in names}
                camera._objects[obj.id] = obj
            camera._last_frame = state["last_frame"]
            counts = state["counts"]
            if set(counts) != set(_empty_counts()):
                raise ValueError("counts have unknown keys")
            camera.counts = counts
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid objects state: {exc}") from exc
        return camera
