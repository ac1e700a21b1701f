"""Gaussians at the extremes (std 1e-40, 1e-320, 1e30; means 1e308): log-densities, gradients,
flows and EM steps are finite or infinite, never NaN, in the reference, torch and Triton
(interpret) backends; where the dtype can hold the parameters and the result, they agree with
the float64 reference."""

from __future__ import annotations

import math
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import pccc  # noqa: E402
from pccc.backends.reference import log_likelihood  # noqa: E402
from pccc.ir import CircuitBuilder  # noqa: E402
from pccc.optim import MiniBatchEM  # noqa: E402

MEANS = [0.0, 0.5, -3.0, 1e30, 1e308, -1e308]
STDS = [1e-320, 1e-40, 1e-3, 1.0, 1e30, 1e300]
F32_MAX = float(np.finfo(np.float32).max)
F32_TINY = float(np.finfo(np.float32).tiny)


@st.composite
def cases(draw):
    mu = draw(st.sampled_from(MEANS))
    sd = draw(st.sampled_from(STDS))
    near = [mu, mu + sd, mu - sd, mu + 3 * sd, 0.0, 1.0, -1.0, 1e308, np.nan]
    xs = draw(st.lists(st.sampled_from(near), min_size=1, max_size=4))
    xs = [v if math.isfinite(v) or math.isnan(v) else math.copysign(1e308, v) for v in xs]
    return mu, sd, np.array(xs, dtype=np.float64)


def _circuit(mu, sd):
    b = CircuitBuilder()
    g = b.input(0, "gaussian", params=[[mu, sd]])
    h = b.input(0, "gaussian", params=[[0.0, 1.0]])
    return b.build(b.sum([g, h], weights=[[0.5, 0.5]]))


def _fits_f32(mu, sd, xs):
    vals = [abs(mu), sd, *[abs(v) for v in xs if not math.isnan(v)]]
    return all(v < F32_MAX / 4 for v in vals) and sd > F32_TINY


def _no_nan(model, ll):
    assert not torch.isnan(ll).any(), ll
    ll.sum().backward()
    for name, t in [("sum_logits", model.sum_logits.grad), ("input_raw", model.input_raw.grad),
                    ("sum_flows", model.sum_flows), ("input_stats", model.input_stats)]:
        if t is not None:
            assert not torch.isnan(t).any(), (name, t)
    MiniBatchEM(model, step_size=0.5, pseudocount=0.1).step()
    params = model.source_params()
    for key, arr in params.items():
        assert not np.isnan(arr).any(), (key, arr)


def _check(backend, dtype, device, mu, sd, xs):
    c = _circuit(mu, sd)
    want = log_likelihood(c, xs[:, None])
    assert not np.isnan(want).any()
    model = pccc.compile(c, backend=backend, device=device, dtype=dtype)
    ll = model(torch.tensor(xs[:, None], device=device))
    got = ll.detach().double().cpu().numpy()
    if dtype == torch.float64 or _fits_f32(mu, sd, xs):
        tol = 1e-9 if dtype == torch.float64 else 2e-4
        fin = np.isfinite(want) & (np.abs(want) < 1e30)
        np.testing.assert_allclose(got[fin], want[fin], rtol=tol, atol=tol)
        assert np.array_equal(np.isfinite(got), np.isfinite(want)) or dtype != torch.float64
    _no_nan(model, ll)


@given(cases())
def test_reference_never_nan(case):
    mu, sd, xs = case
    assert not np.isnan(log_likelihood(_circuit(mu, sd), xs[:, None])).any()


@given(cases(), st.sampled_from([torch.float32, torch.float64]))
def test_torch_never_nan(case, dtype):
    _check("torch", dtype, "cpu", *case)


@pytest.mark.interpret
@pytest.mark.usefixtures("triton_cache")
@settings(max_examples=max(4, settings.default.max_examples // 8))  # (the interpreter is slow)
@given(cases())
def test_triton_never_nan(case):
    pytest.importorskip("triton")
    dev = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"
    _check("triton", torch.float32, dev, *case)


@pytest.mark.parametrize("sd", [1e-40, 1e-320])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_at_the_mean_with_a_tiny_std(sd, dtype):
    c = _circuit(0.5, sd)
    model = pccc.compile(c, backend="torch", dtype=dtype)
    ll = model(torch.tensor([[0.5]]))
    want = log_likelihood(c, np.array([[0.5]]))
    np.testing.assert_allclose(ll.detach().double().numpy(), want, rtol=1e-5)
    _no_nan(model, ll)
