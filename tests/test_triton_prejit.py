"""The parallel-JIT helper (``backends/triton/prejit.py``) on the CPU: launches are recorded,
not run; specializations are told apart the way Triton tells them apart; the kernel module is
restored whatever the recorded pass does."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import pccc  # noqa: E402
from pccc.backends.triton import prejit  # noqa: E402
from tests.test_triton_backend import _dense_circuit  # noqa: E402

pytest.importorskip("triton")
pytestmark = pytest.mark.interpret
DEV = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"


def _model():
    return pccc.compile(_dense_circuit(), backend="triton", device=DEV, precision="fp32")


def test_recorded_pass_launches_nothing_and_names_its_kernels():
    m = _model()
    x = torch.randint(0, 5, (7, 4), device=DEV)
    b = m._static(7)
    before = b.node.clone()
    rec = prejit.Recorder(m.kernels)
    m.dp.k = rec
    try:
        m.dp.prepare_inputs(x, None, b.xt, b.mt)
        m.dp.forward(b.xt, b.mt, 7, m._w, m._in_args, b.node)
    finally:
        m.dp.k = m.kernels
    names = {fn.__name__ for fn, *_ in rec.calls}
    assert any(n.startswith("sum_fwd_") for n in names), names
    assert any(n.startswith("input_fwd_") for n in names), names
    assert torch.equal(b.node, before)  # recorded, not run
    ll = m(x)  # the real module still runs (and matches a fresh one)
    assert torch.allclose(ll, _model()(x))


def test_distinct_follows_triton_specialization():
    t16 = torch.zeros(64, device=DEV)
    calls = [("f", (1,), (t16, 32, 5), {"BT": 16}), ("f", (2,), (t16, 48, 7), {"BT": 16}),
             ("f", (1,), (t16, 40, 5), {"BT": 16}), ("f", (1,), (t16, 32, 1), {"BT": 16}),
             ("f", (1,), (t16, 32, 5), {"BT": 32}), ("g", (1,), (t16, 32, 5), {"BT": 16})]
    out = prejit.distinct(calls)  # 32 and 48: both divisible by 16; 40 is not; 1 is special
    assert [(c[0], c[2][1:], c[3]["BT"]) for c in out] == [
        ("f", (32, 5), 16), ("f", (40, 5), 16), ("f", (32, 1), 16), ("f", (32, 5), 32),
        ("g", (32, 5), 16)]


def test_distinct_ignores_unspecialized_arguments():
    m = _model()
    fn = next(getattr(m.kernels, n) for n in dir(m.kernels) if n.startswith("sum_bwd_"))
    pos = prejit.unspecialized(fn)
    names = list(fn.arg_names)
    assert {names[i] for i in pos} == {"splits", "per", "unaligned"}
    t = torch.zeros(64, device=DEV)
    base = [t] * len(names)
    a, b = list(base), list(base)
    for i in pos:  # splits, per: 1 (a special value when specialized) against 3
        a[i], b[i] = 1, 3
    calls = [(fn, (1,), tuple(a), {"BT": 32}), (fn, (1,), tuple(b), {"BT": 32})]
    assert len(prejit.distinct(calls)) == 1


def test_module_restored_when_the_pass_fails():
    m = _model()

    def boom() -> None:
        m.dp.k.em_weights[(1,)]()  # a recorded launch
        raise RuntimeError("pass failed")

    with pytest.raises(RuntimeError, match="pass failed"):
        prejit.prejit(m.dp, "k", boom)
    assert m.dp.k is m.kernels


def _specializations(m, rows: int) -> set:
    """What one training pass of ``rows`` examples would compile (recorded, not run)."""
    m.use_graphs = False  # (on a GPU: a replayed graph would launch nothing to record)
    m.parallel_jit = False
    rec = prejit.Recorder(m.kernels)
    m.dp.k = rec
    try:
        m(torch.randint(0, 5, (rows, 4), device=DEV)).mean().backward()
    finally:
        m.dp.k = m.kernels
    return {(fn.__name__,) + prejit.specialization(fn, args, kw)
            for fn, _, args, kw in rec.calls}


def test_smaller_batch_compiles_nothing_new():
    """An epoch's last, smaller batch after full ones needs no new kernel specialization: the
    column bound is rounded to 16 and the column tiles follow the buffers' width, not the
    batch (a tile picked per batch compiled 16-column variants for a batch of 40)."""
    m = _model()
    m(torch.randint(0, 5, (512, 4), device=DEV))  # buffers sized for 512 columns
    full = _specializations(m, 512)
    assert _specializations(m, 40) <= full
    assert _specializations(m, 7) <= full


def test_first_forward_compiles_its_em_backward_too(monkeypatch):
    """EM training: the first forward hands its own pass and the backwards it will be
    followed by (before and after EM steps: those after store flows) to one parallel compile;
    those backwards then compile nothing themselves."""
    from pccc.backends.triton import compiled

    seen = []
    monkeypatch.setattr(compiled, "prejit", lambda owner, attr, *runs: seen.append(len(runs)))
    m = _model()
    m.parallel_jit = True  # as on a GPU (the stand-in above compiles nothing)
    m.param_grads = False
    x = torch.randint(0, 5, (9, 4), device=DEV)
    ll = m(x)
    assert seen == [3]
    ll.mean().backward()
    m.em_step(0.1, 0.1)
    m(x).mean().backward()
    assert seen == [3]  # the backwards' kernels were in the forward's compile
    m.param_grads = True
    m(x).mean().backward()  # gradients wanted: a backward of its own, compiled on its own
    assert seen == [3, 1]
