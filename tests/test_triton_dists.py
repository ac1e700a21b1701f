"""The image input distributions on the Triton backend under ``TRITON_INTERPRET=1``:
``masked_categorical`` and ``discrete_logistic`` forward log-likelihoods against the float64
reference evaluator and the torch backend, gradients and one EM step against the torch
backend's, missing values, masked-out values kept at 0 through EM and gradient steps, and the
discrete logistic's stable tails (log-probabilities and gradients)."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import pccc  # noqa: E402
from pccc.backends.reference import log_likelihood  # noqa: E402
from pccc.backends.reference.plan_eval import plan_log_likelihood  # noqa: E402
from pccc.ir import CircuitBuilder, dists  # noqa: E402
from pccc.optim import MiniBatchEM  # noqa: E402
from tests import dists_oracle as oracle  # noqa: E402

pytest.importorskip("triton")

pytestmark = [pytest.mark.interpret, pytest.mark.usefixtures("triton_cache")]
DEV = torch.device("cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda")
TOL = 2e-4


def _pair(c):
    tri = pccc.compile(c, backend="triton", device=DEV, precision="fp32")
    ref = pccc.compile(c, backend="torch", device="cpu", dtype=torch.float64)
    return tri, ref


def _close(a, b, tol=TOL):
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, np.float64),
                               rtol=tol, atol=tol)


def _forward_and_em(c, x, grads: bool):
    """Triton forward = reference = torch; gradients (when ``grads``) and one EM step = the
    torch backend's."""
    tri, ref = _pair(c)
    xt = torch.as_tensor(x)
    ll = tri(xt.to(DEV))
    _close(ll.detach().cpu(), log_likelihood(c, x))
    _close(ll.detach().cpu(), ref(xt).detach())
    tri.param_grads = grads
    g = torch.linspace(0.5, 1.5, len(x))  # (EM flows: root flow 1 per example whatever g)
    (-(ll * g.to(ll.device)).sum()).backward()
    (-(ref(xt) * g.double()).sum()).backward()
    if grads:
        for a, b in ((tri.sum_logits, ref.sum_logits), (tri.input_raw, ref.input_raw)):
            ga = a.grad if a.grad is not None else torch.zeros_like(a)
            gb = b.grad if b.grad is not None else torch.zeros_like(b)
            _close(ga.cpu().double(), gb, 5 * TOL)
    MiniBatchEM(tri, step_size=0.5, pseudocount=0.1).step()
    MiniBatchEM(ref, step_size=0.5, pseudocount=0.1).step()
    _close(torch.exp(tri.log_weights()).detach().cpu(), torch.exp(ref.log_weights()).detach(),
           5 * TOL)
    got, want = tri.current_plan().input_params, ref.current_plan().input_params
    _close(got, want, 5 * TOL)
    return tri, ref


@settings(max_examples=6, deadline=None)
@given(st.data())
def test_masked_categorical_matches_reference_and_torch(data):
    c = data.draw(oracle.circuits(dists=("masked_categorical", "categorical"), max_vars=3))
    x = data.draw(oracle.data_for(c, n_rows=6, missing_prob=0.25))
    tri, _ = _forward_and_em(c, x, grads=True)
    # masked-out values stay exactly 0 through EM, and the forward pass after it agrees
    plan = tri.current_plan()
    for ly in plan.input_layers:
        if ly.dist != "masked_categorical":
            continue
        rows = np.asarray(dict(ly.attrs)["mask"]).reshape(-1, ly.param_size)
        for j, p0 in enumerate(ly.param_start):
            row = plan.input_params[p0: p0 + ly.param_size]
            assert np.all(row[rows[j % len(rows)] == 0] == 0.0)
    _close(tri(torch.as_tensor(x).to(DEV)).detach().cpu(), plan_log_likelihood(plan, x))


@settings(max_examples=6, deadline=None)
@given(st.data())
def test_discrete_logistic_matches_reference_and_torch(data):
    c = data.draw(oracle.circuits(dists=("discrete_logistic", "categorical"), max_vars=3,
                                  max_card=6))
    x = data.draw(oracle.data_for(c, n_rows=6, missing_prob=0.25))
    _forward_and_em(c, x, grads=True)


