"""What to draw at each level, from whatever was given: a value of any level, a file, a module.

- ``L0``: the circuit (of an L1 or L2 value, the circuit inside it, its root wrapper taken
  off; of a compiled module or ``.pccm`` file, its source circuit);
- ``L2``: the layer schedule, made by running the pipeline (default: ``training``) from the
  value's level through ``partition-layers``;
- ``L3``: the kernel plan's layers (the pipeline run down to L3; a module's own plan).

An L3 plan keeps no circuit, so it draws at L3 only.

Example::

    value = read_value("model.jpc")
    pic = picture_of(value, "L2", max_nodes=200)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pccc.ir.errors import PcccError
from pccc.viz.model import Picture

#: the levels drawn
LEVELS = ("L0", "L2", "L3")


@dataclass(frozen=True)
class Drawable:
    """An IR value to draw, with the plan and the pipeline it came with (a compiled
    module's)."""

    value: Any
    """an IR value of level L0 to L3"""
    plan: Any = None
    """the module's ``KernelPlan``, when the value is a module's source circuit"""
    pipeline: str | None = None
    """the pipeline the module was compiled with"""


def read_value(obj: Any) -> Drawable:
    """A :class:`Drawable` from an IR value, a compiled module, or a path (any file
    :func:`pccc.load` reads, or a ``.pccm`` module).

    Raises:
        PcccError: an unreadable file, or an object that is none of these.
    """
    if isinstance(obj, (str, os.PathLike)):
        if str(obj).lower().endswith(".pccm"):
            from pccc.artifact import read_artifact

            manifest, plan, source = read_artifact(obj)
            return Drawable(source if source is not None else plan, plan,
                            manifest.get("pipeline") or None)
        from pccc.api import load

        if not Path(obj).exists():
            raise PcccError(f"{obj}: no such file")
        return Drawable(load(obj))
    if getattr(obj, "level", None) in ("L0", "L1", "L2", "L3"):
        return Drawable(obj)
    if hasattr(obj, "to_circuit") and hasattr(obj, "current_plan"):
        return Drawable(obj.to_circuit(), obj.current_plan())
    raise PcccError(f"cannot draw a {type(obj).__name__}: expected a circuit, an IR value of "
                    "level L0 to L3, a compiled module or a file name")


def lower(value: Any, level: str, pipeline: str | None = None) -> Any:
    """``value`` run through ``pipeline`` (default ``training``) from its level until the
    first pass whose output is ``level``.

    Raises:
        PcccError: the pipeline does not go from the value's level to ``level``; a pass failed.
    """
    from pccc.passes.manager import level_of, run_pipeline
    from pccc.passes.pipeline import parse_pipeline

    start = level_of(value)
    if start == level:
        return value
    text = pipeline or "training"
    steps = parse_pipeline(text, start_level=None)
    first = next((i for i, st in enumerate(steps) if st.info.input_level == start), None)
    last = next((i for i, st in enumerate(steps) if st.info.output_level == level
                 and first is not None and i >= first), None)
    if first is None or last is None:
        raise PcccError(f"pipeline {text!r} does not lead from {start} to {level}")
    return run_pipeline(value, steps[first:last + 1], verify=False)


def _circuit_of(value: Any) -> Any:
    if value.level == "L0":
        return value
    if value.level == "L3":
        raise PcccError("an L3 kernel plan keeps no circuit: draw it at level L3")
    from pccc.ir.parse_lowered import source_of

    return source_of(value)


def picture_of(d: Drawable, level: str, *, max_nodes: int = 200,
               pipeline: str | None = None) -> Picture:
    """The picture of ``d`` at ``level`` (see the module docstring).

    Raises:
        PcccError: an unknown level, a level the value cannot be drawn at, ``max_nodes < 1``.
    """
    if max_nodes < 1:
        raise PcccError(f"max_nodes must be at least 1, got {max_nodes}")
    pipe = pipeline or d.pipeline
    if level == "L0":
        from pccc.viz.circuit_view import circuit_picture

        return circuit_picture(_circuit_of(d.value), max_nodes=max_nodes)
    if level == "L2":
        from pccc.viz.layers_view import layered_picture

        if d.value.level == "L3":
            raise PcccError("an L3 kernel plan has no layer schedule of vectors left: draw it "
                            "at level L3, or draw its source circuit")
        return layered_picture(lower(d.value, "L2", pipe), max_nodes=max_nodes)
    if level == "L3":
        from pccc.viz.layers_view import plan_picture

        plan = d.plan if d.plan is not None and pipeline is None else \
            lower(d.value, "L3", pipe)
        return plan_picture(plan, max_nodes=max_nodes)
    raise PcccError(f"cannot draw level {level!r} (one of {', '.join(LEVELS)})")
