"""The reference evaluator against the scalar oracle and brute-force enumeration."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from pccc.backends.reference import log_likelihood
from tests import oracle
from tests.strategies import ALL_DISTS, circuits, data_for


@given(circuits())
def test_normalized_circuit_sums_to_one(c):
    xs = oracle.enumerate_assignments(c)
    total = np.exp(log_likelihood(c, xs)).sum()
    assert abs(total - 1.0) < 1e-9


@given(circuits(normalized=False), st.data())
def test_matches_scalar_oracle_on_complete_data(c, data):
    x = data.draw(data_for(c, n_rows=4, missing_prob=0.0))
    ll = log_likelihood(c, x)
    want = np.array([oracle.probability(c, row) for row in x])
    np.testing.assert_allclose(np.exp(ll), want, rtol=1e-9, atol=1e-300)


@given(circuits(normalized=False, max_vars=3), st.data())
def test_marginal_is_sum_over_completions(c, data):
    x = data.draw(data_for(c, n_rows=4, missing_prob=0.5))
    ll = log_likelihood(c, x)
    want = np.array([oracle.brute_force_marginal(c, row) for row in x])
    np.testing.assert_allclose(np.exp(ll), want, rtol=1e-9, atol=1e-300)


@given(circuits(dists=ALL_DISTS, max_vars=3), st.data())
def test_continuous_inputs_match_oracle(c, data):
    x = data.draw(data_for(c, n_rows=3, missing_prob=0.3))
    ll = log_likelihood(c, x)
    want = np.array([oracle.probability(c, row) for row in x])
    np.testing.assert_allclose(np.exp(ll), want, rtol=1e-9, atol=1e-300)


@given(circuits(max_vars=3))
def test_all_missing_gives_log_one(c):
    x = np.full((2, c.num_vars), -1)
    np.testing.assert_allclose(log_likelihood(c, x), 0.0, atol=1e-12)
