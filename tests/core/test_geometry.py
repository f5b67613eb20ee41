"""Geometry of zones, masks and lines, checked against independent reference models:
exact rational arithmetic (``Fraction``), winding angles, and star-shaped polygons whose
inside is known by construction."""

from __future__ import annotations

import math
from fractions import Fraction
from itertools import pairwise

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from detectflow.core.geometry import (
    Area,
    Line,
    bottom_centre,
    box_iou,
    parse_area,
    parse_line,
    parse_polygon,
    polygon_area,
    segments_intersect,
)

# Points on a 1/16 grid: float arithmetic on them is exact, so degenerate cases
# (collinear edges, points on lines) happen often and must agree with Fractions.
grid = st.integers(0, 16).map(lambda k: k / 16)
grid_point = st.tuples(grid, grid)
unit = st.floats(0.0, 1.0, allow_nan=False)
unit_point = st.tuples(unit, unit)


@st.composite
def star_polygons(draw: st.DrawFn) -> tuple[tuple[float, float], list[tuple[float, float]]]:
    """A polygon every ray from ``centre`` leaves once: simple by construction."""
    cx, cy = draw(st.floats(0.3, 0.7)), draw(st.floats(0.3, 0.7))
    n = draw(st.integers(3, 12))
    # Evenly spread angles, each nudged by at most 0.2 of a step: every gap stays
    # below pi, so the centre is strictly inside, and no filtering is needed.
    step = 2 * math.pi / n
    turn = draw(st.floats(0, step))
    nudges = draw(st.lists(st.floats(-0.2, 0.2), min_size=n, max_size=n))
    angles = [turn + step * (k + nudge) for k, nudge in enumerate(nudges)]
    radii = draw(st.lists(st.floats(0.05, 0.29), min_size=n, max_size=n))
    points = [
        (cx + r * math.cos(a), cy + r * math.sin(a)) for a, r in zip(angles, radii, strict=True)
    ]
    return (cx, cy), points


def distance_to_segment(p, a, b) -> float:
    ax, ay = a
    dx, dy = b[0] - ax, b[1] - ay
    t = max(0.0, min(1.0, ((p[0] - ax) * dx + (p[1] - ay) * dy) / (dx * dx + dy * dy)))
    return math.hypot(p[0] - ax - t * dx, p[1] - ay - t * dy)


def near_boundary(p, points, eps=1e-7) -> bool:
    n = len(points)
    return any(distance_to_segment(p, points[i], points[(i + 1) % n]) < eps for i in range(n))


def winding_inside(p, points) -> bool:
    """Reference: the angles swept around ``p`` add up to 2*pi inside, 0 outside."""
    total = 0.0
    n = len(points)
    for i in range(n):
        a = math.atan2(points[i][1] - p[1], points[i][0] - p[0])
        b = math.atan2(points[(i + 1) % n][1] - p[1], points[(i + 1) % n][0] - p[0])
        d = b - a
        while d > math.pi:
            d -= 2 * math.pi
        while d < -math.pi:
            d += 2 * math.pi
        total += d
    return abs(total) > math.pi


# -- exact reference for segments -----------------------------------------------------


def exact_intersect(p1, p2, q1, q2) -> bool:
    """Closed segments share a point: solve p1 + s(p2-p1) = q1 + t(q2-q1) exactly."""
    P1, P2, Q1, Q2 = ([Fraction(c) for c in v] for v in (p1, p2, q1, q2))
    r = (P2[0] - P1[0], P2[1] - P1[1])
    s = (Q2[0] - Q1[0], Q2[1] - Q1[1])
    denom = r[0] * s[1] - r[1] * s[0]
    qp = (Q1[0] - P1[0], Q1[1] - P1[1])
    if denom != 0:
        t = (qp[0] * s[1] - qp[1] * s[0]) / denom
        u = (qp[0] * r[1] - qp[1] * r[0]) / denom
        return 0 <= t <= 1 and 0 <= u <= 1
    if r == (0, 0) and s == (0, 0):
        return P1 == Q1
    if r == (0, 0) or s == (0, 0):  # a point and a segment: on it, within its extent
        pt, (a, b) = (P1, (Q1, Q2)) if r == (0, 0) else (Q1, (P1, P2))
        on_line = (b[0] - a[0]) * (pt[1] - a[1]) - (b[1] - a[1]) * (pt[0] - a[0]) == 0
        return on_line and all(min(a[k], b[k]) <= pt[k] <= max(a[k], b[k]) for k in (0, 1))
    if qp[0] * r[1] - qp[1] * r[0] != 0:
        return False  # parallel, apart
    # Collinear: overlap of the projections on the axis where they have extent.
    axis = 0 if max(abs(r[0]), abs(s[0])) >= max(abs(r[1]), abs(s[1])) else 1
    a0, a1 = sorted((P1[axis], P2[axis]))
    b0, b1 = sorted((Q1[axis], Q2[axis]))
    return max(a0, b0) <= min(a1, b1)


