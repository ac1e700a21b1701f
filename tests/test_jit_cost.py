"""``benchmarks/jit_cost.py``: the binaries a launch makes Triton build (its specialization
rules, checked on a kernel of the backend), and, offline for sm_90 (heavy), that every recorded
launch of a workload's first batch compiles to a cubin."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

pytest.importorskip("triton")

from benchmarks import jit_cost  # noqa: E402
from pccc.backends.triton import kernels_sum  # noqa: E402
from pccc.backends.triton.specialized import specialize  # noqa: E402

pytestmark = pytest.mark.interpret

T = ["tensor", "float32"]


def _launch(batch: int, stride: int) -> dict:
    return {"name": "flow_ratio", "args": [T, T, ["tensor", "int32"], T, ["tensor", "int32"], T,
                                           ["int", batch], ["int", stride]],
            "kw": {"BT": ["int", 32], "NODES": ["bool", False], "num_warps": ["int", 4]}}


def test_a_launch_becomes_triton_s_signature_constants_and_hints():
    entry = specialize(kernels_sum.flow_ratio, "flow_ratio", B=64, BP=64)
    fn, sig, consts, attrs, options = jit_cost.binary(entry, _launch(512, 1))
    assert sig == {"node": "*fp32", "flow": "*fp32", "node_start": "*i32", "rbuf": "*fp32",
                   "rstart": "*i32", "qbuf": "*fp32", "batch": "i32", "stride": "constexpr",
                   "B": "constexpr", "BP": "constexpr", "BT": "constexpr",
                   "NODES": "constexpr"}
    # an integer 1 is a constant
    assert consts == {"B": 64, "BP": 64, "BT": 32, "NODES": False, "stride": 1}
    assert sorted(i for (i,) in attrs) == [0, 1, 2, 3, 4, 5, 6]  # tensors and 512 (16 | 512)
    assert options == {"num_warps": 4}


def test_integers_that_specialize_differently_make_different_binaries():
    entry = specialize(kernels_sum.flow_ratio, "flow_ratio", B=64, BP=64)
    keys = set()
    for batch, stride in ((512, 1), (512, 512), (500, 512), (16, 32)):
        _, sig, consts, attrs, _ = jit_cost.binary(entry, _launch(batch, stride))
        keys.add((tuple(sorted(sig.items())), tuple(sorted(consts.items())), tuple(sorted(attrs))))
    # (16, 32) and (512, 512) agree: both multiples of 16, neither 1
    assert len(keys) == 3


@pytest.mark.heavy
def test_a_workload_s_first_batch_compiles_for_sm90(tmp_path):
    import argparse

    a = argparse.Namespace(mnist=None, programs=528, batch=64, only="", triton_site="")
    row = jit_cost.measure("hclt16", a, {})
    assert row["all_cubins"] and row["binaries"] >= 8
    assert row["binaries"] <= row["launches"]
    kernels = set(row["per_kernel"])
    assert {"sum_fwd", "sum_bwd", "em_weights", "input_fwd"} <= kernels, kernels
    # every cubin's registers read back (at most the 255 a thread can have)
    assert all(0 < b["regs"] <= 255 and b["spill"] >= 0 for b in row["binary_list"])
    only = jit_cost.measure("hclt16", argparse.Namespace(**{**vars(a), "only": "sum_bwd"}), {})
    assert {b["kernel"] for b in only["binary_list"]} == {"sum_bwd"}
