"""``layout-params{float32-weights=true}``: the plan's flat sum weights stored as float32.
The oracle is the default float64 plan: the same layout, its weights rounded to float32; and
the Triton module (whose kernels compute with float32 weights) built from either plan trains
to the same parameters, bit for bit."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402

import pccc  # noqa: E402
from pccc.ir.plan_verify import verify_plan  # noqa: E402
from pccc.optim import MiniBatchEM  # noqa: E402
from pccc.passes import compile_plan  # noqa: E402
from tests.strategies import circuits  # noqa: E402
from tests.test_triton_backend import _dense_circuit  # noqa: E402

F32 = "canonicalize,group-blocks,partition-layers,layout-params{float32-weights=true}"
DEV = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"


@settings(max_examples=25, deadline=None)
@given(c=circuits(max_vars=4, max_n=3))
def test_the_plan_is_the_default_one_rounded(c):
    ref = compile_plan(c, training=True)
    got = compile_plan(c, F32, training=True)
    verify_plan(got)
    assert got.params.dtype == np.float32 and not got.params.flags.writeable
    np.testing.assert_array_equal(got.params, ref.params.astype(np.float32))
    np.testing.assert_array_equal(got.param_group, ref.param_group)
    np.testing.assert_array_equal(got.input_params, ref.input_params)


def _trained(c, x, pipeline):
    m = pccc.compile(c, backend="triton", device=DEV, precision="fp32", pipeline=pipeline)
    m.param_grads = False
    em = MiniBatchEM(m, step_size=0.4, pseudocount=0.1)
    xd = torch.as_tensor(x).to(DEV)
    lls = []
    for _ in range(2):
        ll = m(xd)
        ll.mean().backward()
        em.step()
        lls.append(ll.detach().cpu())
    return m, lls


@pytest.mark.interpret
@pytest.mark.usefixtures("triton_cache")
def test_a_triton_module_trains_alike_from_either_plan(tmp_path):
    """(The plans themselves are compared on random circuits above.)"""
    pytest.importorskip("triton")
    c = _dense_circuit()
    rng = np.random.default_rng(4)
    x = rng.integers(0, 5, (9, 4))
    x[rng.random(x.shape) < 0.2] = -1
    a, la = _trained(c, x, None)
    b, lb = _trained(c, x, F32)
    for u, v in zip(la, lb):
        assert torch.equal(u, v)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    # a .pccm file of the float32 plan's module loads and computes the same
    path = tmp_path / "m.pccm"
    pccc.save(b, path)
    back = pccc.load_module(path, device=DEV)
    xd = torch.as_tensor(x).to(DEV)
    assert torch.equal(back(xd).detach().cpu(), b(xd).detach().cpu())
