"""The verifier's array checks against its per-node checks (the definition), on random circuits
and on random breakages of them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pccc.ir import Circuit, InputVector, ProductVector, SumVector, VerifyError, scopes
from pccc.ir.dists import finite_nonnegative
from pccc.ir.verify import verify_nodes
from pccc.ir.verify_arrays import passes_checks, scope_properties
from tests.strategies import ALL_DISTS, circuits

BREAKS = ("none", "sum-child", "product-child", "value", "edge", "var", "shape", "size")


def _passes_nodes(c: Circuit) -> bool:
    try:
        verify_nodes(c)
    except VerifyError:
        return False
    return True


def _pick(draw: Any, c: Circuit, cls: type) -> int | None:
    ids = [i for i, nd in enumerate(c.nodes) if isinstance(nd, cls)]
    return draw(st.sampled_from(ids)) if ids else None


def _other_child(draw: Any, c: Circuit, i: int) -> tuple[Circuit, int]:
    nd = c.nodes[i]
    j = draw(st.integers(0, len(nd.children) - 1))
    kids = list(nd.children)
    kids[j] = draw(st.integers(0, i - 1))
    return _replace(c, i, type(nd)(**{**_fields(nd), "children": tuple(kids)})), j


def _fields(nd: Any) -> dict[str, Any]:
    return {name: getattr(nd, name) for name in nd.__dataclass_fields__}


def _replace(c: Circuit, i: int, nd: Any, params: dict[str, Any] | None = None) -> Circuit:
    nodes = list(c.nodes)
    nodes[i] = nd
    return Circuit(tuple(nodes), params if params is not None else dict(c.params), c.num_vars,
                   c.root)


@st.composite
def broken(draw: Any) -> Circuit:
    """A random circuit, sometimes with one random change (which may or may not break it)."""
    c = draw(circuits(dists=ALL_DISTS, max_vars=5))
    how = draw(st.sampled_from(BREAKS))
    if how in ("sum-child", "product-child"):
        i = _pick(draw, c, SumVector if how == "sum-child" else ProductVector)
        return c if i is None else _other_child(draw, c, i)[0]
    if how == "value" and c.params:
        key = draw(st.sampled_from(sorted(c.params)))
        arr = c.params[key].copy()
        flat = arr.reshape(-1)
        flat[draw(st.integers(0, flat.size - 1))] = draw(
            st.sampled_from([-1.0, -1e-300, np.nan, np.inf, -np.inf, 0.0, 1.0, 2.0]))
        return c.with_params({key: arr})
    if how == "edge":
        ids = [i for i, nd in enumerate(c.nodes)
               if isinstance(nd, ProductVector) and nd.edges is not None]
        if ids:
            i = draw(st.sampled_from(ids))
            nd = c.nodes[i]
            e = nd.edges.copy()
            r, k = draw(st.integers(0, e.shape[0] - 1)), draw(st.integers(0, e.shape[1] - 1))
            e[r, k] = draw(st.sampled_from([-1, 0, c.nodes[nd.children[k]].n, 1]))
            return _replace(c, i, ProductVector(nd.n, nd.children, e))
    if how == "var":
        i = _pick(draw, c, InputVector)
        nd = c.nodes[i]
        var = draw(st.sampled_from([-1, 0, c.num_vars - 1, c.num_vars]))
        return _replace(c, i, InputVector(nd.n, var, nd.dist, nd.attrs, nd.param))
    if how == "shape" and c.params:
        key = draw(st.sampled_from(sorted(c.params)))
        arr = c.params[key]
        grown = np.concatenate([arr, arr[..., :1]], axis=-1) if arr.ndim else arr
        return Circuit(c.nodes, {**c.params, key: grown}, c.num_vars, c.root)
    if how == "size":
        i = draw(st.integers(0, len(c.nodes) - 1))
        nd = c.nodes[i]
        n = draw(st.sampled_from([0, 1, nd.n + 1]))
        return _replace(c, i, type(nd)(**{**_fields(nd), "n": n}))
    return c


@given(broken())
def test_array_checks_agree_with_the_node_checks(c):
    assert passes_checks(c) == _passes_nodes(c)


@given(broken())
def test_scope_properties_agree_with_scope_sets(c):
    flags = scope_properties(c)
    if flags is None:
        return
    sc = scopes(c)
    smooth = all(len({sc[ch] for ch in nd.children}) <= 1
                 for nd in c.nodes if isinstance(nd, SumVector))
    decomposable = all(sum(len(sc[ch]) for ch in nd.children) == len(frozenset().union(
        *(sc[ch] for ch in nd.children))) for nd in c.nodes if isinstance(nd, ProductVector))
    assert flags == (smooth, decomposable)


def test_minus_zero_weight_is_legal():
    c = Circuit((InputVector(1, 0, "bernoulli", (), "p"), SumVector(1, (0, 0), "w")),
                {"p": np.array([0.5]), "w": np.array([[-0.0, 1.0]])})
    assert passes_checks(c) and _passes_nodes(c)   # past the bit test, by float comparisons


@pytest.mark.parametrize("values, ok", [
    ([0.0, 1.0, 1e300, 5e-324], True), ([-0.0, 2.0], True), ([], True), ([np.inf], False),
    ([-np.inf], False), ([np.nan], False), ([-1e-300], False), ([-np.nan], False),
])
def test_finite_nonnegative(values, ok):
    assert finite_nonnegative(np.array(values, dtype=np.float64)) is ok
