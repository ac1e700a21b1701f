"""Triton backend kernels under ``TRITON_INTERPRET=1``, against independent float64 oracles:
``plan_eval`` for the forward pass, a differentiable torch reading of the plan for flows and
gradients. Small circuits only (the interpreter runs each program in Python)."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pccc.backends.reference.plan_eval import plan_log_likelihood  # noqa: E402
from pccc.ir import CircuitBuilder  # noqa: E402
from pccc.passes import compile_plan  # noqa: E402
from tests.strategies import ALL_DISTS, circuits, data_for  # noqa: E402
from tests.triton.oracle import oracle  # noqa: E402

triton = pytest.importorskip("triton")
from pccc.backends.triton import TritonCompiledCircuit  # noqa: E402

pytestmark = [pytest.mark.interpret, pytest.mark.usefixtures("triton_cache")]
DEV = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"



def _check_all(plan, x, model, rng, tol=2e-4):
    """Forward vs plan_eval; node flows and the weights' gradients vs the torch oracle (input
    gradients: tests/test_triton_compiled.py, against the torch backend)."""
    xt = torch.as_tensor(np.asarray(x, dtype=np.float64))
    ll = model(xt)
    ref = plan_log_likelihood(plan, x)
    np.testing.assert_allclose(ll.detach().cpu().numpy(), ref, rtol=tol, atol=tol)
    g = torch.as_tensor(rng.uniform(0.2, 2.0, size=len(ref)), dtype=torch.float32)
    (ll * g.to(ll.device)).sum().backward()
    w = torch.tensor(plan.params, requires_grad=True)
    th = torch.tensor(plan.input_params, requires_grad=True)
    root, rows = oracle(plan, x, w, th)
    for r in rows.values():
        if r.requires_grad:
            r.retain_grad()
    (root * g.double()).sum().backward()
    # d/d logit of w_p = z_g softmax(logits)_p: w_p dw_p - (w_p / z_g) sum_{q in g} w_q dw_q
    real = plan.param_group >= 0
    grp = np.where(real, plan.param_group, 0)
    a = np.where(real, plan.params * w.grad.numpy(), 0.0)
    z = np.bincount(grp, np.where(real, plan.params, 0.0), minlength=len(plan.group_size))
    gs = np.bincount(grp, a, minlength=len(plan.group_size))
    prob = np.where(real & (plan.params > 0), plan.params / np.where(z > 0, z, 1.0)[grp], 0.0)
    want = a - prob * gs[grp]
    np.testing.assert_allclose(model.sum_logits.grad.cpu().numpy()[real], want[real],
                               rtol=tol * 5, atol=tol * 5)
    if model.executor.dp.in_nodes:  # the flows replaced the values in the node rows
        with pytest.raises(RuntimeError, match="node rows"):
            model.executor.node_flows(len(ref))
        return
    flows = model.executor.node_flows(len(ref)).cpu().numpy()  # root flow 1 per example
    for slot, r in rows.items():
        if slot and r.grad is not None:
            np.testing.assert_allclose(flows[slot], r.grad.numpy() / g.double().numpy(),
                                       rtol=tol * 5, atol=tol * 5)


@settings(max_examples=6, deadline=None)
@given(st.data())
def test_random_circuits_forward_flows_grads(data):
    c = data.draw(circuits(max_vars=4, dists=ALL_DISTS, normalized=False))
    x = data.draw(data_for(c, n_rows=5, missing_prob=0.3))
    plan = compile_plan(c)
    model = TritonCompiledCircuit(plan, device=DEV, precision="fp32",
                                  flows_in_nodes=data.draw(st.booleans()))
    _check_all(plan, x, model, np.random.default_rng(0))


def _dense_circuit(n: int = 32, nvars: int = 4, card: int = 5, seed: int = 0):
    """Vectors of n nodes: tensor-core tiles (B = C >= 16) with fused products."""
    b = CircuitBuilder(rng=np.random.default_rng(seed))
    leaves = [b.input(v, "categorical", n=n, card=card) for v in range(nvars)]
    left = b.sum([b.product([leaves[0], leaves[1]])], n=n)
    right = b.sum([b.product([leaves[2], leaves[3]]), b.product([leaves[3], leaves[2]])], n=n)
    top = b.sum([b.product([left, right])], n=1)
    return b.build(top, num_vars=nvars)


INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
BF16 = pytest.param("bf16", 2e-2, marks=pytest.mark.skipif(
    INTERPRETED, reason="Triton 3.6's interpreter multiplies bf16 dot operands as raw bits"))


#: tf32 tiles round operands to 10 mantissa bits (the interpreter computes them exactly)
TF32_TOL = 2e-4 if INTERPRETED else 3e-3


@pytest.mark.parametrize("precision,tol", [("fp32", 2e-4), ("tf32", TF32_TOL), BF16])
def test_dense_tiles(precision, tol):
    rng = np.random.default_rng(1)
    c = _dense_circuit()
    plan = compile_plan(c)
    assert any(p.block_size >= 16 and p.chunk_size >= 16
               for ly in plan.sum_layers() for p in ly.partitions)
    x = rng.integers(0, 5, size=(40, 4))
    x[rng.random(x.shape) < 0.2] = -1
    model = TritonCompiledCircuit(plan, device=DEV, precision=precision)
    _check_all(plan, x, model, rng, tol)
    assert "sum_fwd_b32_c32" in model.artifacts["kernels"]
    assert "precision: " + precision in model.artifacts["plan"]


def test_flows_stored_or_added_across_passes():
    """Element flows are stored into child rows that have one writer in the whole backward
    pass (those rows are not zeroed between passes) and added atomically into the others
    (zeroed first): the flows and gradients of a second, smaller batch match the oracle, with
    no trace of the first."""
    plan = compile_plan(_dense_circuit())
    model = TritonCompiledCircuit(plan, device=DEV, precision="fp32")
    parts = model.executor.dp.schedule.parts
    # leaves 2 and 3 feed two products each; every other row has one parent
    assert {p.write for p in parts} == {"atomic", "store"}
    start, count = (t.cpu().numpy() for t in model.executor.dp.zero_tiles)
    assert 0 < count.sum() < model.executor.dp.rows
    rng = np.random.default_rng(11)
    for n in (23, 9):
        x = rng.integers(0, 5, size=(n, 4))
        x[rng.random(x.shape) < 0.2] = -1
        model.zero_grad()
        _check_all(plan, x, model, rng)


@given(st.lists(st.integers(0, 300), max_size=60), st.integers(1, 9))
def test_row_tiles_cover_exactly_the_rows(rows, size):
    """``row_tiles``: runs of consecutive rows in tiles of at most ``size``; their union is
    the set of rows, with no row twice (brute force)."""
    from pccc.passes.schedule_parts import row_tiles

    want = sorted(set(rows))
    start, count = row_tiles(np.array(want, np.int64), size)
    assert ((count >= 1) & (count <= size)).all()
    got = [int(s) + i for s, c in zip(start, count) for i in range(int(c))]
    assert got == want
