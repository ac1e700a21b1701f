"""Analyses (scopes, depths, counts) against independent recomputation; the builder's contract."""

from __future__ import annotations

import numpy as np
from hypothesis import given

from pccc.ir import CircuitBuilder, InputVector, ProductVector, counts, depths, scopes
from tests.strategies import circuits


def _scope_of(c, i):
    nd = c.nodes[i]
    if isinstance(nd, InputVector):
        return {nd.var}
    return set().union(*(_scope_of(c, ch) for ch in nd.children))


@given(circuits())
def test_scopes_and_depths_by_recursion(c):
    sc, dp = scopes(c), depths(c)
    for i, nd in enumerate(c.nodes):
        assert sc[i] == _scope_of(c, i)
        want = 0 if isinstance(nd, InputVector) else 1 + max(dp[ch] for ch in nd.children)
        assert dp[i] == want
    assert sc[c.root] == set(range(c.num_vars))


@given(circuits())
def test_counts_by_scalar_edges(c):
    k = counts(c)
    edges = {"sum": 0, "product": 0}
    for nd in c.nodes:
        for _ in range(nd.n):
            if isinstance(nd, ProductVector):
                edges["product"] += len(nd.children)
            elif not isinstance(nd, InputVector):
                edges["sum"] += sum(c.nodes[ch].n for ch in nd.children)
    assert (k.sum_edges, k.product_edges) == (edges["sum"], edges["product"])
    assert k.nodes == sum(nd.n for nd in c.nodes)
    assert k.params == sum(a.size for a in c.params.values())  # tied keys counted once


def test_counts_of_a_small_circuit():
    b = CircuitBuilder()
    x = b.input(0, "categorical", n=2, card=3)
    y = b.input(1, "bernoulli", n=2)
    p = b.product([x, y])
    q = b.product([x, y], edges=[[0, 1], [1, 0], [1, 1]])
    b.sum([p, q], n=1)
    k = counts(b.build())
    assert (k.vectors, k.nodes, k.input_nodes, k.sum_nodes, k.product_nodes) == (5, 10, 4, 1, 5)
    assert (k.sum_edges, k.product_edges, k.edges) == (5, 10, 15)
    assert (k.params, k.depth) == (6 + 2 + 5, 2)


def test_circuit_is_immutable():
    b = CircuitBuilder()
    b.input(0, "bernoulli", params=[0.5])
    c = b.build()
    try:
        c.params["p0"][0] = 1.0
    except ValueError:
        pass
    assert np.array_equal(c.params["p0"], [0.5])
