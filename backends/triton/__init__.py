"""The Triton backend: kernels generated per plan (see :mod:`.codegen`, :mod:`.templates`).

Registered as backend ``"triton"``; ``factory(plan, device="cuda", precision="tf32")`` returns a
:class:`~pccc.backends.triton.module.TritonCircuit`. Without a GPU the kernels run under
``TRITON_INTERPRET=1`` on the CPU (how CI tests them).
"""

from __future__ import annotations

from typing import Any

import triton  # noqa: F401  (fail at import when Triton is missing: the registry reports it)

from pccc.backends.registry import register
from pccc.backends.triton.em import em_step
from pccc.backends.triton.module import TritonCircuit
from pccc.ir.plan import KernelPlan

__all__ = ["TritonCircuit", "em_step", "make"]


def make(plan: KernelPlan, *, device: Any = "cuda", dtype: Any = None, precision: str = "tf32",
         **options: Any) -> TritonCircuit:
    """Build the module of ``plan`` (``dtype`` is accepted for the registry's signature; the
    Triton backend's numbers are float32, its tile precision is ``precision``)."""
    if options:
        raise TypeError(f"triton backend: unknown options {sorted(options)}")
    return TritonCircuit(plan, device=device, precision=precision)


register("triton", make)
