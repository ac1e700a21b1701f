"""``partition-layers`` (L1 -> L2): alternating product/sum layers, partitioned by fan-in.

A sum vector goes to the layer one above the highest sum or input it reads (through its
product children too); elements read any earlier layer directly, so skip connections need no
identity layers. Within a layer, sum vectors of one tile shape ``(B, C)`` are sorted by chunk
count and cut greedily into partitions whose chunk padding stays within ``tolerance``; the
element runs they read are cut the same way by fan-in into product partitions. Adjacent
partitions are then merged, cheapest first, until at most ``max-partitions`` remain of each
kind (partitions of different tile shapes never merge).
"""

from __future__ import annotations

from collections import defaultdict

from pccc.ir.blocked import BlockedCircuit
from pccc.ir.circuit import Circuit
from pccc.ir.errors import PassError
from pccc.ir.layered import (
    Layer,
    LayeredCircuit,
    ProductGroup,
    SumGroup,
    factor_counts,
    heights,
)
from pccc.passes.registry import register_pass

# a segment: (key that must match to merge, [(width, length) per item], stats); its padding is
# (max width - width) * length summed over the items
_Stats = tuple[int, int, int]  # (max width, sum of lengths, sum of width * length)
_Seg = tuple[object, list[tuple[int, int]], _Stats]


def _pad(st: _Stats) -> tuple[int, int]:
    """(padding, padded total) of a segment."""
    top, ln, wl = st
    return top * ln - wl, top * ln


def _cut(key: object, items: list[tuple[int, int]], tol: float) -> list[_Seg]:
    """Greedy cut of ``items``, in order, into segments whose padding stays within ``tol``."""
    segs: list[_Seg] = []
    first = 0  # the current segment is items[first:i]; its stats are (top, ln, wl)
    top = ln = wl = 0
    for i, (w, n) in enumerate(items):  # (_pad inlined: this loops over every run)
        t, s, p = max(top, w), ln + n, wl + w * n
        if i > first and t * s - p > tol * (t * s):
            segs.append((key, items[first:i], (top, ln, wl)))
            first, t, s, p = i, w, n, w * n
        top, ln, wl = t, s, p
    if len(items) > first:
        segs.append((key, items[first:], (top, ln, wl)))
    return segs


def _merge(segs: list[_Seg], limit: int) -> list[_Seg]:
    """Merge adjacent same-key segments, cheapest extra padding first, down to ``limit``."""
    segs = list(segs)
    while len(segs) > limit:
        best, cost = -1, 0
        for i in range(len(segs) - 1):
            (ka, _, sa), (kb, _, sb) = segs[i], segs[i + 1]
            if ka != kb:
                continue
            merged = (max(sa[0], sb[0]), sa[1] + sb[1], sa[2] + sb[2])
            extra = _pad(merged)[0] - _pad(sa)[0] - _pad(sb)[0]
            if best < 0 or extra < cost:
                best, cost = i, extra
        if best < 0:
            break
        (k, ia, sa), (_, ib, sb) = segs[best], segs[best + 1]
        segs[best: best + 2] = [(k, ia + ib, (max(sa[0], sb[0]), sa[1] + sb[1], sa[2] + sb[2]))]
    return segs


def _sum_groups(bc: BlockedCircuit, vids: list[int], tol: float, limit: int,
                fan: list[int]) -> list[SumGroup]:
    c = bc.circuit
    grid = {v: bc.grid(v) for v in vids}
    by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)
    for v in vids:
        by_shape[bc.blocks[v]].append(v)
    segs: list[_Seg] = []
    order: dict[tuple[int, int], list[int]] = {}
    for shape in sorted(by_shape):
        # widest first; equal chunk counts ordered by their elements' fan-in profile
        vs = sorted(by_shape[shape], key=lambda v: (
            -grid[v][3], [-fan[ch] for ch in c.nodes[v].children], v))
        order[shape] = vs
        items = [(grid[v][3], grid[v][2]) for v in vs]
        segs.extend(_cut(shape, items, tol))
    segs = _merge(segs, limit)
    groups: list[SumGroup] = []
    pos: dict[tuple[int, int], int] = defaultdict(int)
    for key, items, _ in segs:
        shape = (int(key[0]), int(key[1]))  # type: ignore[index]
        start = pos[shape]
        groups.append(SumGroup(shape[0], shape[1], tuple(order[shape][start: start + len(items)])))
        pos[shape] += len(items)
    return groups


def _product_groups(c: Circuit, order: list[int], tol: float, limit: int,
                    fan: list[int]) -> list[ProductGroup]:
    nodes = c.nodes
    runs = [(fan[ch], nodes[ch].n) for s in order for ch in nodes[s].children]
    # runs keep their order (the sums' layout fixes it): cut where mixing fan-ins pads too much
    segs = _merge(_cut(0, runs, tol), limit)
    return [ProductGroup(st[0], len(items)) for _, items, st in segs]


@register_pass("partition-layers", input_level="L1", output_level="L2")
def partition_layers(bc: BlockedCircuit, *, tolerance: float = 0.25,
                     max_partitions: int = 8) -> LayeredCircuit:
    """Group blocked sums into product/sum layers and partition each layer by fan-in.

    Args:
        tolerance: largest fraction of padded chunks (sums) or factors (products) allowed in
            one partition before it is cut.
        max_partitions: most partitions of each kind per layer (different tile shapes may
            need more).
    """
    if max_partitions < 1:
        raise PassError("partition-layers: max-partitions must be at least 1")
    c = bc.circuit
    h = heights(c)
    at: dict[int, list[int]] = defaultdict(list)
    for v in bc.blocks:
        at[h[v]].append(v)
    layers = []
    fan = factor_counts(c)
    for height in sorted(at):
        sums = _sum_groups(bc, at[height], tolerance, max_partitions, fan)
        order = [s for g in sums for s in g.sums]
        prods = _product_groups(c, order, tolerance, max_partitions, fan)
        layers.append(Layer(tuple(sums), tuple(prods)))
    return LayeredCircuit(bc, tuple(layers))
