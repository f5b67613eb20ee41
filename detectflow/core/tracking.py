"""Multi-object tracking by detection, ByteTrack-style, for one camera.

Each frame's boxes are matched to the camera's tracks by IoU against where
each track is predicted to be at the frame's time (constant velocity of the
box centre, estimated from frame times, so an irregular frame rate does not
bend the prediction). Association runs in ByteTrack's order:

1. confident (``high``) boxes against every confirmed track, lost ones too;
2. the weak boxes against the confirmed tracks still unmatched and seen last
   frame, with a stricter IoU gate: a weak box keeps a track alive through an
   occlusion or motion blur but never starts one;
3. the confident boxes left against tentative tracks (seen fewer than
   ``min_hits`` frames in a row); a tentative track that misses a frame is
   dropped, which is what keeps one-frame false positives out;
4. the confident boxes still left start tentative tracks.

Boxes only match tracks of their own ``kind`` (the detection type), so a face
inside a person never steals the person's track. Matching is a
maximum-weight matching on IoU in pure Python
(:mod:`detectflow.core.assignment`, which says why not scipy, with the
measured cost of both).

Frame time decides everything: a track is removed once unseen for
``max_lost_seconds`` of frame time, never of wall clock, so a replayed file
gives the same tracks. A track's id derives from (camera, first frame,
box index), so it is the same on a replay too. :meth:`Tracker.snapshot`
returns plain values (lists, floats, strs) for the dataflow's recovery
snapshot; :meth:`Tracker.resume` continues with the same ids.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import astuple, dataclass
from typing import Any, NamedTuple

from detectflow.core.assignment import max_weight_matching
from detectflow.core.geometry import Box
from detectflow.core.ids import track_id

__all__ = ["Candidate", "Track", "TrackUpdate", "Tracker", "TrackerConfig", "gated_ious"]

_STATE_VERSION = 1
TENTATIVE, TRACKED, LOST = 0, 1, 2


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """Gates and horizons; the defaults are ByteTrack's (IoU = 1 - its cost gates)."""

    min_hits: int = 3
    max_lost_seconds: float = 5.0
    match_iou: float = 0.2
    low_match_iou: float = 0.5
    tentative_match_iou: float = 0.3
    velocity_smoothing: float = 0.5
    max_predict_seconds: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.min_hits, bool) or not isinstance(self.min_hits, int):
            raise ValueError(f"min_hits must be an integer, got {self.min_hits!r}")
        if self.min_hits < 1:
            raise ValueError(f"min_hits must be >= 1, got {self.min_hits}")
        if not self.max_lost_seconds > 0:
            raise ValueError(f"max_lost_seconds must be > 0, got {self.max_lost_seconds!r}")
        for name in ("match_iou", "low_match_iou", "tentative_match_iou", "velocity_smoothing"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value!r}")
        if not self.max_predict_seconds >= 0:
            raise ValueError(f"max_predict_seconds must be >= 0, got {self.max_predict_seconds!r}")


class Candidate(NamedTuple):
    """A box offered to the tracker: ``position`` is its place in the frame's detections
    (with the frame id, it makes a new track's id)."""

    box: Box
    kind: str
    high: bool
    position: int


class Track:
    """One track's state (mutable; read it, let the tracker change it)."""

    __slots__ = ("box", "first_time", "hits", "id", "kind", "last_time", "state", "vx", "vy")

    def __init__(self, id: str, kind: str, box: Box, time: float) -> None:
        self.id = id
        self.kind = kind
        self.box = box
        self.vx = 0.0
        self.vy = 0.0
        self.first_time = time
        self.last_time = time
        self.hits = 1
        self.state = TENTATIVE

    @property
    def confirmed(self) -> bool:
        return self.state != TENTATIVE

    @property
    def lost(self) -> bool:
        return self.state == LOST

    def predict(self, time: float, horizon: float) -> Box:
        dt = min(time - self.last_time, horizon)
        dx, dy = self.vx * dt, self.vy * dt
        x0, y0, x1, y1 = self.box
        return (x0 + dx, y0 + dy, x1 + dx, y1 + dy)

    def observe(self, box: Box, time: float, smoothing: float) -> None:
        dt = time - self.last_time
        if dt > 0.0:
            vx = ((box[0] + box[2]) - (self.box[0] + self.box[2])) * 0.5 / dt
            vy = ((box[1] + box[3]) - (self.box[1] + self.box[3])) * 0.5 / dt
            if self.hits == 1:
                self.vx, self.vy = vx, vy
            else:
                self.vx += smoothing * (vx - self.vx)
                self.vy += smoothing * (vy - self.vy)
        self.box = box
        self.last_time = time
        self.hits += 1


