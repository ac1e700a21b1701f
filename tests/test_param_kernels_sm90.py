"""The parameter kernels built for a GPU without one: the EM update of the weights and
logits, over all tiles and over some, compiled to PTX for an H100. The interpreter runs a
kernel whose ``if`` branches give one variable two types; the GPU's compiler refuses it, so
only a build for the GPU sees it."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # (before Triton is imported: see sm90.py)

import pytest  # noqa: E402

pytest.importorskip("triton")

def build_param_kernels_for_sm90() -> None:
    """Compile the EM update (all tiles, and the tiles of a partial update) to PTX for an
    H100 (no GPU needed): the type checks the interpreter does not make (such as a mask of
    two shapes in the branches of ``_tiles``' callers). Run without the interpreter (see
    below)."""
    from pccc.backends.triton import kernels_param as kp
    from tests.sm90 import compile_for_sm90

    p, i = "*fp32", "*i32"
    em = {"w": p, "flows": p, "tile_group": i, "mixed": i, "gsum": p, "gsize": p, "logits": p,
          "zero": "*i8", "ntiles": "i32", "step": "fp32", "pseudocount": "fp32"}
    builds = [(kp.em_weights.jit, em, dict(TILES=16, PARTIAL=part, LOGITS=keep))
              for part in (True, False) for keep in (True, False)]
    compile_for_sm90(builds)


@pytest.mark.heavy  # an offline kernel build: make test-heavy
def test_param_kernels_build_for_a_gpu() -> None:
    from tests.sm90 import run_offline

    run_offline("tests.test_param_kernels_sm90", "build_param_kernels_for_sm90")
