"""``pccc.query`` against brute-force enumeration (``tests/oracle.py``), in the float64
reference and torch backends: conditionals and MPE of random small circuits (at most 81 joint
states), exact MPE of deterministic circuits, and samples whose empirical distribution lies
within a total-variation bound of the enumerated one (fixed seeds). The edge cases (no
evidence, all observed, impossible evidence, tied keys, several roots, continuous variables)
and the nltcs PSDD are in ``test_query_cases.py``; Triton in ``test_query_triton.py``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pccc
from pccc import query
from pccc.backends.torch import queries as tq
from pccc.ir import Circuit, CircuitBuilder
from tests.oracle import consistent, joint_table, max_product_value, probability
from tests.strategies import circuits, data_for, deterministic_circuits

# tiny tensors: one intra-op thread avoids OpenMP contention on small, busy machines
torch.set_num_threads(1)

BACKENDS = ["reference", "torch"]


def model_of(c, backend: str):
    """The circuit itself (reference) or its float64 torch module."""
    if backend == "reference":
        return c
    return pccc.compile(c, backend="torch", dtype=torch.float64)


def brute_conditional(c, x: np.ndarray, num_values: int) -> np.ndarray:
    """``log p(X_v = k | e)`` by summing the joint table over the completions of ``e``."""
    states, p = joint_table(c)
    cards = c.var_cards()
    out = np.full((len(x), c.num_vars, num_values), -np.inf)
    for r, row in enumerate(x):
        ok = consistent(states, row)
        pe = p[ok].sum()
        if pe == 0:
            continue
        for v in range(c.num_vars):
            if row[v] != -1:
                out[r, v, row[v]] = 0.0
                continue
            for k in range(cards[v]):
                pk = p[ok & (states[:, v] == k)].sum()
                out[r, v, k] = math.log(pk / pe) if pk > 0 else -np.inf
    return out


def assert_logs_close(got: np.ndarray, want: np.ndarray, tol: float) -> None:
    """Equal ``-inf`` patterns, no NaN, finite values within ``tol``."""
    assert not np.isnan(got).any()
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=0, atol=tol)


def state_index(c, rows: np.ndarray) -> np.ndarray:
    """Each complete row's position in :func:`joint_table`'s order."""
    cards = [c.var_cards()[v] for v in range(c.num_vars)]
    return np.ravel_multi_index(tuple(np.asarray(rows, np.int64).T), cards)


def tv_bound(num_states: int, n: int) -> float:
    """A total-variation bound no correct sampler of ``n`` draws exceeds but with probability
    below 1e-9: ``E[TV] <= sum_s sqrt(p_s / n) / 2 <= sqrt(S / n) / 2``, and TV moves by at
    most ``1 / n`` per draw, so ``P(TV > E[TV] + t) <= exp(-2 n t^2)`` (McDiarmid)."""
    return 0.5 * math.sqrt(num_states / n) + math.sqrt(math.log(1e9) / (2 * n))


def check_samples(c, draws: np.ndarray, row: np.ndarray) -> None:
    """``draws`` keep ``row``'s observed values and fit ``p(x | row)`` within the bound."""
    states, p = joint_table(c)
    ok = consistent(states, row)
    target = np.where(ok, p, 0.0) / p[ok].sum()
    assert draws.min() >= 0 and consistent(draws, row).all()
    emp = np.bincount(state_index(c, draws), minlength=len(states)) / len(draws)
    tv = 0.5 * np.abs(emp - target).sum()
    assert tv <= tv_bound(int((target > 0).sum()), len(draws)), tv


