"""Plane geometry for zones, masks and lines, in fractions of the frame.

Cameras differ in resolution, so every shape a person draws is stored in
fractions of the frame (0..1, x to the right, y down) and compared with boxes
that normalization already turned into fractions. An object *stands* at the
bottom centre of its box (its feet, a car's wheels), so zones, masks and lines
all look at that one point, as Frigate does.

Shapes are checked once, when a camera is configured: a polygon with fewer
than 3 points, no area or crossing edges raises :class:`ValueError` with a
message that names the offending key, which the server turns into a 422.
The checks that run per frame (:meth:`Area.contains`, :meth:`Line.crossing`)
are then plain float arithmetic on pre-computed tuples: no validation, no
allocation, a bounding-box test before the edge loop.

Boundary rule: a point on an edge follows the half-open crossing-number rule,
so two zones that share an edge never both contain a point on it, and a path
that touches a line and turns back is not a crossing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Area",
    "Box",
    "Line",
    "Point",
    "bottom_centre",
    "box_area",
    "box_iou",
    "parse_area",
    "parse_line",
    "parse_point",
    "parse_polygon",
    "polygon_area",
    "segments_intersect",
]

Point = tuple[float, float]
Box = tuple[float, float, float, float]
"""A box as corners ``(x_min, y_min, x_max, y_max)`` in frame fractions."""

MAX_POINTS = 1000
"""More vertices than any hand-drawn zone needs; bounds the O(n^2) edge check."""
_MIN_AREA = 1e-9


def bottom_centre(box: Box) -> Point:
    """Where the object stands: the middle of the box's lower edge (y grows downwards)."""
    return ((box[0] + box[2]) * 0.5, box[3])


def box_area(box: Box) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes; 0 when they do not overlap."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    if w <= 0.0:
        return 0.0
    h = min(a[3], b[3]) - max(a[1], b[1])
    if h <= 0.0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0.0 else 0.0


