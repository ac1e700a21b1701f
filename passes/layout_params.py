"""``layout-params`` (L2 -> L3): flat buffers and index tables of a :class:`KernelPlan`.

- Node slots: slot 0 holds log 1; the input layers come next (one per distribution family),
  then every sum vector, layer by layer in partition order, ``num_blocks * B`` slots each.
- Sum weights: one flat buffer. It starts with a zero tile as large as the largest tile (the
  padding chunks point at it); then each weight array is stored once (tied vectors share it) as
  its ``[num_blocks, num_chunks, B, C]`` tiles, every tile contiguous and row-major, in the
  order the kernels read them. Normalization groups are the L0 sum rows.
- Elements: per layer, the runs the sums read, in partition order, each sum's runs padded to
  whole chunks; product partitions cover them in order.

Every array is written with whole-array numpy operations per vector; nothing loops over edges.
The ``param_map`` entries are regular (ranges and tile patterns): each is given as a function
making it when first read (see :class:`pccc.ir.plan.ParamMap`).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np

from pccc.ir import dists
from pccc.ir.blocked import ROOT_KEY, BlockedCircuit
from pccc.ir.circuit import Circuit, InputVector, ProductVector, SumVector
from pccc.ir.layered import Layer, LayeredCircuit, factors
from pccc.ir.plan import (
    InputLayer,
    KernelPlan,
    ParamMap,
    ProductLayer,
    ProductPartition,
    SumLayer,
    SumPartition,
)
from pccc.passes.registry import register_pass

_Job = tuple[int, Callable[[], None]]


def _run_jobs(jobs: list[_Job], threads: int) -> None:
    """Run the copy jobs on a few threads (numpy copies release the GIL), largest first, in
    bins of about equal size (one task per thread keeps the pool overhead negligible)."""
    jobs = sorted(jobs, key=lambda j: -j[0])
    workers = threads or min(8, os.cpu_count() or 1)
    if workers <= 1 or sum(j[0] for j in jobs) < (1 << 20):
        for _, fn in jobs:
            fn()
        return
    bins: list[list[Callable[[], None]]] = [[] for _ in range(workers)]
    load = [0] * workers
    for size, fn in jobs:
        k = load.index(min(load))
        bins[k].append(fn)
        load[k] += size

    def run(fns: list[Callable[[], None]]) -> None:
        for fn in fns:
            fn()

    with ThreadPoolExecutor(workers) as pool:
        for fut in [pool.submit(run, b) for b in bins]:
            fut.result()


def _input_layers(c: Circuit, slot: dict[int, int], next_slot: int, jobs: list[_Job]
                  ) -> tuple[list[InputLayer], np.ndarray, dict[str, Callable[[], np.ndarray]],
                             int]:
    """Input layers (one per family), their flat parameters and their ``param_map`` entries
    (each a function making it).

    The copies into the flat buffer are appended to ``jobs`` (run later, in parallel).
    """
    fams: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for i, nd in enumerate(c.nodes):
        if isinstance(nd, InputVector):
            fams[(nd.dist, tuple((k, v) for k, v in nd.attrs if k != "values"))].append(i)
    layers, offset = [], 0
    base: dict[str, int] = {}
    sources: list[tuple[str, int]] = []
    pmap: dict[str, Callable[[], np.ndarray]] = {}
    for (dist, fam), vids in sorted(fams.items(), key=lambda kv: repr(kv[0])):
        cls = dists.get(dist)
        start = next_slot
        vars_, pstart, values = [], [], []
        psize = 0
        for vid in vids:
            nd = c.nodes[vid]
            assert isinstance(nd, InputVector)
            slot[vid] = next_slot
            next_slot += nd.n
            vars_.append(np.full(nd.n, nd.var, np.int64))
            shape = cls.param_shape(nd.n, nd.attr_dict())
            psize = 0 if shape is None else int(np.prod(shape[1:], dtype=np.int64))
            if nd.param is None:
                pstart.append(np.zeros(nd.n, np.int64))
            else:
                if nd.param not in base:
                    base[nd.param] = offset
                    sources.append((nd.param, offset))
                    offset += c.params[nd.param].size
                pstart.append(base[nd.param] + psize * np.arange(nd.n))
            if dist == "indicator":
                values.append(np.asarray(nd.attr_dict()["values"], np.int64))
        layers.append(InputLayer(dist, fam, start, np.concatenate(vars_), np.concatenate(pstart),
                                 psize, np.concatenate(values) if values else None))
    flat = np.empty(offset)
    for key, off in sources:  # stored back to back, each whole and row-major
        arr = c.params[key]
        pmap[key] = partial(_range_map, off, arr.shape)
        jobs.append((arr.size, partial(_copy_input, flat, off, arr)))
    return layers, flat, pmap, next_slot


def _copy_input(flat: np.ndarray, off: int, arr: np.ndarray) -> None:
    flat[off: off + arr.size] = arr.ravel()


def _key(c: Circuit, v: int) -> str:
    nd = c.nodes[v]
    assert isinstance(nd, SumVector)
    return nd.param


class _Weights:
    """The flat sum-weight buffer: one tile array per parameter key."""

    def __init__(self, bc: BlockedCircuit, order: list[int]):
        c = bc.circuit
        self.bc = bc
        self.grid = {v: bc.grid(v) for v in bc.blocks}  # (B, C, nb, nc) of every sum
        self.reserved = max([B * C for B, C in bc.blocks.values()] + [1])
        self.base: dict[str, int] = {}
        self.group0: dict[str, int] = {}
        total, groups = self.reserved, 0
        for v in order:
            key = _key(c, v)
            if key in self.base:
                continue
            B, C, nb, nc = self.grid[v]
            self.base[key], self.group0[key] = total, groups
            total += nb * nc * B * C
            groups += c.nodes[v].n
        self.params = np.empty(total)  # every entry is written once: no zero-fill pass
        self.group = np.empty(total, np.int64)
        self.params[: self.reserved] = 0.0
        self.group[: self.reserved] = -1
        self.group_size = np.zeros(groups, np.int64)
        self.pmap: dict[str, Callable[[], np.ndarray]] = {}  # param_map entries, made when read
        self.first: dict[str, int] = {}
        for v in order:
            self.first.setdefault(_key(c, v), v)

    def jobs(self) -> list[_Job]:
        """One copy job per weight array: ``(size, fn)``."""
        return [(self.bc.circuit.params[key].size, partial(self._fill_key, key, v))
                for key, v in self.first.items()]

    def _fill_key(self, key: str, v: int) -> None:
        B, C, nb, nc = self.grid[v]
        w = self.bc.circuit.params[key]
        n, m = w.shape
        lo, size = self.base[key], nb * nc * B * C
        g0 = self.group0[key]
        self.group_size[g0: g0 + n] = m
        if (B == 1 and m % C == 0) or (nc == 1 and m == C and n % B == 0):
            # unpadded tiles of whole rows (or of single rows): the layout is row-major
            self.params[lo: lo + size] = w.ravel()
            self.group[lo: lo + size].reshape(n, m)[...] = np.arange(g0, g0 + n)[:, None]
            self.pmap[key] = partial(_range_map, lo, (n, m))
            return
        if n % B or m % C:  # padded tiles: zero weights, group -1, then the real entries
            self.params[lo: lo + size] = 0.0
            self.group[lo: lo + size] = -1
            gsrc = np.broadcast_to((g0 + np.arange(n))[:, None], (n, m))
            _scatter(self._tiles(self.group, lo, v), gsrc, B, C)
        else:  # row r of block b is group g0 + b*B + r in every chunk
            rows = (g0 + np.arange(nb * B)).reshape(nb, 1, B, 1)
            self.group[lo: lo + size].reshape(nb, nc, B, C)[...] = rows
        _scatter(self._tiles(self.params, lo, v), w, B, C)
        self.pmap[key] = partial(_tile_map, lo, (n, m), (B, C, nc))

    def _tiles(self, buf: np.ndarray, lo: int, v: int) -> np.ndarray:
        """The ``[nb, B, nc, C]`` view of the tiles of sum vector ``v`` in ``buf``."""
        B, C, nb, nc = self.grid[v]
        return buf[lo: lo + nb * nc * B * C].reshape(nb, nc, B, C).transpose(0, 2, 1, 3)


def _range_map(lo: int, shape: tuple[int, ...]) -> np.ndarray:
    """``param_map`` entry of an array stored whole, row-major, from offset ``lo``."""
    return np.arange(lo, lo + int(np.prod(shape, dtype=np.int64))).reshape(shape)


def _tile_map(lo: int, shape: tuple[int, int], tiling: tuple[int, int, int]) -> np.ndarray:
    """``param_map`` entry of an ``[n, m]`` weight array stored from offset ``lo`` as
    ``[nb, nc, B, C]`` tiles (``tiling``: ``(B, C, nc)``)."""
    (n, m), (B, C, nc) = shape, tiling
    i, j = np.arange(n), np.arange(m)
    rows = lo + (i // B) * (nc * B * C) + (i % B) * C
    cols = (j // C) * (B * C) + (j % C)
    return rows[:, None] + cols[None, :]


def _scatter(dst: np.ndarray, src: np.ndarray, B: int, C: int) -> None:
    """Copy ``src [n, m]`` into the tile view ``dst [nb, B, nc, C]`` (padding untouched)."""
    n, m = src.shape
    nbf, rb = divmod(n, B)
    ncf, rc = divmod(m, C)
    dst[:nbf, :, :ncf, :] = src[: nbf * B, : ncf * C].reshape(nbf, B, ncf, C)
    if rc:
        dst[:nbf, :, ncf, :rc] = src[: nbf * B, ncf * C:].reshape(nbf, B, rc)
    if rb:
        dst[nbf, :rb, :ncf, :] = src[nbf * B:, : ncf * C].reshape(rb, ncf, C)
        if rc:
            dst[nbf, :rb, ncf, :rc] = src[nbf * B:, ncf * C:]


def _layer(lc: LayeredCircuit, layer: Layer, slot: dict[int, int], next_slot: int,
           wts: _Weights, elems: _Elements) -> tuple[ProductLayer, SumLayer, int]:
    bc = lc.blocked
    c = bc.circuit
    reserved = max(g.chunk for g in layer.sums)
    runs: list[tuple[int, int]] = []  # (first element, child vector) of every run
    nxt = reserved
    sum_parts = []
    for g in layer.sums:
        first_slot = next_slot
        starts, nbs, ncs, tiles = [], [], [], []
        for s in g.sums:
            _, C, nb, nc = wts.grid[s]
            start = nxt
            for ch in c.nodes[s].children:
                runs.append((nxt, ch))
                nxt += c.nodes[ch].n
            nxt = start + nc * C
            slot[s] = next_slot
            next_slot += nb * g.block
            starts.append(start)
            nbs.append(nb)
            ncs.append(nc)
            tiles.append(wts.base[_key(c, s)])
        sum_parts.append(_sum_partition(g.block, g.chunk, first_slot, starts, nbs, ncs, tiles))
    return (ProductLayer(nxt, reserved, _products(layer, runs, nxt, elems)),
            SumLayer(tuple(sum_parts)), next_slot)


def _sum_partition(B: int, C: int, first_slot: int, starts: list[int], nbs: list[int],
                   ncs: list[int], tiles: list[int]) -> SumPartition:
    """A sum partition whose sums' blocks are laid out from node slot ``first_slot``; sum
    ``i`` has ``nbs[i]`` blocks of ``ncs[i]`` chunks, its elements from ``starts[i]``, its
    ``[nb, nc]`` tiles stored row-major from offset ``tiles[i]``."""
    nb, nc = np.array(nbs), np.array(ncs)
    of = np.repeat(np.arange(len(nbs)), nb)  # the sum of every block
    row = np.arange(len(of)) - np.repeat(np.cumsum(nb) - nb, nb)  # its place in the sum
    k = np.arange(int(nc.max()))[None, :]
    width = nc[of][:, None]
    chunk = np.where(k < width, np.array(starts)[of][:, None] + C * k, 0)
    tile = np.where(k < width, np.array(tiles)[of][:, None] + (row[:, None] * width + k) * (B * C),
                    0)  # padding chunks: the zero tile
    return SumPartition(B, C, first_slot + B * np.arange(len(of)), chunk, tile, nc[of])


def _products(layer: Layer, runs: list[tuple[int, int]], end: int, elems: _Elements
              ) -> tuple[ProductPartition, ...]:
    """Product partitions over the runs (padding: slot 0, log 1)."""
    starts = [s for s, _ in runs] + [end]
    parts = []
    r = 0
    for pg in layer.products:
        lo, hi = starts[r], starts[r + pg.runs]
        parts.append(ProductPartition(lo, elems.table(runs[r: r + pg.runs], lo, hi, pg.fanin)))
        r += pg.runs
    return tuple(parts)


_Factors = tuple[np.ndarray, list[int]]


class _Elements:
    """The factor slots of element runs, written into product tables a few numpy calls per
    partition (runs grouped by factor count), not a few per run."""

    def __init__(self, c: Circuit, slot: dict[int, int]):
        self.c = c
        self.slot = slot
        self.memo: dict[int, _Factors | None] = {}
        self.aranges: dict[int, np.ndarray] = {}

    def table(self, runs: list[tuple[int, int]], lo: int, hi: int, fanin: int) -> np.ndarray:
        """The ``[hi - lo, fanin]`` table of the runs ``(first element, child vector)``."""
        table = np.zeros((hi - lo, fanin), np.int64)
        by_k: dict[int, tuple[list[int], list[int], list[np.ndarray], list[list[int]]]] = {}
        for a, ch in runs:
            f = self.memo[ch] if ch in self.memo else self._factors(ch)
            if f is None:  # nested products: flattened one factor at a time
                n = self.c.nodes[ch].n
                for j, (v, idx) in enumerate(factors(self.c, ch)):
                    table[a - lo: a - lo + n, j] = self.slot[v] + idx
                continue
            idx, slots = f
            rows, ns, idxs, sl = by_k.setdefault(len(slots), ([], [], [], []))
            rows.append(a - lo)
            ns.append(len(idx))
            idxs.append(idx)
            sl.append(slots)
        for k, (rows, ns, idxs, sl) in by_k.items():
            size = np.array(ns)
            # row of every element: its run's first row plus its place in the run
            at = np.repeat(np.array(rows) - (np.cumsum(size) - size), size)
            at += np.arange(len(at))
            table[at, :k] = np.concatenate(idxs) + np.repeat(np.array(sl, np.int64), size, 0)
        return table

    def _factors(self, ch: int) -> _Factors | None:
        """``(index [n, k] into each factor vector, slot of each factor vector)`` of the
        elements of child ``ch`` (None for a product of products); made once per child."""
        c, slot = self.c, self.slot
        nd = c.nodes[ch]
        out: _Factors | None
        if not isinstance(nd, ProductVector):  # pass-through elements
            out = self._arange(nd.n)[:, None], [slot[ch]]
        else:
            nodes = [c.nodes[g] for g in nd.children]
            if any(isinstance(g, ProductVector) for g in nodes):
                out = None
            elif nd.edges is None and all(g.n != 1 for g in nodes):  # element-wise
                out = (np.broadcast_to(self._arange(nd.n)[:, None], (nd.n, len(nodes))),
                       [slot[g] for g in nd.children])
            else:
                out = nd.edge_table([g.n for g in nodes]), [slot[g] for g in nd.children]
        self.memo[ch] = out
        return out

    def _arange(self, n: int) -> np.ndarray:
        a = self.aranges.get(n)
        if a is None:
            a = self.aranges[n] = np.arange(n)
        return a


@register_pass("layout-params", input_level="L2", output_level="L3")
def layout_params(lc: LayeredCircuit, *, threads: int = 0) -> KernelPlan:
    """Lay out node slots, element runs, tiled weights and index tables as flat arrays.

    Args:
        threads: threads copying parameters (0: one per core, at most 8); the result does
            not depend on it.
    """
    c = lc.circuit
    slot: dict[int, int] = {}
    jobs: list[_Job] = []
    in_layers, in_params, in_map, next_slot = _input_layers(c, slot, 1, jobs)
    order = [s for layer in lc.layers for s in layer.sum_order()]
    wts = _Weights(lc.blocked, order)
    _run_jobs(jobs + wts.jobs(), threads)
    layers: list[ProductLayer | SumLayer] = []
    elems = _Elements(c, slot)
    for layer in lc.layers:
        prod, sm, next_slot = _layer(lc, layer, slot, next_slot, wts, elems)
        layers += [prod, sm]
    pmap = {k: v for k, v in wts.pmap.items() if k != ROOT_KEY}
    pmap.update(in_map)
    cards = c.var_cards()
    return KernelPlan(
        num_vars=c.num_vars,
        var_cards=np.array([cards.get(v) or 0 for v in range(c.num_vars)], np.int64),
        num_node_slots=next_slot, root_slot=slot[c.root], input_layers=tuple(in_layers),
        layers=tuple(layers), params=wts.params, reserved_params=wts.reserved,
        param_group=wts.group, group_size=wts.group_size, input_params=in_params,
        param_map=ParamMap({}, pmap), input_param_keys=frozenset(in_map),
        meta=(("lowering", "passes"),))