@dataclass(frozen=True, slots=True)
class TrackUpdate:
    """One frame's outcome: the track of each candidate (None: a weak box no track
    wanted), and the tracks removed at this frame (``ended``: confirmed tracks
    unseen for too long; ``dropped``: tentative tracks that missed a frame)."""

    track_ids: tuple[str | None, ...]
    ended: tuple[str, ...]
    dropped: tuple[str, ...]


def gated_ious(
    kinds: Sequence[str], boxes: Sequence[Box], cands: Sequence[Candidate], gate: float
) -> list[tuple[int, int, float]]:
    """The (box, candidate, weight) pairs of the same kind with IoU at or above ``gate``,
    sorted, weighted by how far the IoU clears the gate; ``kinds[i]`` is the kind of
    ``boxes[i]`` (a track's, where it is predicted).

    In a busy frame each track looks only at the boxes whose left edge lies
    within a box width of its own (candidates sorted by left edge, bisect), not
    at all of them: with 30 boxes a frame that cut the time here by a third.
    Small frames skip the sort, which would cost more than it saves.
    """
    by_kind: dict[str, list[int]] = {}
    for j, cand in enumerate(cands):
        by_kind.setdefault(cand.kind, []).append(j)
    sweep = len(boxes) * len(cands) > 64
    index: dict[str, tuple[list[float], float]] = {}
    if sweep:
        for kind, js in by_kind.items():
            js.sort(key=lambda j: cands[j].box[0])
            widest = max(cands[j].box[2] - cands[j].box[0] for j in js)
            index[kind] = ([cands[j].box[0] for j in js], widest)
    edges: list[tuple[int, int, float]] = []
    for i, kind in enumerate(kinds):
        same = by_kind.get(kind)
        if same is None:
            continue
        ax0, ay0, ax1, ay1 = boxes[i]
        if sweep:
            lefts, widest = index[kind]
            same = same[bisect_right(lefts, ax0 - widest) : bisect_left(lefts, ax1)]
        area = (ax1 - ax0) * (ay1 - ay0)
        for j in same:
            bx0, by0, bx1, by1 = cands[j].box
            w = (ax1 if ax1 < bx1 else bx1) - (ax0 if ax0 > bx0 else bx0)
            if w <= 0.0:
                continue
            h = (ay1 if ay1 < by1 else by1) - (ay0 if ay0 > by0 else by0)
            if h <= 0.0:
                continue
            inter = w * h
            iou = inter / (area + (bx1 - bx0) * (by1 - by0) - inter)
            if iou >= gate:
                # ByteTrack's objective (lapjv with cost_limit = 1 - gate): the most
                # total IoU *above the gate*; the epsilon keeps a pair exactly at the
                # gate matchable.
                edges.append((i, j, iou - gate + 1e-9))
    if sweep:
        edges.sort()
    return edges


