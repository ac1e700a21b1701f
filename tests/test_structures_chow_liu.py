"""Mutual information against a per-pair brute force; the Chow-Liu tree against networkx."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from pccc.structures.chow_liu import chow_liu_tree, discretize, mutual_information, tree_centers


def _mi_brute(a: np.ndarray, b: np.ndarray) -> float:
    total = 0.0
    for i in np.unique(a):
        for j in np.unique(b):
            pij = np.mean((a == i) & (b == j))
            if pij > 0:
                total += pij * np.log(pij / (np.mean(a == i) * np.mean(b == j)))
    return total


@pytest.mark.parametrize("card", [2, 3, 4])
def test_mutual_information_matches_brute_force(card):
    rng = np.random.default_rng(card)
    x = rng.integers(0, card, (400, 6))
    x[:, 1] = (x[:, 0] + (rng.random(400) < 0.2)) % card
    x[:, 5] = 0  # a constant column
    mi = mutual_information(x)
    expect = np.array([[_mi_brute(x[:, i], x[:, j]) if i != j else 0.0 for j in range(6)]
                       for i in range(6)])
    np.testing.assert_allclose(mi, expect, atol=1e-9)
    assert mi[0, 1] > 0.1 and np.all(mi[5] == 0)


def test_many_values_are_binned():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (300, 3))
    codes, k = discretize(x, 4)
    assert k == 4 and codes.max() <= 3
    np.testing.assert_array_equal(codes, x * 4 // 256)
    mi = mutual_information(x, num_bins=4)
    np.testing.assert_allclose(mi[0, 2], _mi_brute(codes[:, 0], codes[:, 2]), atol=1e-9)


def test_continuous_data_gets_quantile_bins():
    rng = np.random.default_rng(1)
    z = rng.normal(size=500)
    x = np.stack([z, z + 0.1 * rng.normal(size=500), rng.normal(size=500)], 1)
    mi = mutual_information(x)
    assert mi[0, 1] > 5 * mi[0, 2]


@pytest.mark.parametrize("seed", range(5))
def test_tree_is_a_maximum_spanning_tree(seed):
    rng = np.random.default_rng(seed)
    v = 12
    w = rng.random((v, v))
    w = (w + w.T) / 2
    np.fill_diagonal(w, 0)
    parent = chow_liu_tree(w)
    assert (parent == -1).sum() == 1
    ours = sum(w[c, p] for c, p in enumerate(parent) if p >= 0)
    g = nx.from_numpy_array(w)
    best = nx.maximum_spanning_tree(g)
    assert ours == pytest.approx(best.size(weight="weight"))
    # hung from a center of the tree
    tree = nx.Graph([(c, int(p)) for c, p in enumerate(parent) if p >= 0])
    assert int(np.flatnonzero(parent < 0)[0]) == min(nx.center(tree))


def test_tree_centers_of_a_path():
    assert tree_centers(5, [(0, 1), (1, 2), (2, 3), (3, 4)]) == [2]
    assert tree_centers(4, [(0, 1), (1, 2), (2, 3)]) == [1, 2]
    assert tree_centers(1, []) == [0]
