"""``discrete_logistic``: its log-probabilities against differences of logistic CDFs (written
out in :mod:`tests.dists_oracle`, and in mpmath at extreme scales), total mass 1, the
``.pcir`` text, the torch backend against the reference evaluator and brute-force
enumeration, and its EM step and gradients against float64 hand computations."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pccc
from pccc.backends.reference import log_likelihood
from pccc.ir import CircuitBuilder, ParseError, VerifyError, dists, parse, to_text, verify
from pccc.passes import compile_plan
from tests import dists_oracle as oracle

DL = dists.get("discrete_logistic")
torch.set_num_threads(1)


def _compile(c, dtype=torch.float64):
    return pccc.compile(c, backend="torch", dtype=dtype)


@settings(max_examples=40)
@given(card=st.integers(1, 7), low=st.floats(-5, 5), width=st.floats(0.1, 10),
       mu=st.floats(-8, 8), log_scale=st.floats(-4, 3))
def test_log_prob_is_the_cdf_difference_and_sums_to_one(card, low, width, mu, log_scale):
    attrs = {"card": card, "low": low, "high": low + width}
    p = np.array([[mu, log_scale]])
    lp = DL.log_prob(p, attrs, np.arange(card), 1)[:, 0]
    from pccc.ir import InputVector

    nd = InputVector(1, 0, "discrete_logistic", tuple(sorted(attrs.items())), "p")
    want = oracle.input_probs(nd, torch.tensor(p), np.arange(card))[:, 0].numpy()
    np.testing.assert_allclose(np.exp(lp), want, rtol=1e-9, atol=1e-13)
    assert abs(np.exp(lp).sum() - 1.0) < 1e-12
    assert DL.total_mass(p, attrs, 1)[0] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("mu,log_scale", [(0.13, -30.0), (0.5, -12.0), (1e6, 0.0),
                                          (-0.3, 25.0), (0.42, -700.0)])
def test_extreme_parameters_match_mpmath(mu, log_scale):
    """Bins far out in the tails, tiny and huge scales: finite where the mass is
    representable, as mpmath computes it at 60 digits."""
    mpmath.mp.dps = 60
    attrs = {"card": 8, "low": 0.0, "high": 1.0}
    lp = DL.log_prob(np.array([[mu, log_scale]]), attrs, np.arange(8), 1)[:, 0]
    s = mpmath.exp(mpmath.mpf(log_scale))

    def cdf(v):
        return 1 / (1 + mpmath.exp(-(mpmath.mpf(v) - mpmath.mpf(mu)) / s))

    for k in range(8):
        hi = 1 if k == 7 else cdf((k + 1) / 8)
        lo = 0 if k == 0 else cdf(k / 8)
        want = float(mpmath.log(hi - lo)) if hi > lo else -math.inf
        if math.isfinite(want) and want > -700:
            assert lp[k] == pytest.approx(want, rel=1e-9, abs=1e-12), k
        assert not np.isnan(lp[k])


def _circuit():
    b = CircuitBuilder(rng=3)
    a = b.input(0, "discrete_logistic", n=2, card=5, low=-1.0, high=1.0)
    c = b.input(1, "discrete_logistic", n=2, card=3, low=0.0, high=3.0, min_std=0.05)
    return b.build(b.sum([b.product([a, c])], n=1), num_vars=2)


def test_pcir_round_trip_and_plan_text():
    c = _circuit()
    text = to_text(c)
    assert "input discrete_logistic" in text and "min_std=0.05" in text
    assert parse(text) == c
    plan = compile_plan(c)
    assert parse(to_text(plan)) == plan


@pytest.mark.parametrize("attrs,what", [
    ("card=4 low=1.0 high=1.0", "below high"),
    ("card=4 low=0.0 high=1.0 min_std=0.0", "min_std"),
    ("card=0 low=0.0 high=1.0", "card"),
    ("card=4 low=0.0", "missing attribute 'high'"),
    ("card=4 low=0.0 high=1.0 scale=2", "unknown attribute"),
])
def test_malformed_attributes_are_refused(attrs, what):
    text = (f"pcir 1 L0\ncircuit num_vars=1 root=%1\n%0 = input discrete_logistic n=1 var=0 "
            f"{attrs} param=@p\n%1 = sum(%0) n=1 param=@w\nparam @p f64[1, 2] = [[0.0, 0.0]]\n"
            "param @w f64[1, 1] = [[1.0]]\n")
    with pytest.raises((ParseError, VerifyError), match=what):
        verify(parse(text))


def test_nonfinite_parameters_are_refused():
    c = _circuit()
    key = c.nodes[0].param
    bad = np.array(c.params[key]) * 1.0
    bad[0, 1] = np.inf
    with pytest.raises(VerifyError, match="finite"):
        verify(c.with_params({key: bad}))


@settings(max_examples=20)
@given(c=oracle.circuits(dists=("discrete_logistic",)))
def test_brute_force_all_assignments_sum_to_one_and_marginals(c):
    x = oracle.assignments(c)
    ll = log_likelihood(c, x)
    np.testing.assert_allclose(ll, oracle.log_likelihood(c, x), rtol=1e-9, atol=1e-12)
    assert np.exp(ll).sum() == pytest.approx(1.0, abs=1e-10)
    model = _compile(c)
    got = model(torch.as_tensor(x)).detach().numpy()
    np.testing.assert_allclose(got, ll, rtol=1e-10, atol=1e-12)
    # variable 0 missing: the sum over its values
    part = x[x[:, 0] == 0].copy()
    part[:, 0] = -1
    want = np.array([np.exp(ll[(x[:, 1:] == r[1:]).all(axis=1)]).sum() for r in part])
    np.testing.assert_allclose(np.exp(model(torch.as_tensor(part)).detach().numpy()), want,
                               rtol=1e-10)


@settings(max_examples=15)
@given(data=st.data())
def test_torch_float32_and_float64_match_the_reference(data):
    c = data.draw(oracle.circuits(dists=oracle.DISTS))
    x = data.draw(oracle.data_for(c, n_rows=6))
    ref = log_likelihood(c, x)
    np.testing.assert_allclose(_compile(c)(torch.as_tensor(x)).detach().numpy(), ref,
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(_compile(c, torch.float32)(torch.as_tensor(x)).detach().numpy(),
                               ref, rtol=1e-4, atol=1e-4)


def _expected_em(c, x, eta, alpha):
    """One EM step by hand in float64: flows from the oracle, PyJuice's moment matching of
    the bins' midpoints (missing values and pseudocount at the node's own moments)."""
    sums, node_flows = oracle.flows(c, x)
    out = {k: (1 - eta) * np.asarray(c.params[k]) + eta * (f + alpha / f.shape[1])
           / (f.sum(1, keepdims=True) + alpha) for k, f in sums.items()}
    stats: dict[str, np.ndarray] = {}
    for i, f in node_flows.items():
        nd = c.nodes[i]
        a = nd.attr_dict()
        p = np.asarray(c.params[nd.param])
        col = x[:, nd.var]
        miss = col == -1
        w = (a["high"] - a["low"]) / a["card"]
        mid = a["low"] + (np.where(miss, 0, col) + 0.5) * w
        fo, fm = np.where(miss[:, None], 0.0, f), np.where(miss[:, None], f, 0.0).sum(0)
        mu, m2 = oracle.logistic_moments(p)
        s = np.stack([f.sum(0), fo.T @ mid + fm * mu, fo.T @ (mid * mid) + fm * m2], 1)
        stats[nd.param] = stats.get(nd.param, 0) + s
    for key, s in stats.items():
        nd = next(n for n in c.nodes if getattr(n, "param", None) == key)
        floor = nd.attr_dict().get("min_std", 0.01)
        p = np.asarray(c.params[key])
        mu, m2 = oracle.logistic_moments(p)
        t1 = (s[:, 1] + alpha * mu) / (s[:, 0] + alpha)
        t2 = (s[:, 2] + alpha * m2) / (s[:, 0] + alpha)
        n1, n2 = (1 - eta) * mu + eta * t1, (1 - eta) * m2 + eta * t2
        std = np.maximum(np.sqrt(np.maximum(n2 - n1 * n1, 0)), floor)
        out[key] = np.stack([n1, np.log(std * math.sqrt(3) / math.pi)], 1)
    return out


@settings(max_examples=20)
@given(data=st.data())
def test_em_step_equals_a_float64_hand_computation(data):
    c = data.draw(oracle.circuits(dists=("discrete_logistic",)))
    x = data.draw(oracle.data_for(c, n_rows=7))
    eta, alpha = data.draw(st.floats(0.05, 1.0)), data.draw(st.floats(0.0, 2.0))
    model = _compile(c)
    g = torch.linspace(-1.0, 2.0, len(x), dtype=torch.float64)  # the upstream gradient
    (model(torch.as_tensor(x)) * g).sum().backward()              # must not matter
    pccc.optim.MiniBatchEM(model, step_size=eta, pseudocount=alpha).step()
    got = model.source_params()
    for key, want in _expected_em(c, x, eta, alpha).items():
        np.testing.assert_allclose(got[key], want, rtol=1e-9, atol=1e-11, err_msg=key)


def test_em_with_nothing_observed_keeps_the_parameters_and_floors_the_std():
    c = _circuit()
    model = _compile(c)
    model(torch.full((4, 2), -1)).sum().backward()
    pccc.optim.MiniBatchEM(model, step_size=0.7, pseudocount=0.3).step()
    for key in (c.nodes[0].param, c.nodes[1].param):  # (the sum weights move to uniform)
        np.testing.assert_allclose(model.source_params()[key], c.params[key], rtol=1e-12,
                                   atol=1e-12)
    # one observed value at every row: the variance goes to 0 and stops at min_std
    model = _compile(c)
    x = torch.tensor([[2, 1]] * 8)
    for _ in range(3):
        model(x).sum().backward()
        pccc.optim.MiniBatchEM(model, step_size=1.0, pseudocount=0.0).step()
    p = model.source_params()[c.nodes[1].param]
    np.testing.assert_allclose(np.exp(p[:, 1]) * math.pi / math.sqrt(3), 0.05, rtol=1e-9)
    np.testing.assert_allclose(p[:, 0], 1.5, rtol=1e-9)


@settings(max_examples=10)
@given(data=st.data())
def test_gradients_equal_central_differences_of_the_reference(data):
    c = data.draw(oracle.circuits(dists=("discrete_logistic",), max_vars=2))
    x = data.draw(oracle.data_for(c, n_rows=4))
    g = np.array([1.0, -0.5, 2.0, 0.25])
    model = _compile(c)
    (model(torch.as_tensor(x)) * torch.as_tensor(g)).sum().backward()
    grad = model.input_raw.grad.numpy()
    for key in {nd.param for nd in c.nodes if getattr(nd, "dist", "") == "discrete_logistic"}:
        p = np.asarray(c.params[key])
        num = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            h = 1e-6
            up, dn = p.copy(), p.copy()
            up[idx] += h
            dn[idx] -= h
            f = [float(g @ log_likelihood(c.with_params({key: q}), x)) for q in (up, dn)]
            num[idx] = (f[0] - f[1]) / (2 * h)
        # raw coordinates are (mean, log_scale) themselves, at the plan's offsets of the key
        got = grad[np.asarray(model.plan.param_map[key])]
        np.testing.assert_allclose(got, num, rtol=1e-5, atol=1e-7, err_msg=key)