class Tracker:
    """The tracks of one camera. Feed frames in frame-time order (see
    :mod:`detectflow.core.reorder`); a frame older than the last raises."""

    def __init__(self, camera_id: str, config: TrackerConfig | None = None) -> None:
        self.camera_id = camera_id
        self.config = config or TrackerConfig()
        self._tracks: dict[str, Track] = {}
        self._time: float | None = None

    @property
    def tracks(self) -> list[Track]:
        """Live tracks, oldest first."""
        return list(self._tracks.values())

    def get(self, track_id: str) -> Track | None:
        return self._tracks.get(track_id)

    def update(self, frame_id: str, time: float, cands: Sequence[Candidate]) -> TrackUpdate:
        """Associate one frame's candidates, taken at ``time`` (seconds of frame time)."""
        if self._time is not None and time < self._time:
            raise ValueError(
                f"frame {frame_id!r} at {time} is older than the last frame at {self._time}: "
                "put frames in frame-time order first"
            )
        self._time = time
        cfg = self.config
        ids: list[str | None] = [None] * len(cands)
        tracks = list(self._tracks.values())
        matched: set[str] = set()
        high = [k for k, c in enumerate(cands) if c.high]
        low = [k for k, c in enumerate(cands) if not c.high] if len(high) < len(cands) else []
        confirmed = [t for t in tracks if t.state != TENTATIVE]
        high = self._match(confirmed, cands, high, cfg.match_iou, time, ids, matched)
        if low:
            recent = [t for t in confirmed if t.state == TRACKED and t.id not in matched]
            self._match(recent, cands, low, cfg.low_match_iou, time, ids, matched)
        if high and len(confirmed) < len(tracks):
            tentative = [t for t in tracks if t.state == TENTATIVE]
            high = self._match(tentative, cands, high, cfg.tentative_match_iou, time, ids, matched)

        ended: list[str] = []
        dropped: list[str] = []
        for track in tracks:
            if track.id in matched:
                continue
            if track.state == TENTATIVE:
                dropped.append(track.id)
                del self._tracks[track.id]
            elif time - track.last_time >= cfg.max_lost_seconds:
                ended.append(track.id)
                del self._tracks[track.id]
            else:
                track.state = LOST
        for k in high:
            cand = cands[k]
            track = Track(
                track_id(self.camera_id, frame_id, cand.position), cand.kind, cand.box, time
            )
            if cfg.min_hits <= 1:
                track.state = TRACKED
            self._tracks[track.id] = track
            ids[k] = track.id
        return TrackUpdate(tuple(ids), tuple(ended), tuple(dropped))

    def _match(
        self,
        pool: list[Track],
        cands: Sequence[Candidate],
        slots: list[int],
        gate: float,
        time: float,
        ids: list[str | None],
        matched: set[str],
    ) -> list[int]:
        """Match the candidates at ``slots`` to ``pool`` (where each track is predicted
        to be at ``time``); record the ids; return the slots left over."""
        if not pool or not slots:
            return slots
        cfg = self.config
        horizon = cfg.max_predict_seconds
        boxes = [cands[k] for k in slots]
        edges = gated_ious(
            [t.kind for t in pool], [t.predict(time, horizon) for t in pool], boxes, gate
        )
        if not edges:
            return slots
        taken = set()
        for i, j in max_weight_matching(len(pool), len(boxes), edges):
            track = pool[i]
            track.observe(boxes[j].box, time, cfg.velocity_smoothing)
            if track.state != TENTATIVE or track.hits >= cfg.min_hits:
                track.state = TRACKED
            ids[slots[j]] = track.id
            matched.add(track.id)
            taken.add(j)
        return [k for j, k in enumerate(slots) if j not in taken]

    def end_all(self) -> list[str]:
        """The camera stopped: every track goes; returns the confirmed ones' ids."""
        ended = [t.id for t in self._tracks.values() if t.state != TENTATIVE]
        self._tracks.clear()
        return ended

    def snapshot(self) -> dict[str, Any]:
        """The whole state as plain values: picklable and JSON-able."""
        return {
            "version": _STATE_VERSION,
            "camera_id": self.camera_id,
            "config": list(astuple(self.config)),
            "time": self._time,
            "tracks": [
                [t.id, t.kind, t.state, list(t.box), t.vx, t.vy, t.first_time, t.last_time, t.hits]
                for t in self._tracks.values()
            ],
        }

    @classmethod
    def resume(cls, state: Any, config: TrackerConfig | None = None) -> Tracker:
        """Rebuild from :meth:`snapshot`; with ``config``, that config replaces the
        stored one (gates may change between runs; the tracks stay valid)."""
        try:
            if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
                raise ValueError(f"unknown state version, expected {_STATE_VERSION}")
            stored = TrackerConfig(*state["config"])
            tracker = cls(str(state["camera_id"]), config or stored)
            time = state["time"]
            tracker._time = None if time is None else float(time)
            for tid, kind, st, box, vx, vy, first, last, hits in state["tracks"]:
                if st not in (TENTATIVE, TRACKED, LOST) or len(box) != 4:
                    raise ValueError(f"track {tid!r} has an impossible state")
                track = Track(str(tid), str(kind), tuple(float(v) for v in box), float(first))  # type: ignore[arg-type]
                track.vx, track.vy = float(vx), float(vy)
                track.last_time, track.hits, track.state = float(last), int(hits), st
                tracker._tracks[track.id] = track
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid tracker state: {exc}") from exc
        return tracker
