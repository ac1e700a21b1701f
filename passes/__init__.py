"""Passes over the pccc IR: registry, pipelines, instruments, one module per pass."""

from __future__ import annotations

from pccc.ir.circuit import Circuit
from pccc.ir.plan import KernelPlan


def compile_plan(circuit: Circuit, pipeline: str | None = None, *, training: bool = True
                 ) -> KernelPlan:
    """Run a pipeline from L0 down to an L3 :class:`KernelPlan`.

    Args:
        circuit: the source circuit.
        pipeline: a pipeline string; None picks the default training or inference pipeline.
        training: the training pipeline keeps every source parameter (no rewrites that change
            the parametrization); the inference pipeline may merge them.
    """
    # Until the pass manager lands this is the direct lowering; the signature stays.
    from pccc.passes.lower_direct import lower_to_plan

    return lower_to_plan(circuit)
