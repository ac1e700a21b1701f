"""``pccc.query``'s edge cases in the reference and torch backends: no evidence, everything
observed, impossible evidence, tied keys, several roots, continuous variables, bad arguments,
the EM statistics left alone; and exact MPE on the nltcs PSDD with half its values missing."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import pccc
from pccc import query
from pccc.backends.reference import log_likelihood
from pccc.ir import CircuitBuilder
from pccc.query import QueryError
from tests.oracle import consistent
from tests.test_query import (
    BACKENDS,
    assert_logs_close,
    brute_conditional,
    fixed_circuit,
    model_of,
)
from tests.test_zoo import PSDDS, load_split, needs_data, scalar_log_likelihood

torch.set_num_threads(1)


def gated_circuit():
    """``X0`` is always 0 (an indicator), ``X1`` Bernoulli, ``X2`` categorical."""
    b = CircuitBuilder(rng=1)
    x0 = b.input(0, "indicator", card=2, values=(0,))
    x1 = b.input(1, "bernoulli", n=2)
    x2 = b.input(2, "categorical", n=2, card=3)
    return b.build(b.sum([b.product([x0, x1, x2], n=2)]), num_vars=3)


def tied_circuit():
    """Two sum vectors naming one weight key over different variables' inputs."""
    b = CircuitBuilder(rng=2)
    a = b.sum([b.input(0, "categorical", n=2, card=3)], n=2)
    c = b.sum([b.input(1, "categorical", n=2, card=3)], n=2, tie=b.nodes[a].param)
    return b.build(b.sum([b.product([a, c])]), num_vars=2)