def exact_simple(points) -> bool:
    """Reference: no two non-adjacent edges meet; adjacent ones share only their vertex."""
    n = len(points)
    F = [(Fraction(x), Fraction(y)) for x, y in points]
    for i in range(n):
        for j in range(i + 1, n):
            a1, a2 = F[i], F[(i + 1) % n]
            b1, b2 = F[j], F[(j + 1) % n]
            adjacent = j == i + 1 or (i == 0 and j == n - 1)
            if not adjacent:
                if exact_intersect(a1, a2, b1, b2):
                    return False
                continue
            shared = a2 if j == i + 1 else a1
            other_a = a1 if j == i + 1 else a2
            other_b = b2 if j == i + 1 else b1
            # Adjacent edges overlap beyond the shared vertex iff one's far end lies
            # on the other (they are collinear and point the same way).
            if (other_a != shared and exact_intersect(shared, other_b, other_a, other_a)) or (
                exact_intersect(shared, other_a, other_b, other_b)
            ):
                return False
    return True


# -- boxes ------------------------------------------------------------------------


@st.composite
def boxes(draw: st.DrawFn):
    x0, x1 = sorted(draw(st.lists(grid, min_size=2, max_size=2, unique=True)))
    y0, y1 = sorted(draw(st.lists(grid, min_size=2, max_size=2, unique=True)))
    return (x0, y0, x1, y1)


def test_bottom_centre_is_the_middle_of_the_lower_edge():
    assert bottom_centre((0.2, 0.1, 0.4, 0.7)) == pytest.approx((0.3, 0.7))


@given(boxes(), boxes())
def test_box_iou_matches_exact_arithmetic_and_is_symmetric(a, b):
    A = [Fraction(v) for v in a]
    B = [Fraction(v) for v in b]
    w = max(Fraction(0), min(A[2], B[2]) - max(A[0], B[0]))
    h = max(Fraction(0), min(A[3], B[3]) - max(A[1], B[1]))
    inter = w * h
    union = (A[2] - A[0]) * (A[3] - A[1]) + (B[2] - B[0]) * (B[3] - B[1]) - inter
    assert box_iou(a, b) == pytest.approx(float(inter / union), abs=1e-12)
    assert box_iou(a, b) == box_iou(b, a)
    assert box_iou(a, a) == 1.0


# -- polygon validation --------------------------------------------------------------


@pytest.mark.parametrize(
    ("polygon", "message"),
    [
        ([[0.1, 0.1], [0.5, 0.5]], "at least 3 distinct points"),
        ([[0.1, 0.1], [0.5, 0.5], [0.1, 0.1]], "at least 3 distinct points"),
        ([[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]], "degenerate"),
        ([[0.1, 0.1], [0.1, 0.1], [0.9, 0.9], [0.1, 0.9]], "are the same"),
        ([[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0]], "intersects itself"),
        ([[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.5, 0.2], [0.0, 0.5]], "intersects itself"),
        ([[0.0, 0.0], [1.5, 0.0], [1.0, 1.0]], r"fractions of the frame \(0..1\)"),
        ([[0.0, 0.0], [1.0, float("nan")], [1.0, 1.0]], "fractions of the frame"),
        ([[0.0, 0.0], [True, 0.0], [1.0, 1.0]], "expected a number"),
        ([[0.0, 0.0], [1.0], [1.0, 1.0]], r"a point is \[x, y\]"),
        ("square", "a polygon is a list"),
    ],
)
def test_bad_polygons_are_refused_with_a_message_naming_the_key(polygon, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_polygon(polygon, "zones.dock.polygon")
    assert str(info.value).startswith("zones.dock.polygon")


def test_a_closing_point_equal_to_the_first_is_accepted_and_dropped():
    ring = parse_polygon([[0, 0], [1, 0], [1, 1], [0, 0]], "p")
    assert ring == ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0))


def test_collinear_points_along_an_edge_are_fine():
    parse_polygon([[0, 0], [0.5, 0], [1, 0], [1, 1], [0, 1]], "p")


@given(st.lists(grid_point, min_size=3, max_size=7))
def test_polygon_check_agrees_with_exact_reference(points):
    distinct = all(points[i] != points[(i + 1) % len(points)] for i in range(len(points)))
    assume(distinct and points[0] != points[-1])
    expected = exact_simple(points) and polygon_area(points) != 0
    try:
        parse_polygon([list(p) for p in points], "p")
        accepted = True
    except ValueError:
        accepted = False
    assert accepted == expected


@given(grid_point, grid_point, grid_point, grid_point)
def test_segments_intersect_agrees_with_exact_reference(p1, p2, q1, q2):
    assert segments_intersect(p1, p2, q1, q2) == exact_intersect(p1, p2, q1, q2)


# -- point in polygon ------------------------------------------------------------------


@given(star_polygons(), unit_point)
def test_point_in_star_polygon_matches_the_winding_angle(star, point):
    _, points = star
    assume(not near_boundary(point, points))
    area = Area.of(points)
    assert area.contains(point) == winding_inside(point, points)


