"""The verifier: accepts generated circuits, names the node and scopes of each violation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from pccc.ir import (
    Circuit,
    CircuitBuilder,
    InputVector,
    ProductVector,
    SumVector,
    VerifyError,
    is_decomposable,
    is_normalized,
    is_smooth,
    verify,
)
from tests.strategies import ALL_DISTS, circuits


@given(circuits(dists=ALL_DISTS))
def test_generated_circuits_verify(c):
    verify(c)
    assert is_smooth(c) and is_decomposable(c) and is_normalized(c)


@given(circuits(normalized=False))
def test_normalization_is_reported_not_required(c):
    verify(c)
    scaled = c.with_params({k: v * 2.0 for k, v in c.params.items()
                            if any(getattr(nd, "param", None) == k and nd.kind == "sum"
                                   for nd in c.nodes)})
    verify(scaled)
    assert not is_normalized(scaled)


def _base() -> CircuitBuilder:
    b = CircuitBuilder()
    b.input(0, "bernoulli", params=[0.3])          # %0
    b.input(1, "categorical", card=3)              # %1
    b.input(0, "bernoulli", params=[0.6])          # %2
    return b


def test_not_smooth_names_node_and_scopes():
    b = _base()
    b.sum([0, 1])                                  # %3: scopes {0} and {1}
    with pytest.raises(VerifyError, match=r"node %3: not smooth.*\{0\} and \{1\}") as e:
        verify(b.build())
    assert e.value.node == 3
    assert "%3 = sum(%0, %1)" in str(e.value)      # the printed line as context


def test_not_decomposable_names_node_and_scopes():
    b = _base()
    b.product([0, 2])                              # %3: both over variable 0
    b.sum([3])
    with pytest.raises(VerifyError, match=r"node %3: not decomposable.*\{0\} and \{0\}"):
        verify(b.build())
    assert not is_decomposable(b.build())


def _replace(c: Circuit, i: int, nd) -> Circuit:
    nodes = list(c.nodes)
    nodes[i] = nd
    return Circuit(tuple(nodes), dict(c.params), c.num_vars, c.root)


def _good() -> Circuit:
    b = _base()
    p = b.product([0, 1])
    b.sum([p])
    return b.build()


@pytest.mark.parametrize("make, pattern", [
    (lambda c: _replace(c, 3, ProductVector(1, (0, 7))), r"node %3: child %7 is not defined"),
    (lambda c: _replace(c, 3, ProductVector(1, (0, 4))), r"node %3: child %4 does not come"),
    (lambda c: _replace(c, 3, ProductVector(1, ())), r"node %3: product vector without"),
    (lambda c: _replace(c, 3, ProductVector(1, (0, 1), np.array([[0, 5]]))),
     r"node %3: edges column 1 points outside child %1"),
    (lambda c: _replace(c, 3, ProductVector(2, (0, 1), np.zeros((1, 2), np.int64))),
     r"node %3: edges of shape"),
    (lambda c: _replace(c, 0, InputVector(1, 5, "bernoulli", (), "p0")), r"node %0: variable 5"),
    (lambda c: _replace(c, 0, InputVector(1, 0, "poisson", (), "p0")),
     r"node %0: unknown distribution 'poisson'"),
    (lambda c: _replace(c, 4, SumVector(1, (3,), "nope")), r"node %4: parameter @nope is not"),
    (lambda c: c.with_params({"w4": np.array([[np.nan]])}), r"node %4: sum weights @w4 must"),
    (lambda c: c.with_params({"p0": np.array([1.5])}), r"node %0: parameter @p0: bernoulli"),
    (lambda c: Circuit(c.nodes, {**c.params, "p1": np.ones((2, 3))}, c.num_vars, c.root),
     r"node %1: parameter @p1 has shape \(2, 3\), expected \(1, 3\)"),
    (lambda c: Circuit(c.nodes, dict(c.params), c.num_vars, 9), r"root %9 is not defined"),
])
def test_broken_circuits_are_refused(make, pattern):
    verify(_good())
    with pytest.raises(VerifyError, match=pattern):
        verify(make(_good()))


def test_elementwise_product_size_mismatch():
    b = CircuitBuilder()
    a = b.input(0, "bernoulli", n=2)
    c = b.input(1, "bernoulli", n=3)
    b.product([a, c], n=2)
    with pytest.raises(VerifyError, match=r"node %2: element-wise product of 2 nodes has child "
                                          r"%1 of 3 nodes"):
        verify(b.build())
