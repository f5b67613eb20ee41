"""A camera's zones, masks, lines and filters, parsed from its ``options`` JSON.

The shape (coordinates in frame fractions)::

    {"zones": {"dock": {"polygon": [[0.6, 0.0], [1.0, 0.0], [1.0, 1.0], [0.6, 1.0]],
                        "holes": [], "inertia": 3}},
     "masks": [[[0.0, 0.0], [0.1, 0.0], [0.1, 0.1]]],
     "lines": {"gate": {"from": [0.5, 0.0], "to": [0.5, 1.0]}},
     "filters": {"person": {"min_score": 0.5, "threshold": 0.7,
                            "min_area": 0.0, "max_area": 1.0}},
     "objects": ["person", "vehicle"],
     "required_zones": [],
     "tracking": {"min_hits": 3, "max_disappeared_seconds": 5,
                  "low_score": 0.1, "reorder_frames": 32, "reorder_seconds": 1.0}}

Every key is optional. Other keys of ``options`` belong to other parts of the
camera and are left alone; inside these keys an unknown name is refused,
because a typo (``"inerta"``) would otherwise silently do nothing. Errors
are :class:`ValueError` whose message starts with the offending key's path
(``zones.dock.polygon: ...``), for the server to answer 422 with.

Labels in ``filters`` and ``objects`` match a detection's provider label or
its detection type (``car`` or ``vehicle``), the label first.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from detectflow.core.geometry import Area, Line, parse_area, parse_line
from detectflow.core.models import ProviderConfig

__all__ = ["LabelFilter", "NamedLine", "ObjectsConfig", "Zone"]

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_OPTION_KEYS = ("zones", "masks", "lines", "filters", "objects", "required_zones", "tracking")


@dataclass(frozen=True, slots=True)
class LabelFilter:
    """Per label: a box below ``min_score`` cannot start or lead a track (it may
    still keep one alive, ByteTrack's weak box); an object starts once the median
    of its scores reaches ``threshold``; boxes outside ``min_area``..``max_area``
    (fractions of the frame) are dropped. Defaults are Frigate's."""

    min_score: float = 0.5
    threshold: float = 0.7
    min_area: float = 0.0
    max_area: float = 1.0


@dataclass(frozen=True, slots=True)
class Zone:
    """A named area; an object is in it once its bottom centre has been inside for
    ``inertia`` frames in a row, and leaves once outside for as many."""

    name: str
    area: Area
    inertia: int = 3


@dataclass(frozen=True, slots=True)
class NamedLine:
    name: str
    line: Line


_DEFAULT_FILTER = LabelFilter()


@dataclass(frozen=True, slots=True)
class ObjectsConfig:
    """Everything that decides which boxes become which objects on one camera."""

    zones: tuple[Zone, ...] = ()
    masks: tuple[Area, ...] = ()
    lines: tuple[NamedLine, ...] = ()
    filters: Mapping[str, LabelFilter] = field(default_factory=dict)
    objects: frozenset[str] | None = None
    """Labels to track; None tracks every label."""
    required_zones: frozenset[str] = frozenset()
    min_hits: int = 3
    max_disappeared_seconds: float = 5.0
    low_score: float = 0.1
    reorder_frames: int = 32
    reorder_seconds: float = 1.0
    update_interval_seconds: float = 1.0
    enable_person_detection: bool = True
    enable_face_detection: bool = True
    max_faces_per_frame: int | None = None

    def filter_for(self, label: str, detection_type: str) -> LabelFilter:
        found = self.filters.get(label) or self.filters.get(detection_type)
        return found or _DEFAULT_FILTER

    def tracks(self, label: str, detection_type: str) -> bool:
        """Whether ``objects`` and the provider flags let this label be tracked."""
        if detection_type == "person" and not self.enable_person_detection:
            return False
        if detection_type == "face" and not self.enable_face_detection:
            return False
        return self.objects is None or label in self.objects or detection_type in self.objects

    def with_provider(self, provider: ProviderConfig) -> ObjectsConfig:
        """Apply the provider's stored flags (the guide's ``enable_person_detection``,
        ``enable_face_detection``, ``max_faces_per_frame``) as filters."""
        return replace(
            self,
            enable_person_detection=provider.enable_person_detection,
            enable_face_detection=provider.enable_face_detection,
            max_faces_per_frame=provider.max_faces_per_frame,
        )

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> ObjectsConfig:
        """Parse a camera's ``options``; raises ValueError naming the bad key."""
        if options is None:
            return cls()
        if not isinstance(options, Mapping):
            raise ValueError(f"options: expected an object, got {type(options).__name__}")
        zones = _zones(options.get("zones"))
        masks = _masks(options.get("masks"))
        lines = _lines(options.get("lines"))
        filters = _filters(options.get("filters"))
        objects = _labels(options.get("objects"), "objects")
        required = _labels(options.get("required_zones"), "required_zones") or frozenset()
        names = {z.name for z in zones}
        unknown = sorted(required - names)
        if unknown:
            raise ValueError(f"required_zones: no zone named {', '.join(map(repr, unknown))}")
        tracking = _tracking(options.get("tracking"))
        return cls(
            zones=zones,
            masks=masks,
            lines=lines,
            filters=filters,
            objects=objects,
            required_zones=required,
            **tracking,
        )

    def as_options(self) -> dict[str, Any]:
        """The ``options`` keys this config parses from (what the API echoes back)."""
        out: dict[str, Any] = {}
        if self.zones:
            out["zones"] = {z.name: {**z.area.as_json(), "inertia": z.inertia} for z in self.zones}
        if self.masks:
            out["masks"] = [m.as_json() if m.holes else m.as_json()["polygon"] for m in self.masks]
        if self.lines:
            out["lines"] = {n.name: n.line.as_json() for n in self.lines}
        if self.filters:
            out["filters"] = {
                label: {
                    "min_score": f.min_score,
                    "threshold": f.threshold,
                    "min_area": f.min_area,
                    "max_area": f.max_area,
                }
                for label, f in sorted(self.filters.items())
            }
        if self.objects is not None:
            out["objects"] = sorted(self.objects)
        if self.required_zones:
            out["required_zones"] = sorted(self.required_zones)
        out["tracking"] = {
            "min_hits": self.min_hits,
            "max_disappeared_seconds": self.max_disappeared_seconds,
            "low_score": self.low_score,
            "reorder_frames": self.reorder_frames,
            "reorder_seconds": self.reorder_seconds,
        }
        return out


# -- parsing helpers -------------------------------------------------------------


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected an object keyed by name, got {value!r}")
    for name in value:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(
                f"{where}: name {name!r} must be 1-64 of letters, digits, '_', '.', '-'"
            )
    return value


def _keys(value: Any, where: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected an object, got {value!r}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; expected {', '.join(allowed)}")
    return value


def _fraction(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{where}: must be between 0 and 1, got {value!r}")
    return float(value)


def _count(value: Any, where: str, *, zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: expected an integer, got {value!r}")
    if value < 0 or (value == 0 and not zero):
        raise ValueError(f"{where}: must be {'>= 0' if zero else '> 0'}, got {value!r}")
    return value


def _seconds(value: Any, where: str, *, zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not zero):
        raise ValueError(f"{where}: must be {'>= 0' if zero else '> 0'}, got {value!r}")
    return seconds


def _zones(value: Any) -> tuple[Zone, ...]:
    zones = []
    for name, raw in _mapping(value, "zones").items():
        where = f"zones.{name}"
        spec = _keys(raw, where, ("polygon", "holes", "inertia"))
        if "polygon" not in spec:
            raise ValueError(f"{where}: missing 'polygon'")
        area = parse_area({k: spec[k] for k in ("polygon", "holes") if k in spec}, where)
        inertia = _count(spec.get("inertia", 3), f"{where}.inertia")
        zones.append(Zone(name, area, inertia))
    return tuple(zones)


def _masks(value: Any) -> tuple[Area, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise ValueError(f"masks: expected a list of polygons, got {value!r}")
    return tuple(parse_area(raw, f"masks[{i}]") for i, raw in enumerate(value))


def _lines(value: Any) -> tuple[NamedLine, ...]:
    return tuple(
        NamedLine(name, parse_line(raw, f"lines.{name}"))
        for name, raw in _mapping(value, "lines").items()
    )


def _filters(value: Any) -> dict[str, LabelFilter]:
    out = {}
    fields = ("min_score", "threshold", "min_area", "max_area")
    for label, raw in _mapping(value, "filters").items():
        where = f"filters.{label}"
        spec = _keys(raw, where, fields)
        numbers = {k: _fraction(spec[k], f"{where}.{k}") for k in fields if k in spec}
        f = LabelFilter(**numbers)
        if f.min_area > f.max_area:
            raise ValueError(f"{where}: min_area {f.min_area} is above max_area {f.max_area}")
        out[label] = f
    return out


def _labels(value: Any, where: str) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not all(
        isinstance(v, str) and _NAME.match(v) for v in value
    ):
        raise ValueError(f"{where}: expected a list of names, got {value!r}")
    return frozenset(value)


def _tracking(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    spec = _keys(
        value,
        "tracking",
        ("min_hits", "max_disappeared_seconds", "low_score", "reorder_frames", "reorder_seconds"),
    )
    out: dict[str, Any] = {}
    if "min_hits" in spec:
        out["min_hits"] = _count(spec["min_hits"], "tracking.min_hits")
    if "max_disappeared_seconds" in spec:
        out["max_disappeared_seconds"] = _seconds(
            spec["max_disappeared_seconds"], "tracking.max_disappeared_seconds"
        )
    if "low_score" in spec:
        out["low_score"] = _fraction(spec["low_score"], "tracking.low_score")
    if "reorder_frames" in spec:
        out["reorder_frames"] = _count(spec["reorder_frames"], "tracking.reorder_frames", zero=True)
    if "reorder_seconds" in spec:
        out["reorder_seconds"] = _seconds(
            spec["reorder_seconds"], "tracking.reorder_seconds", zero=True
        )
    return out
