"""Print an L3 ``KernelPlan`` as ``.pcir`` text that a person can scan.

One statement per plan field, then one section per layer and partition, each headed by a line
whose comment states its counts (:mod:`pccc.ir.stats`: blocks, tiles, fan-in, padding share,
bytes); a blank line before every layer. Every array is a statement ``name i64[shape] = value``
with the value a nested list, ``elided`` (shape only), ``npz "file.npz" "key"`` (a sidecar),
or, when the one-line form would pass :data:`WIDTH` characters, wrapped over the following
lines with the index range of each line in its left margin::

    sum  // layer 1: 3 blocks, 6 tiles, 0.0% pad, weights 48 B, index 96 B
      part B=1 C=1  // 3 blocks x 2 chunks, 6 real, 0.0% pad, weights 48 B, index 96 B
        chunk_start i64[300, 2] =
            0:16 | [1, 2], [3, 4], [5, 6], ...
           16:32 | [33, 34], ...

A margin ``a:b`` holds items ``a`` to ``b - 1`` of the array's first axis; a row too long for one
line is cut along the next axis, ``i, a:b`` (row ``i``, items ``a`` to ``b - 1``). The comments
are for people: the parser (:mod:`pccc.ir.parse_plan`) skips them and checks the margins.

Example::

    text = to_text(plan)                                  # everything, wrapped
    text, arrays = plan_text_npz(plan, "plan.npz")        # arrays -> np.savez("plan.npz", ...)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pccc.ir.lexer import quote
from pccc.ir.plan import PLAN_VERSION, KernelPlan, ProductLayer, SumLayer
from pccc.ir.printer import format_array, format_attrs, format_key, header
from pccc.ir.stats import (
    ProductStats,
    SumStats,
    product_partition_stats,
    sum_partition_stats,
)

#: the width long arrays are wrapped at
WIDTH = 100


def fmt_bytes(n: float) -> str:
    """``812 B``, ``4.1 KiB``, ``1.2 MiB``, ``3.0 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def plural(n: int, word: str) -> str:
    """``1 block``, ``2 blocks``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def wrap_list(head: str, items: Sequence[str]) -> list[str]:
    """``head [a, b, ...]`` wrapped at :data:`WIDTH` characters, continuation lines aligned
    after the bracket."""
    first = head + " ["
    pad = " " * len(first)
    out: list[str] = []
    line = first
    for j, it in enumerate(items):
        tok = it + ("," if j + 1 < len(items) else "")
        fresh = line in (first, pad)
        if not fresh and len(line) + 1 + len(tok) + 1 > WIDTH:
            out.append(line)
            line, fresh = pad, True
        line += tok if fresh else " " + tok
    return out + [line + "]"]


def _margin_width(shape: tuple[int, ...]) -> int:
    """The widest margin any line of an array of this shape can have."""
    best = 0
    for k, d in enumerate(shape):
        best = max(best, sum(len(str(e)) + 2 for e in shape[:k]) + 2 * len(str(d)) + 1)
    return best


def _groups(items: list[str], budget: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` ranges of ``items`` whose ``", "``-joined text fits ``budget`` (one item
    at least per range)."""
    out: list[tuple[int, int]] = []
    lo, used = 0, -2
    for i, it in enumerate(items):
        if i > lo and used + 2 + len(it) > budget:
            out.append((lo, i))
            lo, used = i, -2
        used += 2 + len(it)
    if items:
        out.append((lo, len(items)))
    return out


def _rows(a: np.ndarray, prefix: tuple[int, ...], budget: int
          ) -> list[tuple[str, list[str]]]:
    """(margin, items) of each line of ``a`` (``a`` is the sub-array at ``prefix``)."""
    if a.ndim == 1:
        items = list(map(repr if a.dtype.kind == "f" else str, a.tolist()))
    else:
        items = [format_array(r) for r in a]
        if items and max(map(len, items)) > budget:
            return [line for i in range(a.shape[0]) for line in _rows(a[i], prefix + (i,),
                                                                      budget)]
    head = "".join(f"{i}, " for i in prefix)
    return [(f"{head}{lo}:{hi}", items[lo:hi]) for lo, hi in _groups(items, budget)]


def array_lines(head: str, a: np.ndarray, indent: str) -> list[str]:
    """``head`` (``name dtype[shape] = ``) and the value: on the same line when that fits in
    :data:`WIDTH`, else wrapped with margins, its lines indented by ``indent`` + 2."""
    one = head + format_array(a)
    if len(one) <= WIDTH or a.size == 0:
        return [one]
    pad = indent + "  "
    m = _margin_width(a.shape)
    lines = _rows(a, (), WIDTH - len(pad) - m - 3)
    return [head.rstrip()] + [f"{pad}{mg:>{m}} | {', '.join(items)}" for mg, items in lines]


class Arrays:
    """How a plan's arrays print: inline (wrapped), elided above a size, or into a sidecar."""

    def __init__(self, elide_above: int | None = None, sidecar: str | None = None):
        self.elide_above = elide_above
        self.sidecar = sidecar
        self.saved: dict[str, np.ndarray] = {}

    def stmt(self, name: str, a: np.ndarray, indent: str = "") -> list[str]:
        dt = "f64" if np.issubdtype(a.dtype, np.floating) else "i64"
        head = f"{indent}{name} {dt}[{', '.join(str(d) for d in a.shape)}] = "
        if self.sidecar is not None:
            key = f"a{len(self.saved)}"
            self.saved[key] = a
            return [head + f"npz {quote(self.sidecar)} {quote(key)}"]
        if self.elide_above is not None and a.size > self.elide_above:
            return [head + "elided"]
        return array_lines(head, a, indent)


