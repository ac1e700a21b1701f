"""The L2 and L3 pictures: the layer schedule, bottom-up.

Inputs sit on the bottom row; layer ``l`` is a product box (its partitions, elements, fan-in
and padding) under a sum box (its partitions with their tile shapes, blocks and tiles). An
arrow into a product box comes from every box whose values its elements read (the inputs, or
the sums of any earlier layer: skip connections are the long arrows), labelled with the number
of factors read; the arrow from a product box to its sum box is labelled with the sum edges
(L2: ``n x m`` for every sum vector and its children; L3: the tile entries that hold a
weight). Above ``max_nodes`` boxes, consecutive layers are collapsed into ranges, and the title
says so.

Example::

    pic = layered_picture(run_pipeline(circuit, "canonicalize,group-blocks,partition-layers"))
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from pccc.ir.circuit import Circuit, InputVector, ProductVector, SumVector
from pccc.ir.layered import LayeredCircuit
from pccc.ir.plan import KernelPlan, ProductLayer, SumLayer
from pccc.ir.stats import (
    ProductStats,
    SumStats,
    product_group_stats,
    product_partition_stats,
    sum_group_stats,
    sum_partition_stats,
)
from pccc.viz.model import Arrow, Box, Picture, count_text

#: partitions listed in a sum box; more are counted on one line
PARTITION_LINES = 4


@dataclass
class LayerInfo:
    """What the picture says about one layer (or a range of layers, added up)."""

    products: ProductStats = field(default_factory=ProductStats)
    sums: SumStats = field(default_factory=SumStats)
    sum_partitions: int = 0
    partition_lines: list[str] = field(default_factory=list)
    edges: int = 0
    """sum edges (L2) or weights (L3)"""
    reads: Counter[int] = field(default_factory=Counter)
    """factors read from each source: input box ``-1 - k`` or sum layer ``l >= 0``"""

    def add(self, other: LayerInfo) -> None:
        self.products.add(other.products)
        self.sums.add(other.sums)
        self.sum_partitions += other.sum_partitions
        self.edges += other.edges
        self.reads.update(other.reads)


def _partition_lines(shapes: list[str]) -> list[str]:
    if len(shapes) <= PARTITION_LINES:
        return shapes
    rest = len(shapes) - PARTITION_LINES + 1
    return shapes[:PARTITION_LINES - 1] + [f"... {count_text(rest, 'more partition')}"]


def _flat_factors(c: Circuit, vid: int, memo: dict[int, Counter[int]]) -> Counter[int]:
    """The non-product vectors an element of ``vid`` multiplies, with their multiplicity."""
    nd = c.nodes[vid]
    if not isinstance(nd, ProductVector):
        return Counter({vid: 1})
    if vid not in memo:
        out: Counter[int] = Counter()
        for ch in nd.children:
            out.update(_flat_factors(c, ch, memo))
        memo[vid] = out
    return memo[vid]


def layered_infos(lc: LayeredCircuit) -> tuple[list[LayerInfo], list[tuple[str, ...]]]:
    """The :class:`LayerInfo` of every layer of an L2 value, and the lines of its one input
    box."""
    c = lc.circuit
    layer_of = {s: li for li, layer in enumerate(lc.layers) for s in layer.sum_order()}
    memo: dict[int, Counter[int]] = {}
    infos = []
    for layer in lc.layers:
        info = LayerInfo(sum_partitions=len(layer.sums))
        for ps in product_group_stats(lc, layer):
            info.products.add(ps)
        shapes = []
        for g in layer.sums:
            st = sum_group_stats(lc.blocked, g.sums)
            info.sums.add(st)
            shapes.append(f"B={g.block} C={g.chunk}: {count_text(st.vectors, 'vector')}, "
                          f"{count_text(st.blocks, 'block')}, {count_text(st.tiles, 'tile')}")
        info.partition_lines = _partition_lines(shapes)
        for s in layer.sum_order():
            nd = c.nodes[s]
            for ch in nd.children:
                m = c.nodes[ch].n
                info.edges += nd.n * m
                for v, k in _flat_factors(c, ch, memo).items():
                    info.reads[layer_of.get(v, -1)] += k * m
        infos.append(info)
    inputs = [nd for nd in c.nodes if isinstance(nd, InputVector)]
    by_dist = Counter(nd.dist for nd in inputs)
    lines = (f"inputs: {count_text(len(inputs), 'vector')}, "
             f"{count_text(sum(nd.n for nd in inputs), 'node')}",
             *(f"{d}: {count_text(k, 'vector')}" for d, k in sorted(by_dist.items())))
    return infos, [lines]


def _slot_owners(plan: KernelPlan) -> np.ndarray:
    """The box that writes each node slot: ``-1 - k`` for input layer ``k``, ``l`` for sum
    layer ``l``, ``-1 - len(input_layers)`` for slots nobody writes (slot 0, padding)."""
    owner = np.full(plan.num_node_slots, -1 - len(plan.input_layers), dtype=np.int64)
    for k, ly in enumerate(plan.input_layers):
        owner[ly.node_start: ly.node_start + ly.n] = -1 - k
    for li, sl in enumerate(plan.sum_layers()):
        for sp in sl.partitions:
            slots = (sp.node_start[:, None] + np.arange(sp.block_size)).ravel()
            owner[slots[slots < len(owner)]] = li
    return owner


def plan_infos(plan: KernelPlan) -> tuple[list[LayerInfo], list[tuple[str, ...]]]:
    """The :class:`LayerInfo` of every layer of an L3 plan, and the lines of each input
    layer's box."""
    owner = _slot_owners(plan)
    nobody = -1 - len(plan.input_layers)
    infos = []
    for prod, sl in zip(plan.layers[0::2], plan.layers[1::2]):
        assert isinstance(prod, ProductLayer) and isinstance(sl, SumLayer)
        info = LayerInfo(sum_partitions=len(sl.partitions))
        shapes = []
        for sp in sl.partitions:
            st = sum_partition_stats(plan, sp)
            info.sums.add(st)
            info.edges += st.weights
            shapes.append(f"B={sp.block_size} C={sp.chunk_size}: "
                          f"{count_text(st.blocks, 'block')}, {count_text(st.tiles, 'tile')}")
        info.partition_lines = _partition_lines(shapes)
        for pp in prod.partitions:
            info.products.add(product_partition_stats(pp))
            src, k = np.unique(owner[pp.children.ravel()], return_counts=True)
            for s, n in zip(src.tolist(), k.tolist()):
                if s != nobody:
                    info.reads[s] += n
        infos.append(info)
    lines: list[tuple[str, ...]] = [(f"input layer {k}: {ly.dist}", count_text(ly.n, "node"))
                                    for k, ly in enumerate(plan.input_layers)]
    return infos, lines