def _logistic(mean, log_scale, card=8, low=-1.0, high=3.0):
    b = CircuitBuilder(rng=0)
    p = np.array([[m, s] for m, s in zip(mean, log_scale)])
    a = b.input(0, "discrete_logistic", n=len(p), params=p, card=card, low=low, high=high)
    return b.build(b.sum([a], n=1), num_vars=1)


def test_discrete_logistic_tails_and_narrow_bins_are_finite_and_exact():
    """Means far outside the interval and scales far below and above the bin width: every
    value finite where its probability is representable, equal to the reference."""
    c = _logistic([-40.0, 50.0, 1.03, 1.0, 0.5], [-1.0, 0.0, -9.0, 3.0, -4.0])
    x = np.arange(8)[:, None]
    tri = pccc.compile(c, backend="triton", device=DEV, precision="fp32")
    ll = tri(torch.as_tensor(x).to(DEV)).detach().cpu().numpy()
    want = log_likelihood(c, x)
    assert np.all(np.isfinite(ll))
    np.testing.assert_allclose(ll, want, rtol=1e-5, atol=1e-5)


def test_discrete_logistic_per_node_log_probs_match_the_distribution():
    """Each node alone (a one-node circuit) at every value against ``log_prob`` in float64:
    the Triton kernel's stable terms (log sigmoid of both edges, log1mexp of the width)."""
    dl = dists.get("discrete_logistic")
    attrs = {"card": 8, "low": -1.0, "high": 3.0}
    x = np.arange(8)[:, None]
    for mean, ls in ((-40.0, -1.0), (50.0, 0.0), (1.03, -9.0), (1.0, 3.0), (0.5, -4.0),
                     (0.75, -2.0)):
        c = _logistic([mean], [ls])
        tri = pccc.compile(c, backend="triton", device=DEV, precision="fp32")
        ll = tri(torch.as_tensor(x).to(DEV)).detach().cpu().numpy()
        want = dl.log_prob(np.array([[mean, ls]]), attrs, x[:, 0], 1)[:, 0]
        fin = np.isfinite(want)
        np.testing.assert_allclose(ll[fin], want[fin], rtol=1e-5, atol=2e-5)
        assert np.all(ll[~fin] == -np.inf)


def test_discrete_logistic_gradients_in_the_tails_match_torch():
    """Per-example gradients (the ``logistic_grad`` kernel) with means far outside the
    interval, tiny and huge scales, tied rows, missing values and unequal example weights:
    finite, and equal to autograd's through the torch backend."""
    b = CircuitBuilder(rng=0)
    p = np.array([[-40.0, -1.0], [50.0, 0.0], [1.03, -9.0], [1.0, 3.0], [0.52, -4.0]])
    attrs = {"card": 8, "low": -1.0, "high": 3.0}
    a = b.input(0, "discrete_logistic", n=5, params=p, **attrs)
    t = b.input(0, "discrete_logistic", n=5, tie=b.nodes[a].param, **attrs)
    c = b.build(b.sum([b.sum([a, t], n=5)], n=1), num_vars=1)
    x = np.array([[0], [1], [3], [4], [7], [-1], [2], [6]])
    tri, ref = _pair(c)
    g = torch.linspace(0.25, 2.0, len(x))
    (tri(torch.as_tensor(x).to(DEV)) * g.to(DEV)).sum().backward()
    (ref(torch.as_tensor(x)) * g.double()).sum().backward()
    got, want = tri.input_raw.grad.cpu().double(), ref.input_raw.grad
    assert torch.all(torch.isfinite(got))
    _close(got, want, 1e-3)


