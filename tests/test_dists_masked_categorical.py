"""``masked_categorical``: exact zeros at masked-out values, masks of one row or one row per
node, the ``.pcir`` text, the torch backend against the reference evaluator and brute-force
enumeration, its EM step against a float64 hand computation, and gradients equal to those
of the same table as a plain categorical."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import pccc
from pccc.backends.reference import log_likelihood
from pccc.ir import CircuitBuilder, InputVector, ParseError, VerifyError, parse, to_text, verify
from pccc.passes import compile_plan
from tests import dists_oracle as oracle

torch.set_num_threads(1)


def _compile(c, dtype=torch.float64):
    return pccc.compile(c, backend="torch", dtype=dtype)


def _circuit(per_node: bool = True):
    b = CircuitBuilder(rng=5)
    mask = (1, 1, 0, 1, 0, 1, 1, 0) if per_node else (0, 1, 1, 1)
    a = b.input(0, "masked_categorical", n=2, card=4, mask=mask)
    c = b.input(1, "masked_categorical", n=2, card=3, mask=(1, 0, 1))
    return b.build(b.sum([b.product([a, c])], n=1), num_vars=2)


def test_masked_values_have_probability_zero_and_defaults_respect_the_mask():
    c = _circuit()
    p = np.asarray(c.params[c.nodes[0].param])
    np.testing.assert_array_equal(p == 0, [[0, 0, 1, 0], [1, 0, 0, 1]])
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    # var 1 = 1 is masked out at both its nodes; var 0 = 2 at one of its two
    ll = log_likelihood(c, np.array([[2, 0], [0, 1], [1, 2]]))
    assert ll[1] == -np.inf and np.all(np.isfinite(ll[[0, 2]]))
    got = _compile(c)(torch.tensor([[2, 0], [0, 1], [1, 2]])).detach().numpy()
    np.testing.assert_allclose(got, ll, rtol=1e-12)


def test_pcir_round_trip_and_plan_text():
    for per_node in (True, False):
        c = _circuit(per_node)
        text = to_text(c)
        assert "mask=[" in text
        assert parse(text) == c
        plan = compile_plan(c)
        assert parse(to_text(plan)) == plan


@pytest.mark.parametrize("attrs,what", [
    ("card=3 mask=[1, 0]", "entries"),
    ("card=3 mask=[1, 2, 0]", "0 or 1"),
    ("card=3 mask=[0, 0, 0]", "allows no value"),
    ("card=3", "missing attribute 'mask'"),
])
def test_malformed_masks_are_refused(attrs, what):
    text = (f"pcir 1 L0\ncircuit num_vars=1 root=%1\n%0 = input masked_categorical n=1 var=0 "
            f"{attrs} param=@p\n%1 = sum(%0) n=1 param=@w\n"
            "param @p f64[1, 3] = [[0.5, 0.0, 0.5]]\nparam @w f64[1, 1] = [[1.0]]\n")
    with pytest.raises((ParseError, VerifyError), match=what):
        verify(parse(text))


def test_mass_at_a_masked_value_is_refused():
    c = _circuit(per_node=False)
    key = c.nodes[0].param
    with pytest.raises(VerifyError, match="0 where the mask is 0"):
        verify(c.with_params({key: np.full((2, 4), 0.25)}))


@settings(max_examples=20)
@given(c=oracle.circuits(dists=("masked_categorical",)))
def test_brute_force_all_assignments_sum_to_one_and_marginals(c):
    x = oracle.assignments(c)
    ll = log_likelihood(c, x)
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(ll, oracle.log_likelihood(c, x), rtol=1e-9, atol=1e-12)
    assert np.exp(ll).sum() == pytest.approx(1.0, abs=1e-10)
    model = _compile(c)
    np.testing.assert_allclose(model(torch.as_tensor(x)).detach().numpy(), ll, rtol=1e-10,
                               atol=1e-12)
    part = x[x[:, 0] == 0].copy()
    part[:, 0] = -1
    want = np.array([np.exp(ll[(x[:, 1:] == r[1:]).all(axis=1)]).sum() for r in part])
    np.testing.assert_allclose(np.exp(model(torch.as_tensor(part)).detach().numpy()), want,
                               rtol=1e-10, atol=1e-300)


@settings(max_examples=15)
@given(data=st.data())
def test_torch_float32_matches_the_reference(data):
    c = data.draw(oracle.circuits(dists=("masked_categorical", "categorical")))
    x = data.draw(oracle.data_for(c, n_rows=6))
    ref = log_likelihood(c, x)
    got = _compile(c, torch.float32)(torch.as_tensor(x)).detach().numpy()
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-4, atol=1e-4)


def _expected_em(c, x, eta, alpha):
    """One EM step by hand in float64 over the rows of positive probability: counts of the
    observed values plus the missing values' posterior, the pseudocount on the allowed
    values only."""
    x = x[np.isfinite(log_likelihood(c, x))]
    sums, node_flows = oracle.flows(c, x)
    out = {k: (1 - eta) * np.asarray(c.params[k]) + eta * (f + alpha / f.shape[1])
           / (f.sum(1, keepdims=True) + alpha) for k, f in sums.items()}
    stats: dict[str, np.ndarray] = {}
    allowed: dict[str, np.ndarray] = {}
    for i, f in node_flows.items():
        nd = c.nodes[i]
        assert isinstance(nd, InputVector)
        a = nd.attr_dict()
        p = np.asarray(c.params[nd.param])
        rows = np.asarray(a["mask"]).reshape(-1, a["card"])
        allowed[nd.param] = rows[np.arange(nd.n) % len(rows)] == 1
        col = x[:, nd.var]
        miss = col == -1
        onehot = np.eye(a["card"])[np.where(miss, 0, col)]
        fo, fm = np.where(miss[:, None], 0.0, f), np.where(miss[:, None], f, 0.0).sum(0)
        stats[nd.param] = stats.get(nd.param, 0) + fo.T @ onehot + fm[:, None] * p
    for key, s in stats.items():
        ok = allowed[key]
        p = np.asarray(c.params[key])
        target = (s + alpha / ok.sum(1, keepdims=True)) / (s.sum(1, keepdims=True) + alpha)
        out[key] = np.where(ok, (1 - eta) * p + eta * target, 0.0)
    return out


@settings(max_examples=20)
@given(data=st.data())
def test_em_step_equals_a_float64_hand_computation(data):
    c = data.draw(oracle.circuits(dists=("masked_categorical",)))
    x = data.draw(oracle.data_for(c, n_rows=7))
    eta, alpha = data.draw(st.floats(0.05, 1.0)), data.draw(st.floats(0.01, 2.0))
    model = _compile(c)
    model(torch.as_tensor(x)).sum().backward()
    pccc.optim.MiniBatchEM(model, step_size=eta, pseudocount=alpha).step()
    got = model.source_params()
    for key, want in _expected_em(c, x, eta, alpha).items():
        np.testing.assert_allclose(got[key], want, rtol=1e-9, atol=1e-12, err_msg=key)
        if key in {getattr(n, "param", None) for n in c.nodes if isinstance(n, InputVector)}:
            assert np.all(got[key][want == 0] == 0)  # masked values stay exactly 0


def _as_categorical(c):
    """The same circuit with every masked categorical a plain categorical of the same table
    (a value of probability 0 behaves alike; only EM's pseudocount tells them apart)."""
    nodes = [InputVector(nd.n, nd.var, "categorical", (("card", nd.attr_dict()["card"]),),
                         nd.param) if getattr(nd, "dist", "") == "masked_categorical" else nd
             for nd in c.nodes]
    import dataclasses

    return dataclasses.replace(c, nodes=tuple(nodes))


@settings(max_examples=10)
@given(data=st.data())
def test_gradients_equal_those_of_the_plain_categorical(data):
    c = data.draw(oracle.circuits(dists=("masked_categorical",)))
    x = data.draw(oracle.data_for(c, n_rows=5))
    x = x[np.isfinite(log_likelihood(c, x))]
    assume(len(x) > 0)
    g = torch.linspace(0.5, 2.0, len(x), dtype=torch.float64)
    grads = []
    for circ in (c, _as_categorical(c)):
        model = _compile(circ)
        (model(torch.as_tensor(x)) * g).sum().backward()
        grad = model.input_raw.grad.numpy()
        grads.append({k: grad[np.asarray(model.plan.param_map[k])] for k in circ.params
                      if k.startswith("p")})
    for key, want in grads[1].items():
        np.testing.assert_allclose(grads[0][key], want, rtol=1e-10, atol=1e-12, err_msg=key)


def test_gradient_steps_leave_masked_values_at_zero():
    c = _circuit()
    model = _compile(c)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    x = torch.tensor([[0, 0], [3, 2], [1, -1]])
    for _ in range(5):
        opt.zero_grad()
        (-model(x).sum()).backward()
        opt.step()
    p = model.source_params()[c.nodes[0].param]
    np.testing.assert_array_equal(p == 0, [[0, 0, 1, 0], [1, 0, 0, 1]])
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    verify(model.to_circuit())
