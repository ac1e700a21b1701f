"""The analyses behind ``schedule-kernels``: numpy over a plan's index tables, per block, never
per edge.

- :func:`children_table`, :func:`child_counts`: a product layer as one dense children table and
  each element's real fan-in.
- :func:`split_by_fanin`: a sum partition's blocks by kernel shape.
- :func:`sibling_table`: blocks grouped by the elements they read (:func:`read_keys`).
- :func:`flow_writers`: which parts may store their element flows, and the rows to zero.
- :func:`em_store`: which parts may store their EM flows.
- :func:`runs`, :func:`row_tiles`, :func:`run_table`: row sets as runs and tiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pccc.ir.plan import KernelPlan, ProductLayer, SumLayer, SumPartition
from pccc.ir.schedule import NARROW


def children_table(layer: ProductLayer, neg: int) -> np.ndarray:
    """Dense ``[num_elem_slots, fanin]`` node slots of every element, real children first
    (padding: slot 0, log 1); rows no partition writes, and a partition's padding elements
    (no real child: a product of the circuit has at least one), are ``[neg, 0, ...]`` (value
    -inf). A padding element of value log 1 would be harmless under its zero weights in exact
    arithmetic, but the kernels' online log-sum-exp takes its maximum over the elements before
    the weights: with real elements below log 1e-38 (a root over thousands of variables) every
    real term would underflow, and the sum be -inf."""
    fanin = max([1] + [int(p.children.shape[1]) for p in layer.partitions])
    table = np.zeros((layer.num_elem_slots, fanin), np.int64)
    table[:, 0] = neg
    for p in layer.partitions:
        kids = p.children
        rows = table[p.elem_start: p.elem_start + p.num_elems]
        rows[:, 0] = 0
        rows[:, : kids.shape[1]] = kids
        fix = _padding_first(kids)
        if len(fix):  # real children to the front, in order
            order = np.argsort(kids[fix] == 0, axis=1, kind="stable")
            rows[fix, : kids.shape[1]] = np.take_along_axis(kids[fix], order, axis=1)
    table[~table.any(axis=1), 0] = neg
    return table


def _padding_first(kids: np.ndarray) -> np.ndarray:
    """The rows of ``kids`` where a padding child (0) comes before a real one."""
    bad = np.zeros(len(kids), bool)
    for f in range(kids.shape[1] - 1):
        bad |= (kids[:, f] == 0) & (kids[:, f + 1] != 0)
    return np.flatnonzero(bad)


def child_counts(table: np.ndarray) -> np.ndarray:
    """How many real children each element of a :func:`children_table` has (at least 1): the
    length of its run of nonzero slots from the front, found column by column over the rows
    still running."""
    count = np.ones(len(table), np.int32)
    if table.shape[1] < 2:
        return count
    second = table[:, 1] != 0
    count += second
    rows = np.flatnonzero(second)
    for f in range(2, table.shape[1]):
        rows = rows[table[rows, f] != 0]
        if not len(rows):
            break
        count[rows] += 1
    return count


def split_by_fanin(part: SumPartition, count: np.ndarray, round_fanin: bool = False
                   ) -> list[tuple[int, np.ndarray]]:
    """The partition's blocks grouped by how many children their elements really have
    (``count``: :func:`child_counts` of the layer's table): blocks of fan-in at most
    :data:`NARROW` in one group (at the most of them), each wider fan-in a group of its own, so
    a wide product does not widen the whole partition's kernel. ``round_fanin``: the narrow
    group's fan-in is rounded up to a power of two (at most :data:`NARROW`; the kernels read
    no child past an element's own, nor past the layer table's row), so that partitions of
    nearby fan-ins, in any layer, share one kernel. ``[(fanin, blocks)]``."""
    C = part.chunk_size
    nb, nc = part.chunk_start.shape
    idx = np.minimum(part.chunk_start[:, :, None] + np.arange(C), len(count) - 1)
    per_chunk = count[idx.reshape(nb, -1)].reshape(nb, nc, C).max(axis=2, initial=1)
    live = np.arange(nc) < part.num_chunks[:, None]
    per_block = np.where(live, per_chunk, 1).max(axis=1, initial=1)
    narrow = per_block <= NARROW
    top = int(per_block[narrow].max(initial=1))
    if round_fanin:
        top = max(top, min(1 << (top - 1).bit_length(), NARROW))
    per_block = np.where(narrow, top, per_block)
    return [(int(f), np.flatnonzero(per_block == f)) for f in np.unique(per_block)]


def layer_tables(plan: KernelPlan) -> list[np.ndarray]:
    """Per sum layer, the children table of the product layer before it (read-only)."""
    out = []
    prod: ProductLayer | None = None
    for ly in plan.layers:
        if isinstance(ly, ProductLayer):
            prod = ly
            continue
        assert isinstance(ly, SumLayer) and prod is not None
        table = children_table(prod, plan.num_node_slots)
        table.flags.writeable = False
        out.append(table)
    return out


def read_keys(p: SumPartition, blocks: np.ndarray) -> np.ndarray:
    """What each of ``blocks`` reads, as rows that are equal exactly for blocks reading
    elements with equal children: the plan's read class (``SumPartition.reads``, carried down
    from the circuit by ``layout-params``) and chunk count; where the plan records none, the
    element slots the chunks start at."""
    if p.reads is not None:
        return np.column_stack([p.reads[blocks], p.num_chunks[blocks]])
    return np.column_stack([p.chunk_start[blocks], p.num_chunks[blocks]])


def sibling_table(keys: np.ndarray) -> np.ndarray:
    """Blocks grouped by equal rows of ``keys`` (:func:`read_keys`): ``[groups, G]`` block
    indices, each group in block order, the groups in the order of their keys, ``-1``
    padded."""
    _, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    order = np.argsort(inv, kind="stable")
    counts = np.bincount(inv)
    rank = np.arange(len(inv)) - np.repeat(np.cumsum(counts) - counts, counts)
    out = np.full((len(counts), int(counts.max(initial=1))), -1, np.int64)
    out[inv[order], rank] = order
    return out


@dataclass
class HostPart:
    """A part while it is being scheduled: its partition, blocks and sibling groups."""

    layer: int
    index: int
    """partition index in the layer"""
    p: SumPartition
    fanin: int
    blocks: np.ndarray
    sib: np.ndarray
    """sibling groups: indices into ``blocks``, -1 padding"""
    small: bool = False
    atomic: bool = True

    def scattered_rows(self, table: np.ndarray, rows: int) -> np.ndarray:
        """The node rows its element flows are scattered to, once per write: by a sibling
        group's first block, or by every lone block (padding children, slot 0, and ``NEG =
        rows - 1`` left out)."""
        units = self.sib[:, 0] if self.sib.shape[1] > 1 else np.arange(len(self.blocks))
        u = self.blocks[units]
        cs, nc = self.p.chunk_start[u], self.p.num_chunks[u]
        e = cs[:, :, None] + np.arange(self.p.chunk_size)  # [units, NC, C]
        live = (np.arange(cs.shape[1]) < nc[:, None])[:, :, None] & (e < len(table))
        kids = np.take(table[:, : self.fanin], e[live], axis=0).ravel()
        return kids[(kids != 0) & (kids != rows - 1)]


def host_parts(layer: int, sl: SumLayer, table: np.ndarray, small_part: int,
               round_fanin: bool = False, lone_small: bool = False) -> list[HostPart]:
    """A sum layer's parts: each partition's blocks by kernel shape, each cut into lone blocks
    and sibling groups, or kept whole (all lone) where it has at most ``small_part`` weights,
    chunk padding included (``lone_small``: only where none of its blocks has a sibling, so
    that each element's children get one flow). ``round_fanin``: see
    :func:`split_by_fanin`."""
    count = child_counts(table)
    out = []
    for j, p in enumerate(sl.partitions):
        B, C, NC = p.block_size, p.chunk_size, p.max_chunks
        for fanin, blocks in split_by_fanin(p, count, round_fanin):
            small = len(blocks) * NC * B * C <= small_part
            sib = sibling_table(read_keys(p, blocks)) if lone_small or not small else None
            if small and (sib is None or sib.shape[1] == 1):  # one backward launch
                out.append(HostPart(layer, j, p, fanin, blocks, np.arange(len(blocks))[:, None],
                                    small=True))
                continue
            assert sib is not None
            alone = (sib >= 0).sum(axis=1) == 1
            if alone.any():  # no sibling: its element flows come from sum_bwd itself
                lone = blocks[sib[alone, 0]]
                out.append(HostPart(layer, j, p, fanin, lone, np.arange(len(lone))[:, None]))
            if not alone.all():  # sibling groups: element flows summed by sum_eflow
                grouped = sib[~alone]
                local = np.full(len(blocks), -1, np.int64)
                members = grouped[grouped >= 0]
                local[members] = np.arange(len(members))
                grouped = np.where(grouped >= 0, local[np.maximum(grouped, 0)], -1)
                out.append(HostPart(layer, j, p, fanin, blocks[members], grouped))
    return out


def flow_writers(parts: list[HostPart], kids_of: list[np.ndarray], rows: int
                 ) -> np.ndarray | None:
    """Which parts may store their element flows: counts, over the whole backward pass, how
    many element flows each node row receives (``kids_of``: each part's
    :meth:`HostPart.scattered_rows`), and marks a part atomic when one of its children rows
    receives more than one. Returns the rows the atomic parts add to, sorted (a pass zeroes
    them first; stored rows are overwritten, rows nobody writes keep the buffer's initial
    zeros), or None where that is most rows (every part atomic, the whole buffer zeroed)."""
    count = np.bincount(np.concatenate(kids_of), minlength=rows) if kids_of else \
        np.zeros(rows, np.int64)
    shared = count > 1
    zero = np.zeros(rows, bool)
    for p, kids in zip(parts, kids_of):
        p.atomic = bool(shared[kids].any())
        if p.atomic:
            zero[kids] = True
    out = np.flatnonzero(zero)
    if 2 * len(out) > rows:
        for p in parts:
            p.atomic = True  # the buffer is zeroed anyway: one kind of kernel
        return None
    return out


def em_store(parts: list[HostPart], programs: int) -> list[bool]:
    """Per part, whether its EM flows may be stored after an EM step: each of its backward
    programs holds whole batches (its blocks times chunks fill ``programs``) and no weight of
    its chunks belongs to another chunk too (tied parameters, or a chunk's tail reaching into
    the next chunk's tile)."""
    starts, ends, owners = [], [], []
    for i, hp in enumerate(parts):
        p = hp.p
        live = np.arange(p.max_chunks)[None, :] < p.num_chunks[hp.blocks][:, None]
        ps = p.param_start[hp.blocks][live]
        starts.append(ps)
        ends.append(ps + p.block_size * p.chunk_size)
        owners.append(np.full(len(ps), i, np.int64))
    start = np.concatenate(starts) if starts else np.zeros(0, np.int64)
    end = np.concatenate(ends) if ends else np.zeros(0, np.int64)
    owner = np.concatenate(owners) if owners else np.zeros(0, np.int64)
    order = np.argsort(start, kind="stable")
    start, end, owner = start[order], end[order], owner[order]
    shared = np.zeros(len(start), bool)
    if len(start) > 1:  # sorted by start: overlaps an earlier or the next range
        shared[1:] = start[1:] < np.maximum.accumulate(end)[:-1]
        shared[:-1] |= end[:-1] > start[1:]
    bad = set(owner[shared].tolist())
    return [len(hp.blocks) * hp.p.max_chunks >= programs and i not in bad
            for i, hp in enumerate(parts)]


def runs(rows: np.ndarray) -> np.ndarray:
    """Node rows (any order, repeats allowed) as ``[k, 3]`` ``(first, count, writes)`` runs of
    consecutive rows that appear equally often, sorted."""
    r, w = np.unique(np.asarray(rows, np.int64), return_counts=True)
    if not len(r):
        return np.zeros((0, 3), np.int64)
    cut = np.flatnonzero((np.diff(r) != 1) | (np.diff(w) != 0)) + 1
    first = np.concatenate([[0], cut])
    count = np.diff(np.concatenate([first, [len(r)]]))
    return np.column_stack([r[first], count, w[first]]).astype(np.int64)


def block_rows(node_start: np.ndarray, B: int) -> np.ndarray:
    """The rows of blocks starting at ``node_start``, ``B`` each, as sorted ``[k, 2]``
    ``(first, count)`` runs (adjacent blocks merged)."""
    s = np.sort(np.asarray(node_start, np.int64))
    if not len(s):
        return np.zeros((0, 2), np.int64)
    cut = np.flatnonzero(np.diff(s) != B) + 1
    first = np.concatenate([[0], cut])
    count = np.diff(np.concatenate([first, [len(s)]])) * B
    return np.column_stack([s[first], count]).astype(np.int64)


def row_tiles(rows: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct ``rows`` as tiles of consecutive rows: ``(first row, count)``, each
    count at most ``size`` (a run of consecutive rows is cut into tiles)."""
    rows = np.asarray(rows, np.int64)
    if not len(rows):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    cut = np.flatnonzero(np.diff(rows) != 1) + 1
    start = np.concatenate([[0], cut])
    first, count = cut_runs(start, np.diff(np.concatenate([start, [len(rows)]])), size)
    return rows[first], count


def cut_runs(start: np.ndarray, length: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Runs ``[start, start + length)`` cut into pieces of at most ``size``, in order:
    ``(first, count)`` per piece."""
    start, length = np.asarray(start, np.int64), np.asarray(length, np.int64)
    pieces = -(-length // size)
    k = np.arange(pieces.sum()) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    first = np.repeat(start, pieces) + k * size
    return first, np.minimum(size, np.repeat(length, pieces) - k * size)


def run_table(vars: np.ndarray, cap: int) -> np.ndarray:
    """Input nodes grouped by variable (stable order), each variable's nodes cut into runs of
    at most NB = max(16, the longest group rounded up to a power of two), NB <= ``cap``:
    ``[runs, NB]`` node indices, ``-1`` padding."""
    order = np.argsort(vars, kind="stable")
    v = np.asarray(vars)[order]
    cut = np.flatnonzero(np.diff(v) != 0) + 1
    start = np.concatenate([[0], cut]).astype(np.int64)
    length = np.diff(np.concatenate([start, [len(v)]]))
    nb = min(cap, max(16, 1 << (int(length.max(initial=1)) - 1).bit_length()))
    first, count = cut_runs(start, length, nb)
    j = first[:, None] + np.arange(nb)[None, :]
    return np.where(j < (first + count)[:, None], order[np.minimum(j, len(v) - 1)], -1)