def gaussian_circuit():
    """``X0`` discrete; ``X1`` a mixture of N(-2, 1) and N(3, 0.5), weights 0.3 and 0.7."""
    b = CircuitBuilder()
    x0 = b.input(0, "bernoulli", n=2, params=[0.2, 0.9])
    x1 = b.input(1, "gaussian", n=2, params=[[-2.0, 1.0], [3.0, 0.5]])
    return b.build(b.sum([b.product([x0, x1])], weights=[[0.3, 0.7]]), num_vars=2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_evidence_gives_the_marginals(backend):
    c = fixed_circuit()
    post = query.conditional(model_of(c, backend), np.full((1, 3), -1)).numpy()[0]
    for v, k in itertools.product(range(3), range(3)):
        row = np.full((1, 3), -1)
        row[0, v] = k
        want = log_likelihood(c, row)[0] if k < c.var_cards()[v] else -np.inf
        assert post[v, k] == pytest.approx(want, abs=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_everything_observed(backend):
    c = fixed_circuit()
    x = np.array([[0, 1, 2], [2, 0, 1]])
    model = model_of(c, backend)
    post = query.conditional(model, x).numpy()
    want = np.full(post.shape, -np.inf)
    for r, v in itertools.product(range(2), range(3)):
        want[r, v, x[r, v]] = 0.0
    np.testing.assert_array_equal(post, want)
    rows, ll = query.mpe(model, x)
    np.testing.assert_array_equal(rows.numpy(), x)
    np.testing.assert_allclose(ll.numpy(), log_likelihood(c, x), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(query.sample(model, 2, evidence=x, seed=0).numpy(), x)


@pytest.mark.parametrize("backend", BACKENDS)
def test_impossible_evidence(backend):
    c = gated_circuit()
    model = model_of(c, backend)
    x = np.array([[1, -1, -1], [0, -1, 2], [1, 0, 1]])
    post = query.conditional(model, x).numpy()
    assert not np.isnan(post).any()
    assert np.isneginf(post[[0, 2]]).all() and np.isfinite(post[1, 1, :2]).all()
    rows, ll = query.mpe(model, x)
    assert np.isneginf(ll.numpy()[[0, 2]]).all() and np.isfinite(ll.numpy()[1])
    np.testing.assert_array_equal(rows.numpy()[0], [1, -1, -1])
    with pytest.raises(QueryError, match="evidence row 1 has probability 0"):
        query.sample(model, 2, evidence=x[1:], seed=0)
    with pytest.raises(QueryError, match="the evidence has probability 0"):
        query.sample(model, 3, evidence=x[0], seed=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_tied_keys(backend):
    c = tied_circuit()
    model = model_of(c, backend)
    x = np.array([[-1, -1], [0, -1], [-1, 2]])
    post = query.conditional(model, x).numpy()
    assert_logs_close(post, brute_conditional(c, x, 3), 1e-9)
    _, ll = query.mpe(model, x)
    states = np.array(list(itertools.product(range(3), range(3))))
    lp = log_likelihood(c, states)
    best = np.array([lp[consistent(states, row)].max() for row in x])
    assert np.all(ll.numpy() <= best + 1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_several_roots_are_refused(backend):
    b = CircuitBuilder(rng=0)
    kids = [b.product([b.input(0, "bernoulli", n=2), b.input(1, "bernoulli", n=2)])]
    c = b.build(b.sum(kids, n=3))
    model = model_of(c, backend)
    x = np.full((1, 2), -1)
    for fn in (lambda: query.conditional(model, x), lambda: query.mpe(model, x),
               lambda: query.sample(model, 2)):
        with pytest.raises(QueryError, match="has 3 roots"):
            fn()


@pytest.mark.parametrize("backend", BACKENDS)
def test_continuous_variables(backend):
    c = gaussian_circuit()
    model = model_of(c, backend)
    with pytest.raises(QueryError, match="variable 1 is continuous"):
        query.conditional(model, np.array([[0.0, np.nan]]))
    rows, ll = query.mpe(model, np.array([[np.nan, np.nan], [0.0, np.nan]]))
    assert rows.dtype == torch.float64
    # 0.7 * 0.9 * N(3 | 3, 0.5) beats 0.3 * 0.8 * N(-2 | -2, 1); given X0 = 0 it does not
    np.testing.assert_array_equal(rows.numpy(), [[1.0, 3.0], [0.0, -2.0]])
    np.testing.assert_allclose(ll.numpy(), log_likelihood(c, rows.numpy()), atol=1e-12)
    draws = query.sample(model, 20000, seed=0).numpy()
    assert draws.dtype == np.float64 and set(np.unique(draws[:, 0])) <= {0.0, 1.0}
    mean, var = 0.3 * -2 + 0.7 * 3, 0.3 * 5 + 0.7 * 9.25 - 1.5**2
    assert abs(draws[:, 1].mean() - mean) < 5 * math.sqrt(var / 20000)
    given = query.sample(model, 20000, evidence=np.array([0.0, np.nan]), seed=1).numpy()
    assert (given[:, 0] == 0).all()
    # p(component 0 | X0 = 0) = 0.3 * 0.8 / (0.3 * 0.8 + 0.7 * 0.1)
    w = 0.24 / 0.31
    mean = w * -2 + (1 - w) * 3
    var = w * 5 + (1 - w) * 9.25 - mean**2
    assert abs(given[:, 1].mean() - mean) < 5 * math.sqrt(var / 20000)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_arguments(backend):
    model = model_of(fixed_circuit(), backend)
    with pytest.raises(QueryError, match=r"shape \[rows, 3\]"):
        query.conditional(model, np.zeros((2, 4), np.int64))
    with pytest.raises(QueryError, match="row 1, variable 1: value 2 is not in 0..1"):
        query.mpe(model, np.array([[0, 1, 0], [0, 2, 0]]))
    with pytest.raises(QueryError, match="evidence has 2 rows; expected 1 or"):
        query.sample(model, 5, evidence=np.zeros((2, 3), np.int64))
    with pytest.raises(QueryError, match="expected a Circuit or a compiled module"):
        query.sample("model.jpc", 5)


def test_queries_leave_the_em_statistics_alone():
    model = model_of(fixed_circuit(), "torch")
    x = np.array([[0, -1, 1], [-1, -1, -1]])
    query.conditional(model, x)
    query.mpe(model, x)
    query.sample(model, 10, seed=0)
    assert not model.sum_flows.any() and not model.input_counts.any()
    assert not model.input_stats.any()


@needs_data
@pytest.mark.parametrize("backend", BACKENDS)
def test_nltcs_psdd_mpe_with_half_the_values_missing(backend):
    c = pccc.load(PSDDS / "nltcs.psdd.gz")
    x = load_split("nltcs")[:12].copy()
    rng = np.random.default_rng(0)
    for row in x:
        row[rng.permutation(16)[:8]] = -1
    rows, ll = query.mpe(model_of(c, backend), x)
    fills = np.array(list(itertools.product([0, 1], repeat=8)))
    full = np.repeat(x, len(fills), axis=0)
    full[full == -1] = np.tile(fills, (len(x), 1)).reshape(-1)
    best = scalar_log_likelihood(c, full).reshape(len(x), -1).max(axis=1)
    np.testing.assert_allclose(ll.numpy(), best, rtol=0, atol=1e-9)
    np.testing.assert_allclose(scalar_log_likelihood(c, rows.numpy()), best, rtol=0, atol=1e-9)
