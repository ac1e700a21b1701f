"""Flows kept in the node rows (option ``flows_in_nodes``) must compute what the flow buffer
does, bit for bit.

Where every node row has one writer in a backward pass (an HCLT: each node has one product
parent, each product one sum vector), the schedule lets a training backward write each input
node's flow, and each sum node's ``log f - s``, over the node's value, and no flow buffer is
allocated. Both are float32 computations of the same values in the same order, so EM training
and the weights' gradients must match the flow-buffer path exactly (kernels under
``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import pccc  # noqa: E402
from pccc.optim import MiniBatchEM  # noqa: E402
from pccc.passes import compile_plan  # noqa: E402
from pccc.passes.schedule_kernels import schedule_kernels  # noqa: E402
from pccc.structures import HCLT, PD  # noqa: E402

pytest.importorskip("triton")
pytestmark = [pytest.mark.interpret, pytest.mark.usefixtures("triton_cache")]
if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("bit-for-bit comparison under the interpreter", allow_module_level=True)


def _hclt(latents: int, seed: int = 1) -> tuple[torch.Tensor, object]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, (96, 5))
    x[:, 1] = (x[:, 0] + rng.integers(0, 2, 96)) % 3  # a tree with some structure
    return torch.as_tensor(x), HCLT(x, latents, num_cats=3, seed=seed)


def test_schedule_cuts_small_sibling_parts_for_one_writer_per_row() -> None:
    """A 128-latent HCLT has vectors of two 64-row blocks: kept whole, a small part's lone
    blocks write each child twice (atomically); with ``flows_in_nodes`` they become sibling
    groups and every row gets one writer. A PD shares children between sum vectors: it never
    qualifies."""
    _, c = _hclt(128)
    plan = compile_plan(c)
    off = schedule_kernels(plan, programs=8, flows_in_nodes=False)
    on = schedule_kernels(plan, programs=8, flows_in_nodes=True)
    assert any(p.write == "atomic" for p in off.parts) and not off.flows_in_nodes()
    assert all(p.write == "store" for p in on.parts) and on.flows_in_nodes()
    assert any(p.G > 1 for p in on.parts)  # the sum_eflow path, after its sum_bwd
    for i, p in enumerate(on.parts):
        kinds = [ln.kind for ln in on.backward if ln.part == i and ln.kind != "flow_ratio"]
        assert kinds == (["sum_bwd", "sum_eflow"] if p.G > 1 else ["sum_bwd"])
    pd = compile_plan(PD((4, 4), 4, split_intervals=(2, 2), num_cats=4, seed=1))
    assert not schedule_kernels(pd, programs=8, flows_in_nodes=True).flows_in_nodes()


def _train(c: object, x: torch.Tensor, in_nodes: bool, grads: bool, option: bool = True,
           steps: int = 3) -> tuple[dict[str, np.ndarray], list[np.ndarray], object]:
    """``steps`` EM steps; ``in_nodes``: whether the run keeps its flows in the node rows (the
    schedule of option ``flows_in_nodes`` = ``option`` either way)."""
    m = pccc.compile(c, backend="triton", device="cpu", precision="fp32",
                     flows_in_nodes=option)
    m.executor.dp.in_nodes = in_nodes  # the same schedule, with and without a flow buffer
    m.param_grads = grads
    opt = MiniBatchEM(m, step_size=0.1, pseudocount=0.1)
    seen = []
    for i in range(steps):
        ll = m(x[i * 32:(i + 1) * 32])
        seen.append(ll.detach().numpy().copy())
        (ll * torch.linspace(0.5, 1.5, len(ll))).sum().backward() if grads else \
            ll.mean().backward()
        if grads:
            seen += [m.sum_logits.grad.numpy().copy(), m.input_raw.grad.numpy().copy()]
        opt.step()
        m.zero_grad(set_to_none=True)
    m.settle()
    return {k: v.detach().numpy().copy() for k, v in m.state_dict().items()}, seen, m


@pytest.mark.parametrize("latents,grads", [
    (4, False), (4, True),
    pytest.param(128, False, marks=pytest.mark.heavy),  # (21 s under the interpreter)
])
def test_training_matches_the_flow_buffer_bit_for_bit(latents: int, grads: bool) -> None:
    """EM training (EM-only backward, or weighted gradients with EM statistics) from the
    same parameters and schedule: log-likelihoods, gradients and the trained state are equal
    to the bit, and only the flow-buffer run allocated a flow buffer. Against the schedule of
    ``flows_in_nodes=False`` (atomic sums over sibling blocks instead of sibling groups) the
    rounding differs, not the values."""
    x, c = _hclt(latents)
    steps = 2 if latents > 64 else 3  # (the interpreter's time)
    a, seen_a, ma = _train(c, x, True, grads, steps=steps)
    b, seen_b, mb = _train(c, x, False, grads, steps=steps)
    assert ma.executor._sbufs.flow is None and mb.executor._sbufs.flow is not None
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    for u, v in zip(seen_a, seen_b):
        np.testing.assert_array_equal(u, v)
    with pytest.raises(RuntimeError, match="kept its flows in the node rows"):
        ma.executor.node_flows(32)
    if latents == 128:
        off, _, mo = _train(c, x, False, grads, option=False, steps=steps)
        assert not mo.executor.dp.schedule.flows_in_nodes()
        for k in a:
            np.testing.assert_allclose(a[k], off[k], rtol=2e-5, atol=1e-6, err_msg=k)
