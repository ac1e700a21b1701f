"""Print the lowered levels (L1 blocked, L2 layered, L3 ``KernelPlan``) as ``.pcir`` text.

L1 and L2 are the L0 text of their circuit with the header naming the level and a few more
statements after it (``blocks`` lines; ``layer``, ``sums`` and ``products`` lines)::

    blocks %4 B=64 C=64
    layer 0
      sums B=64 C=64 [%4, %9]
      products fanin=3 runs=2

L3 is a list of statements, one per plan field, layer and partition; every array is a
statement ``name i64[shape] = value`` whose value is a nested list, ``elided`` (shape only) or
``npz "file.npz" "key"`` (a sidecar). The grammar is in ``docs/ir.md``. Importing this module
registers the printers with :func:`pccc.ir.printer.to_text`.

Example::

    text = to_text(plan, elide_above=64)
    text, arrays = lowered_text_npz(plan, "plan.npz")   # arrays -> np.savez("plan.npz", ...)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pccc.ir.blocked import BlockedCircuit
from pccc.ir.circuit import Circuit
from pccc.ir.layered import LayeredCircuit
from pccc.ir.lexer import Key, quote
from pccc.ir.plan import PLAN_VERSION, KernelPlan, ProductLayer, SumLayer
from pccc.ir.printer import (
    format_array,
    format_attrs,
    format_key,
    header,
    register_printer,
    to_text,
    to_text_npz,
)


class _Arrays:
    """How arrays print: inline, elided above a size, or into a sidecar."""

    def __init__(self, elide_above: int | None = None, sidecar: str | None = None):
        self.elide_above = elide_above
        self.sidecar = sidecar
        self.saved: dict[str, np.ndarray] = {}

    def stmt(self, name: str, a: np.ndarray, indent: str = "") -> str:
        dt = "f64" if np.issubdtype(a.dtype, np.floating) else "i64"
        head = f"{indent}{name} {dt}[{', '.join(str(d) for d in a.shape)}] = "
        if self.sidecar is not None:
            key = f"a{len(self.saved)}"
            self.saved[key] = a
            return head + f"npz {quote(self.sidecar)} {quote(key)}"
        if self.elide_above is not None and a.size > self.elide_above:
            return head + "elided"
        return head + format_array(a)


def _circuit_text(c: Circuit, level: str, elide_above: int | None, sidecar: str | None
                  ) -> tuple[str, dict[str, np.ndarray]]:
    if sidecar is not None:
        text, arrays = to_text_npz(c, sidecar)
    else:
        text, arrays = to_text(c, elide_above=elide_above), {}
    first, rest = text.split("\n", 1)
    assert first == header("L0")
    return header(level) + "\n" + rest, arrays


def _blocks_lines(bc: BlockedCircuit) -> list[str]:
    return [f"blocks %{v} B={B} C={C}" for v, (B, C) in bc.blocks.items()]


def _layer_lines(lc: LayeredCircuit) -> list[str]:
    lines = []
    for li, layer in enumerate(lc.layers):
        lines.append(f"layer {li}")
        for g in layer.sums:
            lines.append(f"  sums B={g.block} C={g.chunk} [" +
                         ", ".join(f"%{s}" for s in g.sums) + "]")
        for p in layer.products:
            lines.append(f"  products fanin={p.fanin} runs={p.runs}")
    return lines


def _print_l1(bc: BlockedCircuit, *, elide_above: int | None = None) -> str:
    text, _ = _circuit_text(bc.circuit, "L1", elide_above, None)
    return text + "\n".join(_blocks_lines(bc)) + "\n"


def _print_l2(lc: LayeredCircuit, *, elide_above: int | None = None) -> str:
    text, _ = _circuit_text(lc.circuit, "L2", elide_above, None)
    return text + "\n".join(_blocks_lines(lc.blocked) + _layer_lines(lc)) + "\n"


def _plan_lines(plan: KernelPlan, arr: _Arrays) -> list[str]:
    roots = f"num_roots={plan.num_roots} " if plan.num_roots != 1 else ""  # (1: the default)
    lines = [f"plan num_node_slots={plan.num_node_slots} {roots}num_vars={plan.num_vars} "
             f"reserved_params={plan.reserved_params} root_slot={plan.root_slot} "
             f"version={PLAN_VERSION}"]
    if plan.meta:
        lines.append("meta " + " ".join(f"{k}={quote(v)}" for k, v in plan.meta))
    lines.append(arr.stmt("var_cards", plan.var_cards))
    for ly in plan.input_layers:
        attrs: dict[str, Any] = dict(ly.attrs)
        attrs.update(node_start=ly.node_start, param_size=ly.param_size)
        lines.append(f"input {ly.dist} {format_attrs(attrs)}")
        lines.append(arr.stmt("vars", ly.vars, "  "))
        lines.append(arr.stmt("param_start", ly.param_start, "  "))
        if ly.values is not None:
            lines.append(arr.stmt("values", ly.values, "  "))
    for layer in plan.layers:
        if isinstance(layer, ProductLayer):
            lines.append(f"product num_elem_slots={layer.num_elem_slots} "
                         f"reserved={layer.reserved}")
            for pp in layer.partitions:
                lines.append(f"  part elem_start={pp.elem_start}")
                lines.append(arr.stmt("children", pp.children, "    "))
        else:
            assert isinstance(layer, SumLayer)
            lines.append("sum")
            for sp in layer.partitions:
                lines.append(f"  part B={sp.block_size} C={sp.chunk_size}")
                for name in ("node_start", "chunk_start", "param_start", "num_chunks"):
                    lines.append(arr.stmt(name, getattr(sp, name), "    "))
    for name in ("params", "param_group", "group_size", "input_params"):
        lines.append(arr.stmt(name, getattr(plan, name)))
    for key, idx in plan.param_map.items():
        lines.append(arr.stmt(f"map {format_key(key)}", idx))
    keys = ", ".join(format_key(k) for k in sorted(plan.input_param_keys))
    lines.append(f"input_keys [{keys}]")
    return lines


def _print_l3(plan: KernelPlan, *, elide_above: int | None = None) -> str:
    return header("L3") + "\n" + "\n".join(_plan_lines(plan, _Arrays(elide_above))) + "\n"


register_printer("L1", _print_l1)
register_printer("L2", _print_l2)
register_printer("L3", _print_l3)


def lowered_text_npz(value: Any, sidecar: str) -> tuple[str, dict[str, np.ndarray]]:
    """Text of a value of any level whose arrays go to the sidecar ``.npz`` named ``sidecar``.

    Returns:
        The text and the arrays to save (``np.savez(path, **arrays)``).
    """
    if isinstance(value, Circuit):
        return to_text_npz(value, sidecar)
    if isinstance(value, KernelPlan):
        arr = _Arrays(sidecar=sidecar)
        text = header("L3") + "\n" + "\n".join(_plan_lines(arr=arr, plan=value)) + "\n"
        return text, arr.saved
    if isinstance(value, BlockedCircuit):
        text, arrays = _circuit_text(value.circuit, "L1", None, sidecar)
        return text + "\n".join(_blocks_lines(value)) + "\n", arrays
    if isinstance(value, LayeredCircuit):
        text, arrays = _circuit_text(value.circuit, "L2", None, sidecar)
        extra = _blocks_lines(value.blocked) + _layer_lines(value)
        return text + "\n".join(extra) + "\n", arrays
    raise TypeError(f"no printer for {type(value).__name__}")


def write_pcir_any(value: Any, path: str | Path, *, inline_below: int = 4096) -> None:
    """Write a value of any level to ``path``: arrays inline when the value is small, else in
    a sidecar ``<stem>.npz`` next to it."""
    p = Path(path)
    total = _array_elements(value)
    if total < inline_below:
        p.write_text(to_text(value))
        return
    name = p.name[:-5] if p.name.endswith(".pcir") else p.name
    sidecar = f"{name}.npz"
    text, arrays = lowered_text_npz(value, sidecar)
    np.savez(p.parent / sidecar, **arrays)  # type: ignore[arg-type]
    p.write_text(text)


def _array_elements(value: Any) -> int:
    c = getattr(value, "circuit", value)
    if isinstance(c, Circuit):
        return sum(int(a.size) for a in c.params.values())
    assert isinstance(value, KernelPlan)
    return int(value.params.size + value.input_params.size + value.param_group.size)


__all__ = ["Key", "lowered_text_npz", "write_pcir_any"]
