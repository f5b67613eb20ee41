"""The matching under the tracker, against brute force over every assignment."""

from __future__ import annotations

from itertools import combinations, permutations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectflow.core.assignment import max_weight_matching, min_cost_assignment


@st.composite
def cost_matrices(draw: st.DrawFn) -> list[list[float]]:
    n = draw(st.integers(1, 5))
    m = draw(st.integers(n, 6))
    cell = st.integers(-20, 20).map(float) | st.floats(-5, 5, allow_nan=False)
    return [[draw(cell) for _ in range(m)] for _ in range(n)]


@given(cost_matrices())
def test_min_cost_assignment_is_optimal_and_one_to_one(cost):
    n, m = len(cost), len(cost[0])
    got = min_cost_assignment(cost)
    assert sorted(set(got)) == sorted(got) and all(0 <= j < m for j in got)
    best = min(sum(cost[i][p[i]] for i in range(n)) for p in permutations(range(m), n))
    assert sum(cost[i][got[i]] for i in range(n)) == pytest.approx(best, abs=1e-9)


def test_more_rows_than_columns_is_refused():
    with pytest.raises(ValueError, match="at least as many columns"):
        min_cost_assignment([[1.0], [2.0]])


@st.composite
def sparse_graphs(draw: st.DrawFn):
    rows, cols = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    pairs = draw(
        st.lists(st.tuples(st.integers(0, rows - 1), st.integers(0, cols - 1)), unique=True)
    )
    weights = st.integers(1, 10).map(lambda k: k / 10) | st.floats(0.01, 1.0)
    return rows, cols, [(r, c, draw(weights)) for r, c in pairs]


def brute_force_best(edges) -> float:
    best = 0.0
    for k in range(1, len(edges) + 1):
        for chosen in combinations(edges, k):
            rows = {r for r, _, _ in chosen}
            cols = {c for _, c, _ in chosen}
            if len(rows) == len(cols) == k:
                best = max(best, sum(w for _, _, w in chosen))
    return best


@given(sparse_graphs())
def test_max_weight_matching_matches_brute_force(graph):
    rows, cols, edges = graph
    pairs = max_weight_matching(rows, cols, edges)
    weight = {(r, c): w for r, c, w in edges}
    assert all(p in weight for p in pairs)  # only allowed pairs
    assert len({r for r, _ in pairs}) == len(pairs) == len({c for _, c in pairs})
    assert sum(weight[p] for p in pairs) == pytest.approx(brute_force_best(edges), abs=1e-9)
    assert pairs == sorted(pairs)
    assert max_weight_matching(rows, cols, edges) == pairs  # deterministic


def test_a_strong_pair_beats_two_weak_ones_only_when_it_weighs_more():
    # Row 0 overlaps col 0 strongly and col 1 weakly; row 1 overlaps only col 0.
    assert max_weight_matching(2, 2, [(0, 0, 0.9), (0, 1, 0.3), (1, 0, 0.35)]) == [(0, 0)]
    assert max_weight_matching(2, 2, [(0, 0, 0.6), (0, 1, 0.3), (1, 0, 0.5)]) == [(0, 1), (1, 0)]
