"""Print the lowered levels (L1 blocked, L2 layered, L3 ``KernelPlan``) as ``.pcir`` text.

L1 and L2 print what they add to their source circuit, the L0 circuit they were lowered from,
naming its node vectors by id: L1 the tile shape of every sum vector, L2 its layers and
partitions (the tile shapes follow from the partitions)::

    pcir 1 L2
    source sha256="3b5d..." path="001_canonicalize.pcir"
    wrap-root %12  // = sum(%11) n=4 param=@__root__, identity weights
    layer 0  // 2 sums in 1 partition: 2 blocks, 2 tiles, 0.0% pad
      sums B=64 C=64 [%4, %9]
      products fanin=3 runs=2  // 128 elements, 12.5% pad

The source circuit is named by its digest (:mod:`pccc.ir.digest`) and, optionally, a file
(:class:`SourceRef`), or embedded: its L0 statements follow the level's own (``to_text``'s
default, so that ``parse(to_text(x)) == x`` needs nothing else). ``wrap-root`` says that the
circuit is the source with its root wrapped by :func:`pccc.ir.blocked.wrap_root`.

L3 is printed by :mod:`pccc.ir.print_plan`. The grammar is in ``docs/ir.md``. Importing this
module registers the printers with :func:`pccc.ir.printer.to_text`.

Example::

    text = to_text(blocked)                                   # the source embedded
    text = to_text(blocked, source=SourceRef("c.pcir"))       # named by digest and file
    text, arrays = lowered_text_npz(plan, "plan.npz")   # arrays -> np.savez("plan.npz", ...)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pccc.ir.blocked import ROOT_KEY, BlockedCircuit, split_root
from pccc.ir.circuit import Circuit
from pccc.ir.digest import ALGORITHM, circuit_digest
from pccc.ir.layered import Layer, LayeredCircuit
from pccc.ir.lexer import Key, quote
from pccc.ir.plan import KernelPlan
from pccc.ir.print_plan import plan_text_npz, plural, print_plan, wrap_list
from pccc.ir.printer import (
    header,
    register_printer,
    to_text,
    to_text_npz,
)
from pccc.ir.stats import layer_stats, product_group_stats


@dataclass(frozen=True)
class SourceRef:
    """Name the source circuit of an L1 or L2 text by its digest instead of embedding it.

    The text then holds ``source sha256="..." [path="..."]``; it parses back given the circuit
    (``parse(text, source=circuit)``) or, with a ``path``, by reading that file."""

    path: str | None = None
    """a ``.pcir`` file holding the circuit, relative to the text's folder"""
    note: str | None = None
    """a comment for the reader, such as where the circuit was printed"""


def ref_list(head: str, ids: Sequence[int]) -> list[str]:
    """``head [%a, %b, ...]`` wrapped at 100 characters, continuation lines aligned after the
    bracket."""
    return wrap_list(head, [f"%{i}" for i in ids])


def _source_lines(c: Circuit, source: SourceRef | None, elide_above: int | None,
                  sidecar: str | None) -> tuple[list[str], list[str], dict[str, np.ndarray]]:
    """The statements naming the source circuit of ``c`` (and its root wrapper), the L0
    statements of the embedded source (none for a reference), and their sidecar arrays."""
    src, wrapped = split_root(c)
    head: list[str] = []
    tail: list[str] = []
    arrays: dict[str, np.ndarray] = {}
    if source is not None:
        line = f"source {ALGORITHM}={quote(circuit_digest(src))}"
        if source.path is not None:
            line += f" path={quote(source.path)}"
        head.append(line + (f"  // {source.note}" if source.note else ""))
    else:
        if sidecar is not None:
            text, arrays = to_text_npz(src, sidecar)
        else:
            text = to_text(src, elide_above=elide_above)
        tail = ["// the source circuit"] + text.rstrip("\n").split("\n")[1:]
    if wrapped:
        root = src.nodes[src.root]
        head.append(f"wrap-root %{len(src.nodes)}  // = sum(%{src.root}) n={root.n} "
                    f"param=@{ROOT_KEY}, identity weights")
    return head, tail, arrays


def blocks_lines(blocks: Mapping[int, tuple[int, int]]) -> list[str]:
    """``blocks B=.. C=.. [%a, ...]``: the vectors of each tile shape, largest shapes first."""
    by_shape: dict[tuple[int, int], list[int]] = {}
    for v, shape in blocks.items():
        by_shape.setdefault(shape, []).append(v)
    lines: list[str] = []
    for (B, C), ids in sorted(by_shape.items(), reverse=True):
        lines += ref_list(f"blocks B={B} C={C}", sorted(ids))
    return lines


def implied_blocks(layers: Sequence[Layer]) -> dict[int, tuple[int, int]]:
    """The tile shape of every sum vector as its (first) partition states it."""
    out: dict[int, tuple[int, int]] = {}
    for layer in layers:
        for g in layer.sums:
            for v in g.sums:
                out.setdefault(v, (g.block, g.chunk))
    return out