@pytest.mark.parametrize("backend", BACKENDS)
@given(st.data())
def test_conditionals_match_brute_force(backend, data):
    c = data.draw(circuits(max_vars=4))
    x = data.draw(data_for(c, n_rows=4, missing_prob=0.5))
    got = query.conditional(model_of(c, backend), x)
    assert got.dtype == torch.float64
    want = brute_conditional(c, x, got.shape[2])
    assert got.shape == (len(x), c.num_vars, max(c.var_cards().values()))
    assert_logs_close(got.numpy(), want, 1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
@given(st.data())
def test_mpe_is_max_product_decoding(backend, data):
    """The completion keeps the evidence, its ``log p`` is exact, at least the max-product
    value and at most the true MPE's."""
    c = data.draw(circuits(max_vars=4))
    x = data.draw(data_for(c, n_rows=4, missing_prob=0.5))
    rows, ll = query.mpe(model_of(c, backend), x)
    rows, ll = rows.numpy(), ll.numpy()
    states, p = joint_table(c)
    for r, row in enumerate(x):
        obs = row != -1
        np.testing.assert_array_equal(rows[r, obs], row[obs])
        best = p[consistent(states, row)].max()
        if best == 0:
            assert ll[r] == -np.inf and (rows[r, ~obs] == -1).all()
            continue
        assert (rows[r] >= 0).all()
        assert ll[r] == pytest.approx(math.log(probability(c, rows[r])), abs=1e-9)
        assert ll[r] >= math.log(max_product_value(c, row)) - 1e-9
        assert ll[r] <= math.log(best) + 1e-9


@given(st.data())
def test_torch_max_product_forward_matches_oracle(data):
    c = data.draw(circuits(max_vars=4))
    x = data.draw(data_for(c, n_rows=4, missing_prob=0.5))
    model = model_of(c, "torch")
    _, _, node = tq.forward(model, torch.from_numpy(x), "max")
    want = [max_product_value(c, row) for row in x]
    with np.errstate(divide="ignore"):
        assert_logs_close(node[model.root_slot].numpy(), np.log(want), 1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
@given(st.data())
def test_mpe_is_exact_on_deterministic_circuits(backend, data):
    c = data.draw(deterministic_circuits(max_vars=4))
    x = data.draw(data_for(c, n_rows=4, missing_prob=0.6))
    rows, ll = query.mpe(model_of(c, backend), x)
    states, p = joint_table(c)
    with np.errstate(divide="ignore"):
        best = np.log([p[consistent(states, row)].max() for row in x])
    assert_logs_close(ll.numpy(), best, 1e-9)
    live = np.isfinite(best)
    with np.errstate(divide="ignore"):
        exact = np.log([probability(c, row) for row in rows.numpy()[live]])
    np.testing.assert_allclose(exact, best[live], rtol=0, atol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=8)
@given(st.data())
def test_samples_fit_the_distribution(backend, data):
    """Unconditional and conditional samples, 20,000 each from fixed seeds."""
    c = data.draw(circuits(max_vars=3))
    model = model_of(c, backend)
    free = np.full(c.num_vars, -1)
    check_samples(c, query.sample(model, 20000, seed=0).numpy(), free)
    states, p = joint_table(c)
    pick = states[data.draw(st.sampled_from(np.flatnonzero(p > 0).tolist()))]
    hide = np.array(data.draw(st.lists(st.booleans(), min_size=c.num_vars,
                                       max_size=c.num_vars)))
    row = np.where(hide, -1, pick)
    check_samples(c, query.sample(model, 20000, evidence=row, seed=1).numpy(), row)


@pytest.mark.parametrize("backend", BACKENDS)
def test_samples_repeat_with_their_seed(backend):
    model = model_of(fixed_circuit(), backend)
    a, b = (query.sample(model, 200, seed=7) for _ in range(2))
    assert torch.equal(a, b) and a.dtype == torch.int64
    assert not torch.equal(a, query.sample(model, 200, seed=8))


def fixed_circuit() -> Circuit:
    """Three variables (categorical, Bernoulli, binomial) under a mixture of 3 products."""
    b = CircuitBuilder(rng=3)
    x0 = b.input(0, "categorical", n=3, card=3)
    x1 = b.input(1, "bernoulli", n=3)
    x2 = b.input(2, "binomial", n=3, total=2)
    return b.build(b.sum([b.product([x0, x1, x2])]), num_vars=3)
