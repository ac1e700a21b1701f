"""The Triton backend: kernels generated per plan (see :mod:`.codegen`, :mod:`.templates`).

Registered as backend ``"triton"``: ``pccc.compile(circuit, backend="triton", device="cuda",
precision="tf32")`` returns a :class:`TritonCompiledCircuit` (the torch backend's module API:
parameters, autograd, EM and saving; every pass runs generated kernels). Without a GPU the
kernels run under ``TRITON_INTERPRET=1`` on the CPU (how CI tests them).
"""

from __future__ import annotations

import os
from typing import Any

import numpy.ma  # noqa: F401  (numpy's unique imports it on its first call: 0.13 s)
import torch
import triton  # noqa: F401  (fail at import when Triton is missing: the registry reports it)

import pccc.passes  # noqa: F401  (every compile for this backend runs the passes)
from pccc.backends.registry import register
from pccc.backends.triton.codegen import PRECISIONS
from pccc.backends.triton.compiled import TritonCompiledCircuit
from pccc.ir.errors import PcccError
from pccc.ir.plan import KernelPlan

__all__ = ["TritonCompiledCircuit", "make"]


def make(plan: KernelPlan, *, device: Any = "cuda", dtype: Any = None, precision: str = "tf32"
         ) -> TritonCompiledCircuit:
    """Build the module of ``plan`` (``dtype`` is accepted for the registry's signature; the
    Triton backend's buffers are float32, its tile precision is ``precision``: one of
    ``tf32``, ``fp32``, ``bf16``)."""
    if dtype not in (None, torch.float32, "float32"):
        raise PcccError(f"triton backend: buffers are float32 (got dtype {dtype})")
    if precision not in PRECISIONS:
        raise PcccError(f"triton backend: precision {precision!r} is not one of "
                        f"{', '.join(PRECISIONS)}")
    _check_device(device)
    return TritonCompiledCircuit(plan, device=device, precision=precision)


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


register("triton", make, pending_values=True)