def test_masked_categorical_missing_values_and_masked_data():
    b = CircuitBuilder(rng=1)
    a = b.input(0, "masked_categorical", n=2, card=4, mask=(1, 1, 0, 1, 0, 1, 1, 0))
    d = b.input(1, "masked_categorical", n=2, card=3, mask=(1, 0, 1))
    c = b.build(b.sum([b.product([a, d])], n=1), num_vars=2)
    x = np.array([[0, 0], [-1, 2], [3, -1], [-1, -1], [2, 1], [1, 0]])
    tri, ref = _pair(c)
    ll = tri(torch.as_tensor(x).to(DEV)).detach().cpu().numpy()
    want = log_likelihood(c, x)
    assert want[4] == -np.inf and ll[4] == -np.inf  # var 1 = 1 is masked out everywhere
    np.testing.assert_allclose(ll, want, rtol=1e-5, atol=1e-5)
    assert ll[3] == pytest.approx(0.0, abs=1e-6)


def test_the_triton_backend_implements_both():
    from pccc.backends import triton as tb

    assert {"masked_categorical", "discrete_logistic"} <= set(tb.INPUT_DISTS)
    assert set(dists.implemented("triton")) == set(tb.INPUT_DISTS)
    assert dists.implementation("triton", "discrete_logistic").logprob == (
        "logprob_discrete_logistic")
    dists.refuse_missing("triton", ["masked_categorical", "discrete_logistic"],
                         tb.INPUT_DISTS)


def test_masked_categorical_gradient_steps_keep_masked_values_at_zero():
    b = CircuitBuilder(rng=2)
    a = b.input(0, "masked_categorical", n=3, card=5, mask=(1, 0, 1, 1, 0))
    c = b.build(b.sum([a], n=1), num_vars=1)
    x = torch.tensor([[0], [2], [3], [-1], [2]])
    tri, ref = _pair(c)
    for m, xs in ((tri, x.to(DEV)), (ref, x)):
        opt = torch.optim.SGD(m.parameters(), lr=0.3)
        for _ in range(2):
            opt.zero_grad()
            (-m(xs).sum()).backward()
            opt.step()
    got = tri.current_plan().input_params.reshape(3, 5)
    assert np.all(got[:, [1, 4]] == 0.0)
    _close(got, ref.current_plan().input_params.reshape(3, 5), 1e-4)
    _close(tri(x.to(DEV)).detach().cpu(), ref(x).detach(), 1e-4)


def build_input_kernels_for_sm90() -> None:
    """Compile the two distributions' input kernels (forward, statistics, the logistic's
    gradient) to PTX for an H100 (no GPU needed): the type and layout checks the interpreter
    does not make. Run without the interpreter (see below)."""
    from pccc.backends.triton import kernels_input as ki
    from pccc.backends.triton.families import discrete_logistic as dl
    from pccc.backends.triton.families import masked_categorical as mc
    from tests.sm90 import compile_for_sm90

    p, b8, i64 = "*fp32", "*i8", "*i64"
    rows = {"x": p, "miss": b8, "vars": i64, "pstart": i64}
    tail = {"node_start": "i32", "n": "i32", "batch": "i32", "stride": "i32"}
    fwd = {"node": p, **rows, "values": i64, "theta": p, "logc": p, **tail}
    bwd = {"flow": p, **rows, "counts": p, "nstats": p, "counts_em": p, "nstats_em": p,
           "scale": p, "flag": "*i32", **tail}
    grad = {"flow": p, **rows, "theta": p, "logc": p, "scale": p, "grad": p, **tail}
    builds = [(ki.input_fwd.jit, fwd, dict(BN=16, BT=64, LOGPROB=lp, TOTAL=0.0))
              for lp in (dl.logprob_discrete_logistic, mc.logprob_masked_categorical)]
    builds += [(ki.input_bwd.jit, bwd, dict(BN=16, BT=64, CAT=c)) for c in (True, False)]
    builds += [(dl.logistic_grad.jit, grad, dict(BN=16, BT=64))]
    compile_for_sm90(builds)


@pytest.mark.heavy  # an offline kernel build: make test-heavy
def test_input_kernels_build_for_a_gpu():
    from tests.sm90 import run_offline

    run_offline("tests.test_triton_dists", "build_input_kernels_for_sm90")
