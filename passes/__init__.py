"""Passes over the pccc IR: registry, pipelines, instruments, one module per pass.

Example::

    from pccc.passes import compile_plan, run_pipeline
    plan = compile_plan(circuit)                                   # the training pipeline
    blocked = run_pipeline(circuit, "canonicalize,group-blocks{block-size=32}")
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pccc.ir.circuit import Circuit
from pccc.ir.plan import KernelPlan
from pccc.passes.manager import run_pipeline
from pccc.passes.pipeline import NAMED, format_pipeline, parse_pipeline
from pccc.passes.registry import all_passes, get_pass, register_pass

__all__ = ["NAMED", "all_passes", "compile_plan", "format_pipeline", "get_pass",
           "parse_pipeline", "register_pass", "run_pipeline"]


def compile_plan(circuit: Circuit, pipeline: str | None = None, *, training: bool = True,
                 verify: bool = False, repro_dir: str | Path | None = None) -> KernelPlan:
    """Run a pipeline from L0 down to an L3 :class:`KernelPlan`.

    Args:
        circuit: the source circuit.
        pipeline: a pipeline string; None picks the default training or inference pipeline.
        training: the training pipeline keeps every source parameter (no rewrites that change
            the parametrization); the inference pipeline (``default``) may merge them.
        verify: verify the IR after every pass (slower; the CLI does it by default).
        repro_dir: where a failing pass writes ``repro.pcir`` and ``repro.pipeline``.

    Raises:
        PassError: a bad pipeline or a failing pass (a repro is written to the folder named by
            ``repro_dir`` when given).
    """
    text = pipeline if pipeline is not None else ("training" if training else "default")
    steps = parse_pipeline(text, start_level="L0")
    if not steps or steps[-1].info.output_level != "L3":
        from pccc.ir.errors import PassError

        raise PassError(f"pipeline {text!r} does not end at L3 (a KernelPlan)")
    plan = run_pipeline(circuit, steps, verify=verify,
                        repro_dir=repro_dir)
    meta = tuple(kv for kv in plan.meta if kv[0] != "pipeline")
    out = dataclasses.replace(plan, meta=(("pipeline", format_pipeline(steps)),) + meta)
    if all(st.info.fn.__module__.startswith("pccc.passes.") for st in steps):
        from pccc.ir.plan_verify import trust_groups

        trust_groups(out)
    return out
