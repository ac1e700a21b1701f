"""Categorical input statistics of the Triton backend under ``TRITON_INTERPRET=1``: the one-hot
GEMM kernel (``input_cat_dot``, runs of one variable's nodes) and the atomics kernel it falls
back to, against counts made with numpy (``np.add.at``) from the same flows, values, missing
flags and per-example scale; and the whole module against the torch backend."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytest.importorskip("triton")
from pccc.backends.triton.codegen import load_module  # noqa: E402
from pccc.backends.triton.options import DEFAULT_TILES  # noqa: E402
from pccc.backends.triton.runtime import DevicePlan, col_bound  # noqa: E402
from pccc.ir.plan import InputLayer  # noqa: E402
from pccc.ir.schedule import Launch  # noqa: E402
from pccc.passes import compile_plan  # noqa: E402
from pccc.passes.schedule_kernels import input_statistics  # noqa: E402
from pccc.passes.schedule_parts import run_table  # noqa: E402
from tests.test_triton_backend import _dense_circuit  # noqa: E402
from tests.test_triton_compiled import _grads_and_em  # noqa: E402

pytestmark = [pytest.mark.interpret, pytest.mark.usefixtures("triton_cache")]
DEV = torch.device("cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda")



_MODULES: dict[str, object] = {}


def _kernels(precision: str):
    """A generated module with the categorical kernels (any plan with a categorical layer)."""
    if precision not in _MODULES:
        _MODULES[precision] = load_module(compile_plan(_dense_circuit(n=2)),
                                          precision)[0]
    return _MODULES[precision]


def _device_plan(layers: list[InputLayer], precision: str, programs: int = 2) -> DevicePlan:
    """A DevicePlan holding only ``layers`` (input_backward reads nothing else), with small
    GEMM tiles: runs of at most 16 nodes (a variable's nodes span several), value tiles of 16
    (K = 20 and 37 take several), 16 batch columns a step; ``programs``: how many programs a
    launch aims for (more: the batch tiles split among programs)."""
    dp = DevicePlan.__new__(DevicePlan)
    dp.device = DEV
    dp.k = _kernels(precision)
    dp.programs = programs
    tiles = {**DEFAULT_TILES, "catnb": 16, "catkt": 16, "catbt": 16}
    dp.inputs = [dp._input(ly, Launch("input_fwd"), input_statistics(k, ly, tiles, programs))
                 for k, ly in enumerate(layers)]
    return dp


def _stride(batch: int) -> int:
    """The module's buffer width for ``batch`` (the default tiles' stride tile, 64)."""
    return max(64, -(-batch // 64) * 64)


def _oracle(layers, f, x, miss, scale, q):
    """float64 (counts [q], [nstats [n, 4]]) with the scale applied; ``scale=None``: 1."""
    counts = np.zeros(q)
    out = []
    w = np.ones(f.shape[1]) if scale is None else scale
    for ly in layers:
        ns = np.zeros((ly.n, 4))
        fl = f[ly.node_start: ly.node_start + ly.n] * w[None, :]  # [n, batch]
        xv = x[ly.vars]  # [n, batch]
        ms = miss[ly.vars]
        ns[:, 0] = fl.sum(axis=1)
        ns[:, 1] = np.where(ms, fl, 0.0).sum(axis=1)
        obs = ~ms
        idx = (ly.param_start[:, None] + xv.astype(np.int64))[obs]
        np.add.at(counts, idx, fl[obs])
        out.append(ns)
    return counts, out


@st.composite
def _layers(draw):
    """1-2 categorical layers over a few variables: nodes per variable up to 40 (longer than
    the runs' 16-node cap in the tests), grouped or shuffled, parameter rows tied or not; K
    below 16 (the atomics kernel), 16, or not a power of two."""
    nvars = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    layers, slot, q = [], draw(st.integers(1, 5)), 0
    for _ in range(draw(st.integers(1, 2))):
        K = draw(st.sampled_from([3, 16, 20, 37]))
        per = [draw(st.integers(1, 40)) for _ in range(nvars)]
        vars_ = np.repeat(np.arange(nvars), per)
        if draw(st.booleans()):  # variables interleaved: runs by a gather, not by position
            vars_ = rng.permutation(vars_)
        n = len(vars_)
        rows = np.arange(n)
        if draw(st.booleans()):  # tied rows: some nodes share a parameter row
            rows = rng.integers(0, max(1, n // 2), n)
        layers.append(InputLayer("categorical", (("card", K),), slot, vars_, q + rows * K, K))
        slot += n + draw(st.integers(0, 3))
        q += n * K
    return layers, nvars, slot, q


@settings(max_examples=12, deadline=None)
@given(data=st.data(), spec=_layers(), batch=st.integers(1, 40), flag=st.sampled_from([0, 1]),
       precision=st.sampled_from(["fp32", "tf32"]), programs=st.sampled_from([1, 8, 64, 4096]))
def test_statistics_match_numpy(data, spec, batch, flag, precision, programs):
    layers, nvars, rows, q = spec
    dp = _device_plan(layers, precision, programs)
    for ly, inp in zip(layers, dp.inputs):
        assert (inp.runs is not None) == (ly.param_size >= 16 and ly.n >= 4 * len(
            run_table(ly.vars, 16))), (ly.param_size, inp.bwd.nb)
        assert inp.runs is None or inp.bwd.kt == 16
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    stride = _stride(batch)
    f = np.zeros((rows, stride))
    f[:, :batch] = rng.uniform(0.0, 2.0, (rows, batch))
    # the kernels compute col_bound(batch) columns, whose padding the module gives flow 0;
    # the columns past them must not be read
    f[:, col_bound(batch):] = 7.0
    K = np.array([ly.param_size for ly in layers])
    x = np.zeros((nvars, stride))
    x[:, :batch] = rng.integers(0, K.min(), (nvars, batch))
    miss = np.zeros((nvars, stride), bool)
    miss[:, :batch] = rng.random((nvars, batch)) < 0.25
    x[miss] = 0.0
    scale = np.zeros(stride)
    scale[:batch] = rng.uniform(0.1, 2.0, batch)

    def t(a, dt=torch.float32):
        return torch.as_tensor(a, dtype=dt, device=DEV)

    counts, counts_em = t(np.full(q, 9.0)), t(np.full(q, 0.5))
    nstats = [t(np.full((ly.n, 4), 9.0)) for ly in layers]
    nstats_em = [t(np.full((ly.n, 4), 0.5)) for ly in layers]
    dp.input_backward(t(f), t(x), t(miss, torch.int8), t(scale), t([flag], torch.int32), batch,
                      counts, nstats, counts_em, nstats_em)
    fb, xb, mb = f[:, :batch], x[:, :batch], miss[:, :batch]
    want, want_ns = _oracle(layers, fb, xb, mb, scale[:batch], q)
    em, em_ns = _oracle(layers, fb, xb, mb, None, q)
    # tf32 on a GPU rounds each flow to 10 mantissa bits (the interpreter's dot is exact)
    tol = dict(rtol=1e-5, atol=1e-4) if precision == "fp32" else dict(rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(counts.cpu().numpy(), want, **tol)
    np.testing.assert_allclose(counts_em.cpu().numpy(), 0.5 + (em if flag else 0.0), **tol)
    for got, w in zip(nstats, want_ns):  # categorical layers leave sum f x, sum f x^2 at 0
        np.testing.assert_allclose(got.cpu().numpy(), w, **tol)
    for got, w in zip(nstats_em, em_ns):
        np.testing.assert_allclose(got.cpu().numpy(), 0.5 + (w if flag else 0.0), **tol)


@pytest.mark.parametrize("em", [True, False])
def test_em_direct_accumulates(em):
    """The EM training path: flag 0, scale 1 and ``counts is counts_em``, added twice (zero
    False): each pass adds the statistics once (``em=False``, as the module calls it: no
    launch for the unweighted copy)."""
    K, per, batch = 20, 24, 37
    ly = InputLayer("categorical", (("card", K),), 1, np.repeat(np.arange(2), per),
                    np.arange(2 * per) * K, K)
    dp = _device_plan([ly], "tf32", programs=16)  # 4 runs x 2 value tiles, 2 splits of 3 tiles
    assert dp.inputs[0].runs is not None and dp.inputs[0].runs.shape == (4, 16)
    rng = np.random.default_rng(5)
    stride = _stride(batch)
    f = np.zeros((1 + 2 * per, stride), np.float32)
    f[:, :batch] = rng.uniform(0, 1, (1 + 2 * per, batch))
    x = np.zeros((2, stride), np.float32)
    x[:, :batch] = rng.integers(0, K, (2, batch))
    miss = np.zeros((2, stride), np.int8)
    ones = torch.ones(stride, device=DEV)
    counts = torch.zeros(2 * per * K, device=DEV)
    ns = [torch.zeros(2 * per, 4, device=DEV)]
    for _ in range(2):
        dp.input_backward(torch.as_tensor(f, device=DEV), torch.as_tensor(x, device=DEV),
                          torch.as_tensor(miss, device=DEV), ones,
                          torch.zeros(1, dtype=torch.int32, device=DEV), batch, counts, ns,
                          counts, ns, zero=False, em=em)
    want, want_ns = _oracle([ly], f[:, :batch].astype(np.float64), x[:, :batch],
                            miss[:, :batch] != 0, None, 2 * per * K)
    np.testing.assert_allclose(counts.cpu().numpy(), 2 * want, rtol=1e-3, atol=1e-3)  # tf32
    np.testing.assert_allclose(ns[0].cpu().numpy(), 2 * want_ns[0], rtol=1e-3, atol=1e-3)


def test_run_table():
    vars_ = np.array([2, 0, 2, 1, 0, 2] + [3] * 20)
    runs = run_table(vars_, 16)
    assert runs.shape == (5, 16)  # variable 3's 20 nodes: two runs
    got = sorted(tuple(r[r >= 0]) for r in runs)
    assert got == sorted([(1, 4), (3,), (0, 2, 5), tuple(range(6, 22)), tuple(range(22, 26))])
    assert run_table(np.repeat(np.arange(3), 5), 64).shape == (3, 16)
    assert run_table(np.repeat(np.arange(2), 100), 64).shape == (4, 64)


@pytest.mark.parametrize("weighted", [False, True])
def test_module_with_gemm_statistics_matches_torch_backend(weighted):
    """32 nodes per variable, 20 values: the module's gradients and EM steps (input EM included)
    with the one-hot GEMM statistics agree with the torch backend."""
    import pccc

    c = _dense_circuit(card=20)
    tri = pccc.compile(c, backend="triton", device=str(DEV), precision="fp32")
    assert all(inp.runs is not None for inp in tri.executor.dp.inputs)
    rng = np.random.default_rng(4)
    x = rng.integers(0, 20, size=(23, 4))
    x[rng.random(x.shape) < 0.2] = -1
    _grads_and_em(c, x, 2e-4, weighted)