def polygon_area(points: Sequence[Point]) -> float:
    """Signed shoelace area: positive when the points turn counter-clockwise (x right, y up)."""
    total = 0.0
    n = len(points)
    for i in range(n):
        x0, y0 = points[i]
        x1, y1 = points[(i + 1) % n]
        total += x0 * y1 - x1 * y0
    return total * 0.5


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _on_segment(p: Point, a: Point, b: Point) -> bool:
    """``p`` (known collinear with ``a``-``b``) lies within the segment's extent."""
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def segments_intersect(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    """Whether the closed segments ``p1-p2`` and ``q1-q2`` share at least one point."""
    d1 = _cross(q1, q2, p1)
    d2 = _cross(q1, q2, p2)
    d3 = _cross(p1, p2, q1)
    d4 = _cross(p1, p2, q2)
    if ((d1 > 0 and d2 < 0) or (d1 < 0 and d2 > 0)) and (
        (d3 > 0 and d4 < 0) or (d3 < 0 and d4 > 0)
    ):
        return True
    return (
        (d1 == 0 and _on_segment(p1, q1, q2))
        or (d2 == 0 and _on_segment(p2, q1, q2))
        or (d3 == 0 and _on_segment(q1, p1, p2))
        or (d4 == 0 and _on_segment(q2, p1, p2))
    )


def _self_intersection(points: Sequence[Point]) -> tuple[int, int] | None:
    """The first pair of edges (by start index) that touch where they should not."""
    n = len(points)
    edges = [(points[i], points[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        a1, a2 = edges[i]
        for j in range(i + 1, n):
            b1, b2 = edges[j]
            if j == i + 1 or (i == 0 and j == n - 1):
                # Neighbours share a vertex; they overlap only when they fold back
                # onto each other (collinear, pointing apart from the shared vertex).
                shared, a_end, b_end = (a2, a1, b2) if j == i + 1 else (a1, a2, b1)
                if _cross(shared, a_end, b_end) == 0 and (
                    (a_end[0] - shared[0]) * (b_end[0] - shared[0])
                    + (a_end[1] - shared[1]) * (b_end[1] - shared[1])
                    > 0
                ):
                    return (i, j)
                continue
            if segments_intersect(a1, a2, b1, b2):
                return (i, j)
    return None


def _ring_contains(xs: tuple[float, ...], ys: tuple[float, ...], x: float, y: float) -> bool:
    """Even-odd crossing number with the half-open rule (edges' lower end included)."""
    inside = False
    n = len(xs)
    j = n - 1
    for i in range(n):
        yi, yj = ys[i], ys[j]
        if (yi > y) != (yj > y):
            xi = xs[i]
            if x < xi + (y - yi) * (xs[j] - xi) / (yj - yi):
                inside = not inside
        j = i
    return inside


@dataclass(frozen=True, slots=True)
class _Ring:
    points: tuple[Point, ...]
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    bounds: Box

    @classmethod
    def of(cls, points: tuple[Point, ...]) -> _Ring:
        xs = tuple(p[0] for p in points)
        ys = tuple(p[1] for p in points)
        return cls(points, xs, ys, (min(xs), min(ys), max(xs), max(ys)))

    def contains(self, x: float, y: float) -> bool:
        b = self.bounds
        if x < b[0] or x > b[2] or y < b[1] or y > b[3]:
            return False
        return _ring_contains(self.xs, self.ys, x, y)


@dataclass(frozen=True, slots=True, init=False)
class Area:
    """A simple polygon with optional holes; built by :func:`parse_area` or :meth:`of`."""

    exterior: _Ring
    holes: tuple[_Ring, ...]

    def __init__(self, exterior: _Ring, holes: tuple[_Ring, ...] = ()) -> None:
        object.__setattr__(self, "exterior", exterior)
        object.__setattr__(self, "holes", holes)

    @classmethod
    def of(
        cls, polygon: Sequence[Sequence[float]], holes: Sequence[Sequence[Sequence[float]]] = ()
    ) -> Area:
        """Validate and build; the same checks as :func:`parse_area`."""
        return parse_area({"polygon": polygon, "holes": holes})

    @property
    def points(self) -> tuple[Point, ...]:
        return self.exterior.points

    @property
    def hole_points(self) -> tuple[tuple[Point, ...], ...]:
        return tuple(h.points for h in self.holes)

    def contains(self, point: Point) -> bool:
        """Inside the exterior and in none of the holes (half-open on edges)."""
        x, y = point
        ring = self.exterior
        b = ring.bounds
        if x < b[0] or x > b[2] or y < b[1] or y > b[3]:
            return False  # the usual answer, found without the edge loop
        if not _ring_contains(ring.xs, ring.ys, x, y):
            return False
        holes = self.holes
        return not holes or not any(h.contains(x, y) for h in holes)

    def as_json(self) -> dict[str, Any]:
        """The configuration shape this area parses from."""
        out: dict[str, Any] = {"polygon": [list(p) for p in self.points]}
        if self.holes:
            out["holes"] = [[list(p) for p in h] for h in self.hole_points]
        return out


@dataclass(frozen=True, slots=True)
class Line:
    """A directed segment: crossing it is ``in`` one way and ``out`` the other.

    ``in`` is a move from the side where ``cross(to - from, p - from) > 0`` to
    the other. On the image (y down) that is from the *right* of the segment,
    looking from ``from`` towards ``to``, to its left: for the gate from
    ``(0.5, 0.0)`` to ``(0.5, 1.0)``, walking from x < 0.5 to x > 0.5 is ``in``.
    Swap ``from`` and ``to`` to swap the directions.
    """

    start: Point
    end: Point

    def side(self, point: Point) -> bool:
        """True on the ``in`` crossing's starting side; a point on the line is on the other."""
        sx, sy = self.start
        return (self.end[0] - sx) * (point[1] - sy) - (self.end[1] - sy) * (point[0] - sx) > 0.0

    def crossing(self, before: Point, after: Point) -> int:
        """+1 (``in``), -1 (``out``) or 0 for a move from ``before`` to ``after``.

        A move crosses when it changes side and the move's segment meets the
        line's segment. A point exactly on the line counts as being on the
        ``out`` side (half-open), so each change of side counts once and a
        path that runs along the line crosses nothing.
        """
        sx, sy = self.start
        dx, dy = self.end[0] - sx, self.end[1] - sy
        was = dx * (before[1] - sy) - dy * (before[0] - sx) > 0.0
        if was == (dx * (after[1] - sy) - dy * (after[0] - sx) > 0.0):
            return 0
        # The line's end points must be on both sides of the move (or on it). The
        # move is taken from its ``in`` side, so reversing it gives exactly the
        # opposite answer, float rounding included.
        p, q = (before, after) if was else (after, before)
        a = _cross(p, q, self.start)
        b = _cross(p, q, self.end)
        if (a > 0.0 and b > 0.0) or (a < 0.0 and b < 0.0):
            return 0
        return 1 if was else -1

    def as_json(self) -> dict[str, list[float]]:
        return {"from": list(self.start), "to": list(self.end)}


# -- parsing (configuration time) ---------------------------------------------------


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise ValueError(f"{where}: coordinates are fractions of the frame (0..1), got {value!r}")
    return number


def parse_point(value: Any, where: str) -> Point:
    """``[x, y]`` in frame fractions."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"{where}: a point is [x, y], got {value!r}")
    return (_number(value[0], f"{where}[0]"), _number(value[1], f"{where}[1]"))


def parse_polygon(value: Any, where: str) -> tuple[Point, ...]:
    """A simple polygon: at least 3 distinct points, an area, no crossing edges.

    A closing point equal to the first (GeoJSON's habit) is accepted and dropped.
    """
    if not isinstance(value, list | tuple):
        raise ValueError(f"{where}: a polygon is a list of [x, y] points, got {value!r}")
    points = [parse_point(p, f"{where}[{i}]") for i, p in enumerate(value)]
    if len(points) > 1 and points[0] == points[-1]:
        points.pop()
    if len(points) < 3:
        raise ValueError(f"{where}: a polygon needs at least 3 distinct points, got {len(points)}")
    if len(points) > MAX_POINTS:
        raise ValueError(f"{where}: at most {MAX_POINTS} points, got {len(points)}")
    for i, p in enumerate(points):
        if p == points[(i + 1) % len(points)]:
            raise ValueError(f"{where}: points {i} and {(i + 1) % len(points)} are the same")
    p0, p1 = points[0], points[1]
    collinear = all(abs(_cross(p0, p1, p)) < _MIN_AREA for p in points[2:])
    if collinear or (abs(polygon_area(points)) < _MIN_AREA and _self_intersection(points) is None):
        raise ValueError(f"{where}: the polygon is degenerate (its points enclose no area)")
    crossing = _self_intersection(points)
    if crossing is not None:
        i, j = crossing
        raise ValueError(
            f"{where}: the polygon intersects itself (edge {i} meets edge {j}); "
            "list its points in order around its outline"
        )
    return tuple(points)


def _rings_touch(a: tuple[Point, ...], b: tuple[Point, ...]) -> bool:
    na, nb = len(a), len(b)
    return any(
        segments_intersect(a[i], a[(i + 1) % na], b[j], b[(j + 1) % nb])
        for i in range(na)
        for j in range(nb)
    )


def parse_area(value: Any, where: str = "polygon") -> Area:
    """A polygon as a list of points, or ``{"polygon": [...], "holes": [[...], ...]}``.

    Holes must lie strictly inside the polygon and apart from each other, so
    "inside the area" has one meaning.
    """
    if isinstance(value, dict):
        unknown = set(value) - {"polygon", "holes"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; expected polygon, holes")
        if "polygon" not in value:
            raise ValueError(f"{where}: missing 'polygon'")
        outline = parse_polygon(value["polygon"], f"{where}.polygon")
        raw_holes = value.get("holes") or []
        if not isinstance(raw_holes, list | tuple):
            raise ValueError(f"{where}.holes: a list of polygons, got {raw_holes!r}")
        holes = [parse_polygon(h, f"{where}.holes[{i}]") for i, h in enumerate(raw_holes)]
    else:
        outline = parse_polygon(value, where)
        holes = []
    outer = _Ring.of(outline)
    rings: list[_Ring] = []
    for i, hole in enumerate(holes):
        if _rings_touch(outline, hole) or not all(outer.contains(*p) for p in hole):
            raise ValueError(f"{where}.holes[{i}]: a hole must lie strictly inside the polygon")
        ring = _Ring.of(hole)
        for k, other in enumerate(rings):
            if (
                _rings_touch(hole, other.points)
                or ring.contains(*other.points[0])
                or other.contains(*hole[0])
            ):
                raise ValueError(f"{where}.holes[{i}]: overlaps holes[{k}]")
        rings.append(ring)
    return Area(outer, tuple(rings))


def parse_line(value: Any, where: str) -> Line:
    """``{"from": [x, y], "to": [x, y]}``: two distinct points."""
    if not isinstance(value, dict):
        raise ValueError(f"{where}: a line is {{'from': [x, y], 'to': [x, y]}}, got {value!r}")
    unknown = set(value) - {"from", "to"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; expected from, to")
    missing = {"from", "to"} - set(value)
    if missing:
        raise ValueError(f"{where}: missing {sorted(missing)}")
    start = parse_point(value["from"], f"{where}.from")
    end = parse_point(value["to"], f"{where}.to")
    if start == end:
        raise ValueError(f"{where}: 'from' and 'to' are the same point; a line needs a length")
    return Line(start, end)
