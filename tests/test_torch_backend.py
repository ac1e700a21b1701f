"""The torch backend against independent oracles: the float64 reference evaluator (values,
finite differences) and a naive torch evaluator with plain autograd (gradients, flows)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pccc.backends.reference import log_likelihood
from pccc.backends.torch import build
from pccc.passes import compile_plan
from tests import naive_torch
from tests.strategies import ALL_DISTS, circuits, data_for

# tiny tensors: one intra-op thread avoids OpenMP contention on small, busy machines
torch.set_num_threads(1)

F64 = torch.float64
#: PCCC_TEST_DEVICE=cuda runs these checks on a GPU (the oracles stay on the CPU)
DEVICE = os.environ.get("PCCC_TEST_DEVICE", "cpu")


def _model(c, dtype=F64):
    return build(compile_plan(c), dtype=dtype, device=DEVICE)


def _grads_by_key(model, key):
    plan = model.plan
    idx = torch.from_numpy(np.array(plan.param_map[key]))
    if key in plan.input_param_keys:
        return model.input_raw.grad.cpu()[idx].numpy()
    return model.sum_logits.grad.cpu()[idx].numpy()


@settings(max_examples=40)
@given(st.data())
def test_forward_equals_reference_f64(data):
    c = data.draw(circuits(max_vars=4, dists=ALL_DISTS, normalized=data.draw(st.booleans())))
    x = data.draw(data_for(c, n_rows=data.draw(st.integers(1, 7))))
    model = _model(c)
    got = model(torch.as_tensor(x)).detach().cpu().numpy()
    want = log_likelihood(c, x)
    assert not np.isnan(got).any()
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-10, atol=1e-10)


@settings(max_examples=30)
@given(st.data())
def test_forward_equals_reference_f32(data):
    c = data.draw(circuits(max_vars=4, dists=ALL_DISTS))
    x = data.draw(data_for(c, n_rows=5))
    got = _model(c, torch.float32)(torch.as_tensor(x)).detach().cpu().double().numpy()
    want = log_likelihood(c, x)
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype,rtol,atol", [(F64, 1e-9, 1e-10), (torch.float32, 1e-5, 1e-5)])
@settings(max_examples=30)
@given(data=st.data())
def test_gradients_equal_naive_autograd(data, dtype, rtol, atol):
    c = data.draw(circuits(max_vars=4, dists=ALL_DISTS, normalized=data.draw(st.booleans())))
    x = data.draw(data_for(c, n_rows=6))
    g = np.random.default_rng(0).normal(size=x.shape[0])
    model = _model(c, dtype)
    model.keep_elements = data.draw(st.booleans())  # False: recompute them in backward
    ll = model(torch.as_tensor(x))
    (ll * torch.as_tensor(g, device=ll.device)).sum().backward()
    fin = np.isfinite(log_likelihood(c, x))
    raw = naive_torch.raw_leaves(c)
    ref = naive_torch.evaluate(c, x[fin], raw)
    if fin.any():
        (ref * torch.as_tensor(g[fin])).sum().backward()
    assert torch.isfinite(model.sum_logits.grad).all()
    assert model.input_raw.grad is None or torch.isfinite(model.input_raw.grad).all()
    for key, leaf in raw.items():
        want = np.zeros(leaf.shape) if leaf.grad is None else leaf.grad.numpy()
        np.testing.assert_allclose(_grads_by_key(model, key), want, rtol=rtol, atol=atol,
                                   err_msg=key)


@settings(max_examples=15)
@given(st.data())
def test_gradients_match_finite_differences_of_reference(data):
    c = data.draw(circuits(max_vars=3, dists=("categorical", "bernoulli", "indicator")))
    x = data.draw(data_for(c, n_rows=4, missing_prob=0.2))
    if not np.isfinite(log_likelihood(c, x)).all():
        return
    model = _model(c)
    model(torch.as_tensor(x)).sum().backward()
    rng = np.random.default_rng(1)
    for key in [k for k in c.params if k in model.plan.param_map]:
        flat = np.asarray(model.plan.param_map[key]).reshape(-1)
        j = int(rng.integers(len(flat)))
        is_input = key in model.plan.input_param_keys
        grad = (model.input_raw if is_input else model.sum_logits).grad[int(flat[j])].item()
        fd = []
        for eps in (1e-6, -1e-6):
            with torch.no_grad():
                p = model.input_raw if is_input else model.sum_logits
                p[flat[j]] += eps
                circ = c.with_params(model.source_params())
                p[flat[j]] -= eps
            fd.append(log_likelihood(circ, x).sum())
        assert grad == pytest.approx((fd[0] - fd[1]) / 2e-6, rel=1e-5, abs=1e-6), key


def test_impossible_inputs_give_minus_inf_and_finite_gradients():
    from pccc.ir import CircuitBuilder

    b = CircuitBuilder()
    a = b.input(0, "indicator", n=2, card=2, values=[0, 1])
    z = b.input(1, "categorical", n=2, card=3, params=[[0.5, 0.5, 0.0], [0.2, 0.8, 0.0]])
    p = b.product([a, z])
    r = b.sum([p], weights=[[0.3, 0.7]])
    c = b.build(r)
    x = np.array([[0, 2], [1, 0], [-1, 2], [0, -1]])
    for dtype in (torch.float32, F64):
        model = _model(c, dtype)
        ll = model(torch.as_tensor(x))
        assert torch.isneginf(ll[0]) and torch.isneginf(ll[2])
        np.testing.assert_allclose(ll[[1, 3]].detach().cpu().double().numpy(),
                                   log_likelihood(c, x)[[1, 3]], rtol=1e-6)
        ll.sum().backward()
        assert torch.isfinite(model.sum_logits.grad).all()
        assert torch.isfinite(model.input_raw.grad).all()
        assert torch.isfinite(model.sum_flows).all()


def test_zero_weight_branch_never_gives_nan():
    from pccc.ir import CircuitBuilder

    b = CircuitBuilder()
    a = b.input(0, "categorical", n=2, card=2, params=[[1.0, 0.0], [0.0, 1.0]])
    z = b.input(1, "bernoulli", n=2, params=[0.0, 1.0])
    s = b.sum([b.product([a, z])], n=2, weights=[[0.0, 1.0], [0.0, 0.0]])
    c = b.build(b.sum([s], weights=[[1.0, 0.0]]))
    x = np.array([[1, 1], [0, 0], [-1, -1], [1, -1]])
    want = log_likelihood(c, x)
    for dtype in (torch.float32, F64):
        model = _model(c, dtype)
        ll = model(torch.as_tensor(x))
        np.testing.assert_array_equal(ll.detach().cpu().double().numpy(), want)
        ll.sum().backward()
        for p in (model.sum_logits, model.input_raw):
            assert not torch.isnan(p.grad).any()
        opt = torch.optim.Adam(model.parameters(), lr=0.1)
        opt.step()
        assert not torch.isnan(model(torch.as_tensor(x))).any()


def test_batch_size_changes_without_recompiling():
    c = _fixed_circuit()
    model = _model(c)
    for n in (1, 3, 17):
        x = np.random.default_rng(n).integers(-1, 3, size=(n, 3))
        np.testing.assert_allclose(model(torch.as_tensor(x)).detach().cpu().numpy(),
                                   log_likelihood(c, x), rtol=1e-10)


def test_external_input_logp_receives_gradients():
    c = _fixed_circuit()
    model = _model(c)
    x = np.array([[0, 1, 2], [2, -1, 0]])
    vals = [v.detach() for v in model.input_values(model.prepare(torch.as_tensor(x)))]
    ext = torch.cat(vals, dim=0).t().clone().requires_grad_(True)  # on the model's device
    ll = model(torch.as_tensor(x), input_logp=ext)
    np.testing.assert_allclose(ll.detach().cpu().numpy(), log_likelihood(c, x), rtol=1e-10)
    ll.sum().backward()
    # d ll / d input log-value = node flow; check one entry against a finite difference
    for col in range(ext.shape[1]):
        e = ext.detach().clone()
        e[0, col] += 1e-6
        up = model(torch.as_tensor(x), input_logp=e)[0].item()
        assert ext.grad[0, col].item() == pytest.approx((up - ll[0].item()) / 1e-6, abs=1e-5)


def _fixed_circuit():
    from pccc.ir import CircuitBuilder

    b = CircuitBuilder(rng=3)
    a = b.input(0, "categorical", n=3, card=3)
    d = b.input(1, "binomial", n=3, total=2)
    p = b.product([a, d])
    s = b.sum([p], n=2)
    e = b.input(2, "categorical", n=2, card=3)
    q = b.product([s, e])
    return b.build(b.sum([q]))


def test_grouped_categorical_rows_match_naive_autograd():
    """Runs of nodes over one variable read the data through a broadcast view."""
    from pccc.ir import CircuitBuilder

    b = CircuitBuilder(rng=4)
    ins = [b.input(v, "categorical", n=3, card=4) for v in range(4)]
    left = b.sum([b.product(ins[:2])], n=3)
    right = b.sum([b.product(ins[2:])], n=3)
    c = b.build(b.sum([b.product([left, right])]))
    x = np.random.default_rng(0).integers(0, 4, size=(9, 4))
    model = _model(c)
    assert any(g is not None for g in model._in_group.values())
    g = np.linspace(-1, 2, 9)
    (model(x) * torch.as_tensor(g, device=DEVICE)).sum().backward()
    raw = naive_torch.raw_leaves(c)
    (naive_torch.evaluate(c, x, raw) * torch.as_tensor(g)).sum().backward()
    for key, leaf in raw.items():
        np.testing.assert_allclose(_grads_by_key(model, key), leaf.grad.numpy(), rtol=1e-9,
                                   atol=1e-12, err_msg=key)


@settings(max_examples=10, deadline=None)
@given(st.data())
def test_state_dict_with_a_shift_per_parameter_loads(data):
    """``input_shift`` holds one log-normalizer per input node; a state dict saved when it held
    one per input parameter (each node's value at each of its parameters) still loads, and the
    module then gives the same log-likelihoods."""
    c = data.draw(circuits(max_vars=3, dists=ALL_DISTS, tie_prob=0.5))
    model = _model(c)
    sd = model.state_dict()
    shift = torch.tensor(data.draw(st.lists(st.floats(-2, 2), min_size=len(sd["input_shift"]),
                                            max_size=len(sd["input_shift"]))), dtype=F64)
    old = torch.zeros_like(sd["input_raw"])
    assume(len(old) != len(shift))  # (else the two layouts cannot be told apart)
    for i, ly in enumerate(model.plan.input_layers):  # per parameter, as earlier versions
        n0 = model._in_node0[i]
        if not ly.param_size:
            shift[n0: n0 + ly.n] = 0.0
            continue
        pidx = getattr(model, f"in_pidx{i}")
        old[pidx] = shift[n0: n0 + ly.n, None].expand(pidx.shape)
        shift[n0: n0 + ly.n] = old[pidx[:, 0]]  # tied rows: the last write wins
    want = dict(sd, input_shift=shift)
    sd["input_shift"] = old
    fresh = _model(c)
    fresh.load_state_dict(sd)
    np.testing.assert_array_equal(fresh.input_shift.numpy(), shift.numpy())
    ref = _model(c)
    ref.load_state_dict(want)
    x = data.draw(data_for(c, n_rows=4))
    np.testing.assert_allclose(fresh(torch.as_tensor(x)).detach().numpy(),
                               ref(torch.as_tensor(x)).detach().numpy())
