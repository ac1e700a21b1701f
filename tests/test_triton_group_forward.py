"""The forward of sibling groups: a program per group of blocks that mix the same elements.

``sum_fwd`` with ``G > 1`` computes each element chunk once and mixes it by the group's
weights stacked into one tile (``G`` rounded up to a power of two: padding siblings are
masked off), with one online maximum for every row. Each shape below is checked against the
float64 evaluators (the plan's and the circuit's), and the grouped schedule against the
per-block one (``group_rows=0``): groups of 2 to 5 blocks, 16 to 64 rows, stacked tiles of
32 rows to 256, broadcast tiles, and groups over the ``group_rows`` bound.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import pccc  # noqa: E402
from pccc.backends.reference.evaluate import log_likelihood  # noqa: E402
from pccc.backends.reference.plan_eval import plan_log_likelihood  # noqa: E402
from pccc.passes.schedule_kernels import pow2ceil  # noqa: E402
from pccc.structures import InputSpec, hclt_from_tree  # noqa: E402
from tests.test_triton_backend import _dense_circuit  # noqa: E402
from tests.test_triton_compiled import _grads_and_em  # noqa: E402

pytest.importorskip("triton")
pytestmark = [pytest.mark.interpret, pytest.mark.usefixtures("triton_cache")]
DEV = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"


def _forward_launches(model):
    s = model.executor.dp.schedule
    return s, [ln for ln in s.forward if ln.kind == "sum_fwd"]


def _data(nvars: int, card: int, rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, card, size=(rows, nvars))
    x[rng.random(x.shape) < 0.2] = -1
    return x


@pytest.mark.parametrize("n,rows,trans", [
    (20, 32, False),    # 20 blocks of 1 row (broadcast tiles): 12 padding siblings
    (40, 64, False),    # 3 blocks of 16: a padding sibling
    (80, 128, False),   # 3 blocks of 32
    (136, 256, False),  # 5 blocks of 32: three padding siblings
    (200, 256, False),  # 4 blocks of 64
])
def test_grouped_forward_matches_the_float64_plan(n, rows, trans):
    c = _dense_circuit(n=n)
    x = _data(4, 5, 23, n)
    tri = pccc.compile(c, backend="triton", device=DEV, precision="fp32", small_part=0)
    s, fwd = _forward_launches(tri)
    grouped = [ln for ln in fwd if ln.group]
    assert grouped, "the schedule has no grouped forward: this test tests nothing"
    for ln in grouped:
        p = s.parts[ln.part]
        assert ln.group == p.G > 1 and pow2ceil(p.G) * pow2ceil(p.B) == rows
        assert ln.trans == trans
    ll = tri(torch.as_tensor(x).to(DEV)).detach().cpu().numpy()
    np.testing.assert_allclose(ll, plan_log_likelihood(tri.plan, x), rtol=2e-4, atol=2e-4)


def test_groups_over_the_bound_run_in_pieces():
    """``group_rows`` bounds the stacked tile: a group of 5 blocks of 64 runs a program per
    block under 64 rows, as runs of 4 and 1 blocks under 256, whole under 512; each equals
    the oracle."""
    c = _dense_circuit(n=300)
    x = _data(4, 5, 17, 1)
    want = plan_log_likelihood(pccc.compile(c).plan, x)
    for bound, group in ((64, 0), (256, 4), (512, 5)):
        tri = pccc.compile(c, backend="triton", device=DEV, precision="fp32", small_part=0,
                           group_rows=bound)
        s, fwd = _forward_launches(tri)
        assert any(s.parts[ln.part].G == 5 and ln.group == group for ln in fwd)
        np.testing.assert_allclose(tri(torch.as_tensor(x).to(DEV)).detach().cpu().numpy(),
                                   want, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("n", [40, 136])
def test_grouped_forward_gradients_and_em(n):
    """Gradients and an EM step through the grouped forward (padding siblings included)
    against the float64 torch backend."""
    c = _dense_circuit(n=n)
    _grads_and_em(c, _data(4, 5, 19, 2), 2e-4, True, small_part=0)


@settings(max_examples=4, deadline=None)
@given(latents=st.integers(5, 48), nvars=st.integers(3, 9), seed=st.integers(0, 2**16),
       bound=st.sampled_from([0, 64, 256]))
def test_random_hclt_grouped_equals_per_block_and_oracle(latents, nvars, seed, bound):
    """A random tree's HCLT (blocks of any size, broadcast tiles below 16 rows) with every
    part cut into sibling groups: the forward under ``group_rows=bound`` equals the circuit's
    float64 log-likelihood."""
    rng = np.random.default_rng(seed)
    parent = np.concatenate([[-1], rng.integers(0, np.arange(1, nvars))])
    c = hclt_from_tree(parent, latents, InputSpec.parse("categorical", card=7), seed=seed)
    x = _data(nvars, 7, 11, seed)
    tri = pccc.compile(c, backend="triton", device=DEV, precision="fp32", small_part=0,
                       group_rows=bound)
    _, fwd = _forward_launches(tri)
    assert bound or not any(ln.group for ln in fwd)
    ll = tri(torch.as_tensor(x).to(DEV)).detach().cpu().numpy()
    np.testing.assert_allclose(ll, log_likelihood(c, x), rtol=2e-4, atol=2e-4)


def _backward_groups(model):
    s = model.executor.dp.schedule
    return [(s.parts[ln.part], ln) for ln in s.backward if ln.kind == "sum_bwd"]


@pytest.mark.parametrize("n,bound,weighted,nodes", [
    (40, 128, False, False),   # runs of 3 blocks of 16 (a padding sibling)
    (136, 128, True, False),   # runs of 4 and 1 blocks of 32, examples weighed unequally
    (136, 256, False, True),   # one run of 5 blocks, flows kept per node
    (300, 256, True, False),   # runs of 4 and 1 blocks of 64
    (300, 64, False, False),   # a program per block (the bound admits one block)
])
def test_grouped_backward_gradients_and_em(n, bound, weighted, nodes):
    """``sum_bwd`` over runs of a sibling group reads each element chunk once for the run's
    blocks: gradients and an EM step equal the float64 torch backend's."""
    c = _dense_circuit(n=n)
    opts = dict(small_part=0, group_rows_bwd=bound, flows_in_nodes=nodes)
    tri = pccc.compile(c, backend="triton", device=DEV, precision="fp32", **opts)
    runs = [ln.group for p, ln in _backward_groups(tri) if p.G > 1]
    assert runs, "no part has sibling groups: this test tests nothing"
    assert all(g == 0 for g in runs) if bound == 64 else any(g > 1 for g in runs)
    _grads_and_em(c, _data(4, 5, 21, n), 2e-4, weighted, **opts)