def _sum_note(st: SumStats) -> str:
    return (f"{st.padding():.1%} pad, weights {fmt_bytes(st.tile_bytes)}, index "
            f"{fmt_bytes(st.index_bytes)}")


def _prod_note(st: ProductStats) -> str:
    return (f"{plural(st.elements, 'element')}, fan-in {st.fanin}, {st.padding():.1%} pad, "
            f"{fmt_bytes(st.index_bytes)}")


def _plan_note(plan: KernelPlan) -> list[str]:
    sums = SumStats()
    for ly in plan.sum_layers():
        for sp in ly.partitions:
            sums.add(sum_partition_stats(plan, sp))
    return [f"// {plan.num_vars} variables, {plan.num_node_slots} node slots, "
            f"{plural(len(plan.sum_layers()), 'layer')}",
            f"// {len(plan.params)} weights ({fmt_bytes(plan.params.nbytes)}, "
            f"{sums.padding():.1%} pad in the tiles), {len(plan.input_params)} input "
            f"parameters ({fmt_bytes(plan.input_params.nbytes)})"]


def _layer_lines(plan: KernelPlan, i: int, layer: ProductLayer | SumLayer, arr: Arrays
                 ) -> list[str]:
    lines = [""]
    if isinstance(layer, ProductLayer):
        parts = [product_partition_stats(pp) for pp in layer.partitions]
        total = ProductStats()
        for st in parts:
            total.add(st)
        lines.append(f"product num_elem_slots={layer.num_elem_slots} reserved={layer.reserved}"
                     f"  // layer {i // 2}: {_prod_note(total)}")
        for pp, st in zip(layer.partitions, parts):
            lines.append(f"  part elem_start={pp.elem_start}  // {_prod_note(st)}")
            lines += arr.stmt("children", pp.children, "    ")
        return lines
    sums = [sum_partition_stats(plan, sp) for sp in layer.partitions]
    whole = SumStats()
    for ss in sums:
        whole.add(ss)
    lines.append(f"sum  // layer {i // 2}: {plural(whole.blocks, 'block')}, "
                 f"{plural(whole.grid, 'tile')}, {_sum_note(whole)}")
    for sp, ss in zip(layer.partitions, sums):
        lines.append(f"  part B={sp.block_size} C={sp.chunk_size}  // "
                     f"{plural(sp.num_blocks, 'block')} x {plural(sp.max_chunks, 'chunk')}, "
                     f"{ss.tiles} real, {_sum_note(ss)}")
        for name in ("node_start", "chunk_start", "param_start", "num_chunks"):
            lines += arr.stmt(name, getattr(sp, name), "    ")
        if sp.reads is not None:
            lines += arr.stmt("reads", sp.reads, "    ")
    return lines


def plan_lines(plan: KernelPlan, arr: Arrays) -> list[str]:
    """The statements of a plan's text, after its header line."""
    roots = f"num_roots={plan.num_roots} " if plan.num_roots != 1 else ""  # (1: the default)
    lines = [f"plan num_node_slots={plan.num_node_slots} {roots}num_vars={plan.num_vars} "
             f"reserved_params={plan.reserved_params} root_slot={plan.root_slot} "
             f"version={PLAN_VERSION}"]
    if plan.meta:
        lines.append("meta " + " ".join(f"{k}={quote(v)}" for k, v in plan.meta))
    lines += _plan_note(plan)
    lines += arr.stmt("var_cards", plan.var_cards)
    for ly in plan.input_layers:
        attrs: dict[str, Any] = dict(ly.attrs)
        attrs.update(node_start=ly.node_start, param_size=ly.param_size)
        lines += ["", f"input {ly.dist} {format_attrs(attrs)}  // {plural(ly.n, 'node')}, "
                      f"{fmt_bytes(8 * ly.n * ly.param_size)} of parameters"]
        lines += arr.stmt("vars", ly.vars, "  ")
        lines += arr.stmt("param_start", ly.param_start, "  ")
        if ly.values is not None:
            lines += arr.stmt("values", ly.values, "  ")
    for i, layer in enumerate(plan.layers):
        lines += _layer_lines(plan, i, layer, arr)
    lines.append("")
    for name in ("params", "param_group", "group_size", "input_params"):
        lines += arr.stmt(name, getattr(plan, name))
    for key, idx in plan.param_map.items():
        lines += arr.stmt(f"map {format_key(key)}", idx)
    lines += wrap_list("input_keys", [format_key(k) for k in sorted(plan.input_param_keys)])
    return lines


def print_plan(plan: KernelPlan, *, elide_above: int | None = None) -> str:
    """The text of a plan (arrays above ``elide_above`` elements as their shape only)."""
    return header("L3") + "\n" + "\n".join(plan_lines(plan, Arrays(elide_above))) + "\n"


def plan_text_npz(plan: KernelPlan, sidecar: str) -> tuple[str, dict[str, np.ndarray]]:
    """The text of a plan whose arrays go to the sidecar ``sidecar``, and those arrays."""
    arr = Arrays(sidecar=sidecar)
    return header("L3") + "\n" + "\n".join(plan_lines(plan, arr)) + "\n", arr.saved