@given(star_polygons())
def test_a_star_polygon_contains_its_centre_and_not_far_points(star):
    centre, points = star
    area = Area.of(points)
    assert area.contains(centre)
    assert not area.contains((0.0, 0.0)) and not area.contains((1.0, 1.0))


@given(
    st.integers(1, 15).map(lambda k: k / 16),
    st.lists(grid_point, min_size=1, max_size=30),
)
def test_two_zones_sharing_an_edge_never_both_hold_a_point(split, points):
    left = Area.of([[0, 0], [split, 0], [split, 1], [0, 1]])
    right = Area.of([[split, 0], [1, 0], [1, 1], [split, 1]])
    for p in points:
        assert not (left.contains(p) and right.contains(p))
        if 0 < p[0] < 1 and 0 < p[1] < 1:  # strictly inside the union: in exactly one
            assert left.contains(p) or right.contains(p)


@given(star_polygons(), unit_point, st.floats(0.2, 0.6))
def test_points_in_a_hole_are_outside_the_area(star, point, scale):
    centre, points = star
    hole = [
        (centre[0] + scale * (x - centre[0]), centre[1] + scale * (y - centre[1]))
        for x, y in points
    ]
    assume(not near_boundary(point, points) and not near_boundary(point, hole))
    area = Area.of(points, [hole])
    assert area.contains(point) == (
        winding_inside(point, points) and not winding_inside(point, hole)
    )
    assert not area.contains(centre)


@pytest.mark.parametrize(
    ("holes", "message"),
    [
        ([[[0.5, 0.5], [1.0, 0.5], [0.5, 1.0]]], "strictly inside"),  # touches the edge
        ([[[0.0, 0.0], [0.05, 0.0], [0.0, 0.05]]], "strictly inside"),
        (
            [[[0.2, 0.2], [0.6, 0.2], [0.6, 0.6]], [[0.3, 0.25], [0.7, 0.25], [0.7, 0.7]]],
            "overlaps",
        ),
        (
            [
                [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8]],
                [[0.4, 0.4], [0.5, 0.4], [0.5, 0.5]],
            ],
            "overlaps",
        ),
    ],
)
def test_bad_holes_are_refused(holes, message):
    with pytest.raises(ValueError, match=message):
        parse_area(
            {"polygon": [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]], "holes": holes}, "zones.z"
        )


def test_area_round_trips_through_its_json():
    value = {
        "polygon": [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]],
        "holes": [[[0.6, 0.2], [0.8, 0.2], [0.8, 0.4]]],
    }
    assert parse_area(parse_area(value).as_json()) == parse_area(value)


# -- lines ----------------------------------------------------------------------------


def exact_crossing(line: Line, before, after) -> int:
    """Reference: exact side signs (on the line counts as the out side) and an exact
    segment intersection."""

    def side(p) -> bool:
        (sx, sy), (ex, ey) = line.start, line.end
        F = Fraction
        return (F(ex) - F(sx)) * (F(p[1]) - F(sy)) - (F(ey) - F(sy)) * (F(p[0]) - F(sx)) > 0

    if side(before) == side(after) or not exact_intersect(before, after, line.start, line.end):
        return 0
    return 1 if side(before) else -1


@given(grid_point, grid_point, grid_point, grid_point)
def test_line_crossing_agrees_with_exact_reference(a, b, p, q):
    assume(a != b)
    line = Line(a, b)
    assert line.crossing(p, q) == exact_crossing(line, p, q)


@given(grid_point, grid_point, unit_point, unit_point)
def test_crossing_back_is_the_opposite_direction(a, b, p, q):
    assume(a != b)
    line = Line(a, b)
    assert line.crossing(q, p) == -line.crossing(p, q)


@given(st.lists(unit_point, min_size=2, max_size=40))
def test_crossings_along_a_path_add_up_to_the_change_of_side(path):
    # A line longer than the frame: every change of side is a crossing.
    line = Line((0.5, -10.0), (0.5, 10.0))
    total = sum(line.crossing(p, q) for p, q in pairwise(path))
    assert total == int(line.side(path[0])) - int(line.side(path[-1]))


def test_the_documented_gate_direction():
    gate = parse_line({"from": [0.5, 0.0], "to": [0.5, 1.0]}, "lines.gate")
    assert gate.crossing((0.4, 0.5), (0.6, 0.5)) == 1  # left to right is "in"
    assert gate.crossing((0.6, 0.5), (0.4, 0.5)) == -1
    assert gate.crossing((0.4, 0.5), (0.45, 0.5)) == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"from": [0.5, 0.0], "to": [0.5, 0.0]}, "a line needs a length"),
        ({"from": [0.5, 0.0]}, "missing"),
        ({"from": [0.5, 0.0], "to": [0.5, 1.0], "dir": "in"}, "unknown keys"),
        ([[0.5, 0.0], [0.5, 1.0]], "a line is"),
    ],
)
def test_bad_lines_are_refused(value, message):
    with pytest.raises(ValueError, match=message):
        parse_line(value, "lines.gate")
