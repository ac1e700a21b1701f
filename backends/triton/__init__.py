"""The Triton backend: ``@triton.jit`` kernels (:mod:`.kernels_sum`, :mod:`.kernels_input`,
:mod:`.kernels_param`, the input distributions' :mod:`.families`) bound per plan by a kernel
table (:mod:`.codegen`).

Registered as backend ``"triton"``: ``pccc.compile(circuit, backend="triton", device="cuda",
precision="tf32", **options)`` validates the options into a :class:`TritonOptions`
(:mod:`.options`) and returns a :class:`~pccc.backends.module.CompiledCircuit` whose executor
is a :class:`TritonExecutor` (:mod:`.compiled`): the module API every backend shares
(parameters, autograd, EM and saving), every pass run by generated kernels.
:func:`TritonCompiledCircuit` makes one from a plan directly. Without a GPU the kernels run
under ``TRITON_INTERPRET=1`` on the CPU (how CI tests them).
"""

from __future__ import annotations

import os
from typing import Any

import numpy.ma  # noqa: F401  (numpy's unique imports it on its first call: 0.13 s)
import torch
import triton  # noqa: F401  (fail at import when Triton is missing: the registry reports it)

import pccc.passes  # noqa: F401  (every compile for this backend runs the passes)
from pccc.backends.module import CompiledCircuit
from pccc.backends.registry import register
from pccc.backends.triton import families  # noqa: F401  (registers the Triton families)
from pccc.backends.triton.compiled import TritonCompiledCircuit, TritonExecutor
from pccc.backends.triton.options import TritonOptions
from pccc.ir import dists
from pccc.ir.errors import PcccError
from pccc.ir.plan import KernelPlan

__all__ = ["TritonCompiledCircuit", "TritonExecutor", "TritonOptions", "make"]

#: the input distributions the Triton kernels implement, those with a family in
#: :mod:`.families` (others are refused by name)
INPUT_DISTS = tuple(dists.implemented("triton"))


def make(plan: KernelPlan, *, device: Any = "cuda", dtype: Any = None, **options: Any
         ) -> CompiledCircuit:
    """Build the module of ``plan`` (``dtype`` is accepted for the registry's signature; the
    Triton backend's buffers are float32). ``options``: validated into a
    :class:`TritonOptions` (``precision``, ``cuda_graphs``, ``tiles``, ...); an unknown or
    ill-typed one is a :class:`PcccError` naming it."""
    if dtype not in (None, torch.float32, "float32"):
        raise PcccError(f"triton backend: buffers are float32 (got dtype {dtype})")
    opts = TritonOptions.from_kwargs(**options)
    dists.refuse_missing("triton", [ly.dist for ly in plan.input_layers], INPUT_DISTS)
    _check_device(device)
    return TritonCompiledCircuit(plan, device=device, options=opts)


def _check_device(device: Any) -> None:
    """Refuse early, in one line, a device Triton cannot run on here."""
    interpret = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
    if torch.device(device if device is not None else "cuda").type == "cuda":
        if not torch.cuda.is_available():
            raise PcccError("triton backend: no CUDA device here (use --backend torch, or "
                            "--device cpu with TRITON_INTERPRET=1 for Triton's slow CPU "
                            "interpreter)")
    elif not interpret:
        raise PcccError(f"triton backend: device {device!r} needs TRITON_INTERPRET=1 (Triton's "
                        "CPU interpreter, slow: meant for tests); use --backend torch on a CPU")


def prepare(device: Any = "cuda", **options: Any) -> None:
    """Before the passes: on a CUDA device, with the parallel first-batch compile on, start
    hashing Triton's sources (every kernel cache key needs the hash; it then overlaps the
    passes as well as the module's set-up). Nothing elsewhere, and nothing that can fail."""
    if torch.device(device if device is not None else "cuda").type != "cuda" or \
            not torch.cuda.is_available():
        return
    if TritonOptions.from_kwargs(**options).parallel_jit:
        from pccc.backends.triton.prejit import hash_triton_early

        hash_triton_early()


register("triton", make, options=TritonOptions.from_kwargs, prepare=prepare)