def _layer_lines(lc: LayeredCircuit) -> list[str]:
    """Each layer, its sum partitions' counts on its line and each product partition's on
    its own."""
    lines = []
    for li, layer in enumerate(lc.layers):
        sums, _ = layer_stats(lc, layer)
        lines.append(f"layer {li}  // {plural(sums.vectors, 'sum')} in "
                     f"{plural(len(layer.sums), 'partition')}: {plural(sums.blocks, 'block')}, "
                     f"{plural(sums.grid, 'tile')}, {sums.padding():.1%} pad")
        for g in layer.sums:
            lines += ref_list(f"  sums B={g.block} C={g.chunk}", g.sums)
        for p, st in zip(layer.products, product_group_stats(lc, layer)):
            lines.append(f"  products fanin={p.fanin} runs={p.runs}  // "
                         f"{plural(st.elements, 'element')}, {st.padding():.1%} pad")
    return lines


def _l1_text(bc: BlockedCircuit, source: SourceRef | None, elide_above: int | None,
             sidecar: str | None) -> tuple[str, dict[str, np.ndarray]]:
    head, tail, arrays = _source_lines(bc.circuit, source, elide_above, sidecar)
    lines = [header("L1")] + head + blocks_lines(bc.blocks) + tail
    return "\n".join(lines) + "\n", arrays


def _l2_text(lc: LayeredCircuit, source: SourceRef | None, elide_above: int | None,
             sidecar: str | None) -> tuple[str, dict[str, np.ndarray]]:
    head, tail, arrays = _source_lines(lc.circuit, source, elide_above, sidecar)
    implied = implied_blocks(lc.layers)
    extra = {v: s for v, s in lc.blocked.blocks.items() if implied.get(v) != s}
    lines = [header("L2")] + head + blocks_lines(extra) + _layer_lines(lc) + tail
    return "\n".join(lines) + "\n", arrays


def _print_l1(bc: BlockedCircuit, *, elide_above: int | None = None,
              source: SourceRef | None = None) -> str:
    return _l1_text(bc, source, elide_above, None)[0]


def _print_l2(lc: LayeredCircuit, *, elide_above: int | None = None,
              source: SourceRef | None = None) -> str:
    return _l2_text(lc, source, elide_above, None)[0]


register_printer("L1", _print_l1)
register_printer("L2", _print_l2)
register_printer("L3", print_plan)


def lowered_text_npz(value: Any, sidecar: str) -> tuple[str, dict[str, np.ndarray]]:
    """Text of a value of any level whose arrays go to the sidecar ``.npz`` named ``sidecar``.

    Returns:
        The text and the arrays to save (``np.savez(path, **arrays)``).
    """
    if isinstance(value, Circuit):
        return to_text_npz(value, sidecar)
    if isinstance(value, KernelPlan):
        return plan_text_npz(value, sidecar)
    if isinstance(value, BlockedCircuit):
        return _l1_text(value, None, None, sidecar)
    if isinstance(value, LayeredCircuit):
        return _l2_text(value, None, None, sidecar)
    if getattr(value, "level", None) == "L4":
        from pccc.ir.print_schedule import schedule_text_npz

        return schedule_text_npz(value, sidecar)
    raise TypeError(f"no printer for {type(value).__name__}")


def write_pcir_any(value: Any, path: str | Path, *, inline_below: int = 4096) -> None:
    """Write a value of any level to ``path``: arrays inline when the value is small, else in
    a sidecar ``<stem>.npz`` next to it; atomically, both files or neither
    (:func:`pccc.files.atomic_writes`)."""
    from pccc.files import atomic_write, atomic_writes

    p = Path(path)
    total = _array_elements(value)
    if total < inline_below:
        with atomic_write(p) as f:
            f.write(to_text(value).encode("utf-8"))
        return
    name = p.name[:-5] if p.name.endswith(".pcir") else p.name
    sidecar = f"{name}.npz"
    text, arrays = lowered_text_npz(value, sidecar)
    with atomic_writes(p.parent / sidecar, p) as (g, f):
        np.savez(g, **arrays)  # type: ignore[arg-type]
        f.write(text.encode("utf-8"))


def _array_elements(value: Any) -> int:
    c = getattr(value, "circuit", value)
    if isinstance(c, Circuit):
        return sum(int(a.size) for a in c.params.values())
    if getattr(value, "level", None) == "L4":
        return sum(int(p.kids.size + p.blocks.size + p.sib.size + p.rows.size)
                   for p in value.parts)
    assert isinstance(value, KernelPlan)
    return int(value.params.size + value.input_params.size + value.param_group.size)


__all__ = ["Key", "lowered_text_npz", "write_pcir_any"]
