"""What to draw at each level, from whatever was given: a value of any level, a file, a module.

- ``L0``: the circuit (of an L1 or L2 value, the circuit inside it, its root wrapper taken
  off; of a compiled module or ``.pccm`` file, its source circuit);
- ``L2``: the layer schedule, made by running the pipeline (default: ``training``) from the
  value's level through ``partition-layers``;
- ``L3``: the kernel plan's layers (the pipeline run down to L3; a module's own plan);
- ``L4``: the kernel schedule (the plan run through ``schedule-kernels``, with its default
  options unless the pipeline names it with others).

A value draws at its own level and below, except that an L1 or L2 value gives its source
circuit for L0 (an L3 plan keeps no circuit, an L4 schedule no plan).

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
LEVELS = ("L0", "L2", "L3", "L4")
#: every level, in order
ORDER = ("L0", "L1", "L2", "L3", "L4")


@dataclass(frozen=True)
class Drawable:
    """An IR value to draw, with the plan and the pipeline it came with (a compiled
    module's)."""

    value: Any
    """an IR value of level L0 to L4"""
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
    if getattr(obj, "level", None) in ORDER:
        return Drawable(obj)
    if hasattr(obj, "to_circuit") and hasattr(obj, "current_plan"):
        return Drawable(obj.to_circuit(), obj.current_plan())
    raise PcccError(f"cannot draw a {type(obj).__name__}: expected a circuit, an IR value of "
                    "level L0 to L4, a compiled module or a file name")


def lower(value: Any, level: str, pipeline: str | None = None) -> Any:
    """``value`` run through ``pipeline`` (default ``training``) from its level until the
    first pass whose output is ``level``; for L4, a pipeline that ends at L3 goes on with
    ``schedule-kernels``.

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
    if level == "L4" and steps and steps[-1].info.output_level == "L3":
        steps += parse_pipeline("schedule-kernels", start_level="L3")
    first = next((i for i, st in enumerate(steps) if st.info.input_level == start), None)
    last = next((i for i, st in enumerate(steps) if st.info.output_level == level
                 and first is not None and i >= first), None)
    if first is None or last is None:
        raise PcccError(f"pipeline {text!r} does not lead from {start} to {level}")
    return run_pipeline(value, steps[first:last + 1], verify=False)


def _circuit_of(value: Any) -> Any:
    if value.level == "L0":
        return value
    from pccc.ir.parse_lowered import source_of

    return source_of(value)


def _at(d: Drawable, level: str, pipeline: str | None) -> Any:
    """The value of ``d`` at ``level`` (see the module docstring)."""
    have = d.value.level
    if ORDER.index(have) > ORDER.index(level) and not (level == "L0" and have in ("L1", "L2")):
        kept = {"L3": "a kernel plan keeps no circuit", "L4": "a kernel schedule keeps no plan"}
        raise PcccError(f"cannot draw an {have} value at {level} ({kept.get(have, '')}): draw "
                        f"it at {have}, or draw its source")
    if level == "L0":
        return _circuit_of(d.value)
    if level == "L3" and d.plan is not None and pipeline is None:
        return d.plan
    if level == "L4":
        try:
            import pccc.ir.schedule  # noqa: F401
        except ModuleNotFoundError:
            raise PcccError("L4 drawing needs the Triton kernel schedule (pccc.ir.schedule), "
                            "which this installation lacks") from None
    value = d.plan if d.plan is not None and ORDER.index(level) >= 3 and pipeline is None \
        else d.value
    return lower(value, level, pipeline or (None if value is d.plan else d.pipeline))


def picture_of(d: Drawable, level: str, *, max_nodes: int = 200,
               pipeline: str | None = None) -> Picture:
    """The picture of ``d`` at ``level`` (see the module docstring).

    Raises:
        PcccError: an unknown level, a level the value cannot be drawn at, ``max_nodes < 1``.
    """
    if max_nodes < 1:
        raise PcccError(f"max_nodes must be at least 1, got {max_nodes}")
    if level not in LEVELS:
        raise PcccError(f"cannot draw level {level!r} (one of {', '.join(LEVELS)})")
    value = _at(d, level, pipeline)
    if level == "L0":
        from pccc.viz.circuit_view import circuit_picture

        return circuit_picture(value, max_nodes=max_nodes)
    if level == "L2":
        from pccc.viz.layers_view import layered_picture

        return layered_picture(value, max_nodes=max_nodes)
    if level == "L3":
        from pccc.viz.layers_view import plan_picture

        return plan_picture(value, max_nodes=max_nodes)
    from pccc.viz.schedule_view import schedule_picture

    return schedule_picture(value, max_nodes=max_nodes)