def _product_lines(name: str, p: ProductStats) -> tuple[str, ...]:
    return (f"{name} products: {count_text(p.partitions, 'partition')}",
            f"{count_text(p.elements, 'element')}, fan-in up to {p.fanin}",
            f"{p.padding():.1%} padding")


def _sum_lines(name: str, info: LayerInfo, one: bool) -> tuple[str, ...]:
    s = info.sums
    head = f"{name} sums: {count_text(info.sum_partitions, 'partition')}"
    if s.vectors:
        head += f", {count_text(s.vectors, 'vector')}"
    body = info.partition_lines if one else [f"{count_text(s.blocks, 'block')}, "
                                             f"{count_text(s.tiles, 'tile')}"]
    return (head, *body, f"{s.padding():.1%} padding")


def _groups(n: int, max_boxes: int) -> list[range]:
    """Consecutive layers in ranges, so that two boxes per range fit in ``max_boxes``."""
    most = max(1, max_boxes // 2)
    size = -(-n // most) if n > most else 1
    return [range(lo, min(n, lo + size)) for lo in range(0, n, size)]


def layers_picture(title: str, infos: list[LayerInfo], inputs: list[tuple[str, ...]],
                   edge_word: str, *, max_nodes: int = 200) -> Picture:
    """The picture of layers described by :func:`layered_infos` or :func:`plan_infos`."""
    ranges = _groups(len(infos), max_nodes - len(inputs))
    group_of = {li: g for g, r in enumerate(ranges) for li in r}
    boxes = [Box(f"in{k}", lines, "input", 0) for k, lines in enumerate(inputs)]
    arrows = []
    for g, r in enumerate(ranges):
        info = LayerInfo()
        info.partition_lines = infos[r[0]].partition_lines
        for li in r:
            info.add(infos[li])
        name = f"layer {r[0]}" if len(r) == 1 else f"layers {r[0]}-{r[-1]}"
        boxes.append(Box(f"p{g}", _product_lines(name, info.products), "product", 2 * g + 1))
        boxes.append(Box(f"s{g}", _sum_lines(name, info, len(r) == 1), "sum", 2 * g + 2,
                         bold=g == len(ranges) - 1))
        into: Counter[str] = Counter()
        for src, k in info.reads.items():
            into[f"in{-1 - src}" if src < 0 else f"s{group_of[src]}"] += k
        for src_id in sorted(into, key=_box_order):
            if src_id != f"s{g}":  # (reads within one collapsed range: counted in the box)
                arrows.append(Arrow(src_id, f"p{g}", count_text(into[src_id], "factor")))
        arrows.append(Arrow(f"p{g}", f"s{g}", count_text(info.edges, edge_word)))
    notes: tuple[str, ...] = ()
    if len(ranges) < len(infos):
        notes = (f"collapsed: {count_text(len(infos), 'layer')} into "
                 f"{count_text(len(ranges), 'range')} of {len(ranges[0])} "
                 f"(more than {max_nodes:,} boxes)",)
    return Picture(title, tuple(boxes), tuple(arrows), notes)


def _box_order(box_id: str) -> tuple[int, int]:
    return (0 if box_id.startswith("in") else 1, int(box_id.lstrip("ins")))


def layered_picture(lc: LayeredCircuit, *, max_nodes: int = 200) -> Picture:
    """The L2 picture (see the module docstring)."""
    infos, inputs = layered_infos(lc)
    sums = sum(isinstance(nd, SumVector) for nd in lc.circuit.nodes)
    title = (f"L2 layer schedule: {count_text(len(infos), 'layer')}, "
             f"{count_text(sums, 'sum vector')}, {count_text(len(lc.circuit.nodes), 'vector')}")
    return layers_picture(title, infos, inputs, "sum edge", max_nodes=max_nodes)


def plan_picture(plan: KernelPlan, *, max_nodes: int = 200) -> Picture:
    """The L3 picture: the plan's layers and partitions (see the module docstring)."""
    infos, inputs = plan_infos(plan)
    title = (f"L3 kernel plan: {count_text(len(infos), 'layer')}, "
             f"{count_text(len(plan.input_layers), 'input layer')}, "
             f"{count_text(plan.num_node_slots, 'node slot')}")
    return layers_picture(title, infos, inputs, "weight", max_nodes=max_nodes)
