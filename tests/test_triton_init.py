"""The Triton module's start: parameters made on the device (weights' groups read from the
device plan's 64-weight tiles, input logarithms taken there, values uploaded on a background
thread) against the torch backend's, made on the host in float64; kernels wrapped by
``triton.jit`` only when first used."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import pccc  # noqa: E402
from pccc.ir.circuit import SumVector  # noqa: E402
from tests.strategies import ALL_DISTS, circuits  # noqa: E402
from tests.test_triton_backend import _dense_circuit  # noqa: E402

pytest.importorskip("triton")
pytestmark = [pytest.mark.interpret, pytest.mark.usefixtures("triton_cache")]
DEV = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"



def _zero_rows(c, keys_rows):
    """``c`` with the given ``(sum key, row)`` weight rows set to 0 (groups of total 0)."""
    new = {}
    for key, row in keys_rows:
        w = np.array(new.get(key, c.params[key]), dtype=np.float64, copy=True)
        w[row] = 0.0
        new[key] = w
    return c.with_params(new)


def _check_same_start(c):
    tri = pccc.compile(c, backend="triton", device=DEV, precision="fp32")
    ref = pccc.compile(c, backend="torch", device="cpu", dtype=torch.float64)
    real = ref.plan.param_group >= 0
    for a, b in ((torch.exp(tri.log_weights()), torch.exp(ref.log_weights())),
                 (tri.sum_logits, ref.sum_logits), (tri.sum_norm, ref.sum_norm)):
        a, b = a.detach().cpu().double().numpy(), b.detach().numpy()
        if len(a) == len(real):
            a, b = a[real], b[real]
        assert np.array_equal(np.isneginf(a), np.isneginf(b))
        fin = np.isfinite(b)
        np.testing.assert_allclose(a[fin], b[fin], rtol=1e-6, atol=1e-6)  # float32 sums
    # the kernels' linear copy: the plan's weights, 0 on padding
    w = tri.executor._w.detach().cpu().double().numpy()
    np.testing.assert_allclose(w, np.where(real, tri.plan.params, 0.0), rtol=1e-6, atol=1e-30)
    raw_a, raw_b = tri.input_raw.detach().cpu().double().numpy(), ref.input_raw.detach().numpy()
    n = min(len(raw_a), len(raw_b))  # (an input-free circuit keeps one placeholder each)
    assert np.array_equal(np.isneginf(raw_a[:n]), np.isneginf(raw_b[:n]))
    fin = np.isfinite(raw_b[:n])
    np.testing.assert_allclose(raw_a[:n][fin], raw_b[:n][fin], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tri.input_shift.detach().cpu().double().numpy(),
                               ref.input_shift.numpy(), rtol=1e-6, atol=1e-6)
    return tri


@settings(max_examples=12, deadline=None)
@given(st.data())
def test_random_circuits_start_as_torch_backend(data):
    """Small plans: every weight tile is mixed (groups of a few weights, padding)."""
    c = data.draw(circuits(max_vars=4, dists=ALL_DISTS, normalized=data.draw(st.booleans())))
    sums = [(nd.param, r) for nd in c.nodes if isinstance(nd, SumVector) for r in range(nd.n)]
    picked = data.draw(st.lists(st.sampled_from(sums), max_size=2)) if sums else []
    _check_same_start(_zero_rows(c, picked))


@pytest.mark.parametrize("n", [32, 64])
def test_dense_circuit_starts_as_torch_backend(n):
    """Wide rows: 64-weight tiles of one group (summed per tile; n = 64) beside mixed ones,
    and two groups of total 0 (raw 0, normalizer -inf, weights 0, never NaN)."""
    c = _dense_circuit(n=n)
    keys = [nd.param for nd in c.nodes if isinstance(nd, SumVector) and nd.n > 1]
    tri = _check_same_start(_zero_rows(c, [(keys[0], 3), (keys[-1], 0), (keys[-1], n - 1)]))
    tiles = tri.executor.dp.tiles.cpu()
    assert (tiles >= 0).any() if n == 64 else (tiles <= -2).any()


def test_kernels_wrapped_at_first_use():
    """The table's kernels are the kernel modules' own: launchable ones wrapped by
    ``triton.jit`` when first used (``lazyjit``), specialized ones (``specialized.py``) through
    their kernel; the helpers that kernels call are Triton functions from the start."""
    from pccc.backends.triton import kernels_sum
    from pccc.backends.triton.lazyjit import LazyKernel, resolve
    from pccc.backends.triton.specialized import Specialized

    m = pccc.compile(_dense_circuit(n=16), backend="triton", device=DEV, precision="fp32")
    table = m.executor.kernels
    fwd = [getattr(table, n) for n in dir(table) if n.startswith("sum_fwd_")]
    assert fwd and all(isinstance(k, Specialized) and k.kernel is kernels_sum.sum_fwd
                       for k in fwd)
    assert isinstance(kernels_sum.sum_fwd, LazyKernel)
    assert isinstance(m.executor.kernels.em_weights, LazyKernel)
    m(torch.tensor([[0, 1, 2, 3]], device=DEV))
    assert kernels_sum.sum_fwd._jit is not None  # launched: wrapped
    helper = kernels_sum._elements  # called by kernels: a real Triton function from the start
    assert not isinstance(helper, LazyKernel) and resolve(helper) is helper
    k = m.executor.kernels.em_weights
    assert resolve(k) is k.jit and k.warmup.__self__ is k.jit  # public attributes forwarded


def test_lazy_kernel_copies_and_probes_do_not_wrap():
    import copy

    from pccc.backends.triton.lazyjit import kernel

    def double(x, n):
        """Twice x."""

    k = kernel(do_not_specialize=["n"])(double)
    assert not hasattr(k, "_pack_args") and k._jit is None  # private probes: no wrapping
    c = copy.deepcopy(k)
    assert c.__name__ == "double" and c.__doc__ == "Twice x." and c._jit is None
    assert k.warmup.__self__ is k._jit is not None  # a public name wraps it


@settings(max_examples=20, deadline=None)
@given(n=st.integers(0, 300), q=st.integers(0, 300), stage=st.integers(1, 64),
       threads=st.integers(0, 5))
def test_upload_copies_every_value_exactly(n, q, stage, threads):
    """The upload (``upload.py``) against the plan's arrays themselves: every weight (float32,
    padded with zeros to 64) and input value (float64) arrives, across slice and thread
    boundaries: on a GPU through the pinned staging buffers, here straight."""
    from types import SimpleNamespace

    from pccc.backends.triton import upload

    rng = np.random.default_rng(n * 1000 + q)
    plan = SimpleNamespace(params=rng.random(n), input_params=rng.random(q) * 1e3)
    plan.params.setflags(write=False)  # (the plan's arrays are read-only)
    old = upload.STAGE
    upload.STAGE = stage
    try:
        store, inputs = upload.start_upload(plan, torch.device(DEV), threads=threads).result()
    finally:
        upload.STAGE = old
    assert store.dtype == torch.float32 and len(store) == -(-n // 64) * 64
    assert np.array_equal(store.cpu().numpy()[:n], plan.params.astype(np.float32))
    assert not store.cpu().numpy()[n:].any()
    assert inputs.dtype == torch.float64
    assert np.array_equal(inputs.cpu().numpy(), plan.input_params)
