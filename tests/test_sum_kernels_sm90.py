"""The sum layers' backward kernels built for a GPU without one: ``sum_bwd`` and ``sum_eflow``
with their flows in a flow buffer and in the node rows, for narrow products and wide ones,
compiled to PTX for an H100. The interpreter accepts some programs the GPU's compiler
refuses (see ``tests/sm90.py``)."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # (before Triton is imported: see sm90.py)

import pytest  # noqa: E402

pytest.importorskip("triton")


def build_sum_backward_for_sm90() -> None:
    """Compile ``sum_bwd`` and ``sum_eflow`` for each (fan-in, flows in node rows) pair, in
    Triton's tf32 dot mode. Run without the interpreter (see below)."""
    from pccc.backends.triton import kernels_sum as ks
    from tests.sm90 import compile_for_sm90

    f, i = "*fp32", "*i32"
    bwd = {"node": f, "flow": f, "weights": f, "pgrad": f, "pflow": f, "scale": f, "flag": i,
           "children": i, "row": "i32", "node_start": i, "chunk_start": i, "param_start": i,
           "num_chunks": i, "nc": "i32", "batch": "i32", "stride": "i32", "splits": "i32",
           "per": "i32", "unaligned": "i32", "rbuf": f, "rstart": i, "qbuf": f, "nin": "i32"}
    eflow = {"node": f, "flow": f, "weights": f, "children": i, "row": "i32", "sib": i,
             "node_start": i, "chunk_start": i, "param_start": i, "num_chunks": i,
             "nc": "i32", "batch": "i32", "stride": "i32", "unaligned": "i32", "rbuf": f,
             "rstart": i, "qbuf": f, "nin": "i32"}
    shape = dict(B=64, C=32, BP=64, CP=32, MIX="tf32")
    builds = []
    for fan in (2, 3, int(ks.NARROW) + 4):
        for nodes in (False, True):
            builds.append((ks.sum_bwd.jit, bwd, dict(
                shape, BT=64, SCATTER=True, EMW=True, RATIO=False, ATOMIC=not nodes,
                STORE=True, NODES=nodes, F=fan, TRANS=False)))
            builds.append((ks.sum_eflow.jit, eflow, dict(
                shape, G=4, BT=64, ATOMIC=False, NODES=nodes, F=fan)))
    compile_for_sm90(builds)


@pytest.mark.heavy  # an offline kernel build: make test-heavy
def test_sum_backward_builds_for_a_gpu() -> None:
    from tests.sm90 import run_offline

    run_offline("tests.test_sum_kernels_sm90", "build_sum_backward_for_sm90")
