"""The L4 picture: a kernel schedule's launches, part by part, in launch order.

The bottom row holds the input layers, each with its forward launch and its statistics
launch; row ``l + 1`` holds the sum parts of sum layer ``l`` in their order, each box naming
its forward kernel with its launch number (``fwd #3 sum_fwd_b16_c16_f3_n1``), its tiles, its
blocks (lone, or sibling groups), how its element flows are written (stored or added), and its
backward launches with their numbers. An arrow goes from every launch that writes node rows a
part reads, labelled with the rows read. The backward's launches of no part or input layer
(zeroing rows, root flows) are listed in one box on the top row. Above ``max_nodes`` boxes, the
parts of each sum layer are collapsed into one box, and the title says so.

Example::

    pic = schedule_picture(run_pipeline(plan, "schedule-kernels"))
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from pccc.viz.model import Arrow, Box, Picture, count_text


def _row_owners(s: Any) -> np.ndarray:
    """The box that writes each node row: ``in{k}`` as ``-1 - k``, part ``i`` as ``i``, and
    ``-1 - len(inputs)`` for rows nobody writes."""
    owner = np.full(s.num_node_slots + 1, -1 - len(s.inputs), dtype=np.int64)
    for k, rows in enumerate(s.inputs):
        owner[rows.node_start: rows.node_start + rows.n] = -1 - k
    for i, p in enumerate(s.parts):
        for first, count in p.rows.tolist():
            owner[first: first + count] = i
    return owner


def _reads(s: Any, owner: np.ndarray) -> list[Counter[int]]:
    """Per part, the rows it reads from each writer (see :func:`_row_owners`)."""
    nobody = -1 - len(s.inputs)
    out = []
    for p in s.parts:
        got: Counter[int] = Counter()
        for first, count, _ in p.kids.tolist():
            src, k = np.unique(owner[first: first + count], return_counts=True)
            for w, n in zip(src.tolist(), k.tolist()):
                if w != nobody:
                    got[w] += n
        out.append(got)
    return out


def _tiles(launch: Any) -> str:
    parts = [f"{k}={v}" for k, v in launch.attrs().items()
             if k in ("bt", "bn", "warps", "fill", "max_splits", "nb", "kt")]
    return " ".join(parts)


def _launches(s: Any) -> tuple[dict[int, list[str]], dict[int, list[str]], list[str]]:
    """Lines of the launches of each part and of each input layer (``fwd #i kernel`` then
    its tiles), and the backward's other steps."""
    parts: dict[int, list[str]] = {}
    inputs: dict[int, list[str]] = {}
    host: list[str] = []
    for name, seq in (("fwd", s.forward), ("bwd", s.backward)):
        for n, launch in enumerate(seq):
            head = f"{name} #{n} {launch.kernel or launch.kind}"
            flags = [f for f in ("ratio", "scatter", "atomic") if getattr(launch, f)]
            lines = [head + (f" ({', '.join(flags)})" if flags else "")]
            if _tiles(launch):
                lines.append("  " + _tiles(launch))
            if launch.part >= 0:
                parts.setdefault(launch.part, []).extend(lines)
            elif launch.input >= 0:
                inputs.setdefault(launch.input, []).extend(lines)
            else:
                host.append(head)
    return parts, inputs, host


def _part_lines(i: int, p: Any, launches: list[str]) -> tuple[str, ...]:
    blocks = (count_text(p.nb, "lone block") if p.G == 1 else
              f"{count_text(p.groups, 'sibling group')} of {p.G} ({p.nb} blocks)")
    head = (f"part {i}: layer {p.layer} partition {p.partition}",
            f"B={p.B} C={p.C} fan-in {p.fanin}, {blocks}",
            f"element flows {'stored' if p.write == 'store' else 'added'}"
            + (", small" if p.small else ""))
    return head + tuple(launches)


def schedule_picture(s: Any, *, max_nodes: int = 200) -> Picture:
    """The L4 picture of a ``KernelSchedule`` (see the module docstring)."""
    owner = _row_owners(s)
    reads = _reads(s, owner)
    part_launches, input_launches, host = _launches(s)
    layer_parts = s.layer_parts()
    title = (f"L4 kernel schedule ({s.backend}, {s.precision}): "
             f"{count_text(len(s.parts), 'sum part')} in {count_text(len(layer_parts), 'layer')}, "
             f"{count_text(len(s.shapes()), 'kernel shape')}; {len(s.forward)} forward and "
             f"{count_text(len(s.backward), 'backward launch')}")
    boxes = [Box(f"in{k}", (f"input {k}: {count_text(r.n, 'row')}",
                            *input_launches.get(k, [])), "input", 0)
             for k, r in enumerate(s.inputs)]
    collapse = len(s.parts) + len(s.inputs) + 1 > max_nodes
    box_of = {i: (f"l{p.layer}" if collapse else f"k{i}") for i, p in enumerate(s.parts)}
    if collapse:
        for li, idx in enumerate(layer_parts):
            boxes.append(Box(f"l{li}", _layer_lines(s, li, idx), "kernel",
                             li + 1, bold=li == len(layer_parts) - 1))
    else:
        for i, p in enumerate(s.parts):
            boxes.append(Box(f"k{i}", _part_lines(i, p, part_launches.get(i, [])), "kernel",
                             p.layer + 1, bold=p.layer == len(layer_parts) - 1))
    zeroed = ("all rows" if s.flow_zero is None else
              count_text(int(s.flow_zero[:, 1].sum()) if len(s.flow_zero) else 0, "row"))
    boxes.append(Box("bwd", ("the backward begins with:", *host, f"flow rows zeroed: {zeroed}"),
                     "group", len(layer_parts) + 1))
    between: Counter[tuple[str, str]] = Counter()
    for i, got in enumerate(reads):
        for w, n in got.items():
            src = f"in{-1 - w}" if w < 0 else box_of[w]
            if src != box_of[i]:
                between[src, box_of[i]] += n
    arrows = tuple(Arrow(a, b, count_text(n, "row")) for (a, b), n in between.items())
    notes: tuple[str, ...] = ()
    if collapse:
        notes = (f"collapsed: {count_text(len(s.parts), 'sum part')} into "
                 f"{count_text(len(layer_parts), 'layer')} (more than {max_nodes:,} boxes)",)
    return Picture(title, tuple(boxes), arrows, notes)


def _layer_lines(s: Any, li: int, idx: list[int]) -> tuple[str, ...]:
    tags = Counter(s.parts[i].tag for i in idx)
    fwd = [n for n, ln in enumerate(s.forward) if ln.part in idx]
    bwd = [n for n, ln in enumerate(s.backward) if ln.part in idx]
    shapes = [f"{t} x{k}" for t, k in sorted(tags.items())]
    if len(shapes) > 4:
        shapes = shapes[:3] + [f"... {count_text(len(shapes) - 3, 'more shape')}"]
    return (f"layer {li}: {count_text(len(idx), 'sum part')}",
            f"{count_text(sum(s.parts[i].nb for i in idx), 'block')}", *shapes,
            f"fwd #{fwd[0]}-#{fwd[-1]}" if fwd else "no forward launch",
            f"bwd #{min(bwd)}-#{max(bwd)}" if bwd else "no backward launch")
