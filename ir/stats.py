"""Counts of the lowered levels: tiles, padding and bytes of sum and product partitions.

The numbers behind the comments of L2 and L3 texts and behind :mod:`pccc.ir.summary`. They
are counted the same way at every level:

- a sum partition of tile shape ``B x C`` has a weight *grid* of ``blocks x chunks`` tiles,
  ``chunks`` being the most any of its blocks has (the plan's ``[blocks, chunks]`` tables);
  its *padding share* is the part of the grid's ``B * C`` entries per tile that holds no
  weight (zero-padded block rows and chunk columns, and the padding chunks of shorter blocks);
  a weight read by several vectors (tied) counts once per read; an identity ``@__root__``
  wrapper of ``n`` nodes holds ``n`` weights (its zeros are padding);
- a product partition of ``E`` elements and fan-in ``F`` has ``E * F`` factor slots; its
  padding share is the part that reads slot 0 (log 1: shorter elements);
- bytes are float64 weights (8 per tile entry read, padding included) and int64 index tables.

Example::

    stats = plan_partition_stats(plan)      # one PartStats per partition, layer by layer
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pccc.ir.blocked import ROOT_KEY, BlockedCircuit, run_length
from pccc.ir.circuit import SumVector
from pccc.ir.layered import Layer, LayeredCircuit
from pccc.ir.plan import KernelPlan, ProductPartition, SumPartition


@dataclass
class SumStats:
    """Tiles and weights of one or more sum partitions (or sum vectors)."""

    vectors: int = 0
    """sum vectors (0 at L3, where vectors are no longer told apart)"""
    blocks: int = 0
    """node blocks"""
    grid: int = 0
    """tiles of the grid (``blocks x chunks`` per partition)"""
    tiles: int = 0
    """real tiles (chunks that hold elements)"""
    entries: int = 0
    """``B * C`` entries of all grid tiles"""
    weights: int = 0
    """entries that hold a weight"""
    tile_bytes: int = 0
    """bytes of the real tiles' weights (float64, padding inside them included)"""
    index_bytes: int = 0
    """bytes of the index tables (int64)"""

    def padding(self) -> float:
        """The share of the grid's entries that holds no weight."""
        return 1.0 - self.weights / self.entries if self.entries else 0.0

    def add(self, other: SumStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class ProductStats:
    """Elements and factor slots of one or more product partitions."""

    partitions: int = 0
    elements: int = 0
    slots: int = 0
    """factor slots: elements times fan-in"""
    padding_slots: int = 0
    """slots that read slot 0 (log 1)"""
    fanin: int = 0
    """the largest fan-in"""
    index_bytes: int = 0

    def padding(self) -> float:
        return self.padding_slots / self.slots if self.slots else 0.0

    def add(self, other: ProductStats) -> None:
        self.partitions += other.partitions
        self.elements += other.elements
        self.slots += other.slots
        self.padding_slots += other.padding_slots
        self.fanin = max(self.fanin, other.fanin)
        self.index_bytes += other.index_bytes


def _real_weights(bc: BlockedCircuit, v: int) -> int:
    nd = bc.circuit.nodes[v]
    assert isinstance(nd, SumVector)
    return nd.n if nd.param == ROOT_KEY else nd.n * run_length(bc.circuit, v)


def sum_group_stats(bc: BlockedCircuit, sums: tuple[int, ...] | list[int]) -> SumStats:
    """Counts of one partition of sum vectors ``sums`` (one tile shape), laid out as
    ``layout-params`` does: ``[blocks, most chunks]`` tables."""
    out = SumStats(vectors=len(sums))
    most = 0
    for v in sums:
        B, C, nb, nc = bc.grid(v)
        out.blocks += nb
        out.tiles += nb * nc
        out.weights += _real_weights(bc, v)
        out.tile_bytes += nb * nc * B * C * 8
        most = max(most, nc)
    if sums:
        B, C = bc.blocks[sums[0]]
        out.grid = out.blocks * most
        out.entries = out.grid * B * C
        out.index_bytes = 8 * (out.blocks * (2 + 2 * most))
    return out


def blocked_stats(bc: BlockedCircuit) -> dict[tuple[int, int], SumStats]:
    """L1: the counts of the sum vectors of each tile shape, each vector its own grid."""
    out: dict[tuple[int, int], SumStats] = {}
    for v, shape in bc.blocks.items():
        out.setdefault(shape, SumStats()).add(sum_group_stats(bc, [v]))
    return out


def layer_stats(lc: LayeredCircuit, layer: Layer) -> tuple[SumStats, ProductStats]:
    """L2: the counts of a layer's sum partitions and its product partitions, added up."""
    sums = SumStats()
    for g in layer.sums:
        sums.add(sum_group_stats(lc.blocked, g.sums))
    prods = ProductStats()
    for st in product_group_stats(lc, layer):
        prods.add(st)
    return sums, prods


def product_group_stats(lc: LayeredCircuit, layer: Layer) -> list[ProductStats]:
    """L2: the counts of each product partition of a layer, as ``layout-params`` lays the
    runs out: a sum's runs in a row, padded to whole chunks; factor slots padded to each
    partition's fan-in."""
    c = lc.circuit
    facs = _factor_counts(lc)
    starts: list[int] = []  # where each run begins; a sum's runs end padded to whole chunks
    used: list[int] = []  # the factor slots each run reads
    end = 0
    for s in layer.sum_order():
        B, C, nb, nc = lc.blocked.grid(s)
        first, end = end, end + nc * C
        for ch in c.nodes[s].children:
            starts.append(first)
            used.append(c.nodes[ch].n * facs[ch])
            first += c.nodes[ch].n
    starts.append(end)
    out = []
    r = 0
    for pg in layer.products:
        elems = starts[min(r + pg.runs, len(starts) - 1)] - starts[min(r, len(starts) - 1)]
        slots = elems * pg.fanin
        out.append(ProductStats(1, elems, slots, slots - sum(used[r: r + pg.runs]), pg.fanin,
                                8 * slots))
        r += pg.runs
    return out


def _factor_counts(lc: LayeredCircuit) -> list[int]:
    counts: list[int] | None = lc.__dict__.get("_factor_counts")
    if counts is None:
        from pccc.ir.layered import factor_counts

        counts = factor_counts(lc.circuit)
        object.__setattr__(lc, "_factor_counts", counts)
    return counts


def sum_partition_stats(plan: KernelPlan, sp: SumPartition,
                        blocks: np.ndarray | None = None) -> SumStats:
    """L3: the counts of one sum partition (or of its ``blocks`` only); its weights are the
    real tiles' entries that belong to a normalization group (``param_group >= 0``), counted
    once per read."""
    B, C = sp.block_size, sp.chunk_size
    nc, ps = sp.num_chunks, sp.param_start
    if blocks is not None:
        nc, ps = nc[blocks], ps[blocks]
    nb = int(nc.shape[0])
    real = np.arange(sp.max_chunks)[None, :] < nc[:, None]
    starts = ps[real]
    out = SumStats(blocks=nb, grid=nb * sp.max_chunks,
                   tiles=int(starts.size), tile_bytes=int(starts.size) * B * C * 8,
                   index_bytes=sum(int(getattr(sp, n).nbytes) for n in
                                   ("node_start", "chunk_start", "param_start", "num_chunks"))
                   * nb // max(1, sp.num_blocks))
    out.entries = out.grid * B * C
    out.weights = int(starts.size) * B * C - _padding_in(plan.param_group, starts, B * C)
    return out


def _padding_in(group: np.ndarray, starts: np.ndarray, size: int) -> int:
    """Entries of ``group`` that are -1 in the tiles ``[s, s + size)``, each start counted as
    often as it occurs; tiles that follow each other are read as one run."""
    if starts.size == 0:
        return 0
    uniq, times = np.unique(starts, return_counts=True)
    total = 0
    breaks = np.flatnonzero(np.diff(uniq) != size) + 1
    for run, mult in zip(np.split(uniq, breaks), np.split(times, breaks)):
        lo = int(run[0])
        pad = group[lo: lo + size * len(run)] == -1
        if pad.size != size * len(run):  # (a table that points past the buffer: all padding)
            return int(starts.size) * size
        if (mult == 1).all():
            total += int(np.count_nonzero(pad))
        else:
            per = np.count_nonzero(pad.reshape(len(run), size), axis=1)
            total += int(per @ mult)
    return total


def product_partition_stats(pp: ProductPartition) -> ProductStats:
    """L3: the counts of one product partition."""
    e, f = pp.children.shape
    return ProductStats(1, e, e * f, int(np.count_nonzero(pp.children == 0)), f,
                        int(pp.children.nbytes))
