"""``layout-params`` (L2 -> L3): flat buffers and index tables of a :class:`KernelPlan`.

- Node slots: slot 0 holds log 1; the input layers come next (one per distribution family),
  then every sum vector, layer by layer in partition order, ``num_blocks * B`` slots each.
- Sum weights: one flat buffer. It starts with a zero tile as large as the largest tile (the
  padding chunks point at it); then each weight array is stored once (tied vectors share it) as
  its ``[num_blocks, num_chunks, B, C]`` tiles, every tile contiguous and row-major, in the
  order the kernels read them. Normalization groups are the L0 sum rows.
- Elements: per layer, the runs the sums read, in partition order, each sum's runs padded to
  whole chunks; product partitions cover them in order.

Every array is written with whole-array numpy operations per weight vector, layer or partition;
nothing loops over edges or element runs (except products of products, which canonicalize
flattens: they go one run at a time).
The ``param_map`` entries are regular (ranges and tile patterns): each is stored as its rule
(:class:`pccc.ir.plan.Offsets`), not as an array.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from itertools import chain
from typing import Any

import numpy as np

from pccc.ir import dists
from pccc.ir.blocked import ROOT_KEY, BlockedCircuit
from pccc.ir.circuit import Circuit, InputVector, ProductVector, SumVector
from pccc.ir.errors import PassError
from pccc.ir.layered import Layer, LayeredCircuit, factors
from pccc.ir.plan import (
    InputLayer,
    KernelPlan,
    Offsets,
    ParamMap,
    ProductLayer,
    ProductPartition,
    SumLayer,
    SumPartition,
)
from pccc.passes.registry import register_pass

_Job = tuple[int, Callable[[], None]]
#: values per copy job (about): arrays are copied in pieces this large
PIECE = 1 << 18
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


def _input_layers(c: Circuit, slot: np.ndarray, next_slot: int, jobs: list[_Job]
                  ) -> tuple[list[InputLayer], np.ndarray, dict[str, Offsets], int]:
    """Input layers (one per family), their flat parameters and their ``param_map`` entries.

    The copies into the flat buffer are appended to ``jobs`` (run later, in parallel).
    """
    fams: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for i, nd in enumerate(c.nodes):
        if isinstance(nd, InputVector):
            fams[(nd.dist, tuple((k, v) for k, v in nd.attrs if k != "values"))].append(i)
    layers, offset = [], 0
    base: dict[str, int] = {}
    sources: list[tuple[str, int]] = []
    pmap: dict[str, Offsets] = {}
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
    piece: list[np.ndarray] = []
    at = 0
    for key, off in sources:  # stored back to back, each whole and row-major
        arr = c.params[key]
        pmap[key] = Offsets(off, tuple(arr.shape))
        piece.append(arr)
        if off + arr.size - at >= PIECE or key == sources[-1][0]:
            jobs.append((off + arr.size - at, partial(_back_to_back, flat[at: off + arr.size],
                                                      piece)))
            piece, at = [], off + arr.size
    return layers, flat, pmap, next_slot


def _back_to_back(out: np.ndarray, arrs: list[np.ndarray]) -> None:
    """Arrays stored back to back, each row-major, into ``out``: one numpy call (see
    :meth:`_Weights.jobs`)."""
    np.concatenate([a.ravel() for a in arrs], out=out, casting="unsafe")


def _key(c: Circuit, v: int) -> str:
    nd = c.nodes[v]
    assert isinstance(nd, SumVector)
    return nd.param


class _Weights:
    """The flat sum-weight buffer: one tile array per parameter key."""

    def __init__(self, bc: BlockedCircuit, order: list[int], dtype: Any = np.float64):
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
        self.params = np.empty(total, dtype)  # every entry is written once: no zero-fill
        self.group = np.empty(total, np.int32)
        self.params[: self.reserved] = 0.0
        self.group[: self.reserved] = -1
        # the copy jobs write through views (the plan makes its arrays read-only)
        self._params, self._group = self.params[:], self.group[:]
        self.group_size = np.zeros(groups, np.int64)
        self.pmap: dict[str, Offsets] = {}  # the param_map entries
        self.first: dict[str, int] = {}
        for v in order:
            self.first.setdefault(_key(c, v), v)

    def jobs(self, piece: int) -> list[_Job]:
        """The copy jobs, ``(size, fn)``: runs of weight arrays of one shape stored back to
        back, in pieces of about ``piece`` weights or one array (one numpy call per tiled
        array, one for a piece of row-major arrays, one for a piece's groups: with two per
        array, 16 threads waited on the GIL on HCLT-128's 553 arrays). The group sizes and
        ``param_map`` entries are set here."""
        out: list[_Job] = []
        run: list[str] = []
        for key, v in self.first.items():
            B, C, nb, nc = self.grid[v]
            n, m = self.bc.circuit.params[key].shape
            lo, g0 = self.base[key], self.group0[key]
            self.group_size[g0: g0 + n] = m
            self.pmap[key] = (Offsets(lo, (n, m)) if _row_major(B, C, nc, n, m) else
                              Offsets(lo, (n, m), (B, C, nc)))
            if run and (key == ROOT_KEY or not self._follows(run[-1], key)):
                out += self._pieces(run, piece)
                run = []
            if key == ROOT_KEY:  # (a job of its own: it rewrites its groups after the copy)
                self.group_size[g0: g0 + n] = np.count_nonzero(self.bc.circuit.params[key], 1)
                out.append((n * m, partial(self._fill_root, key)))
                continue
            run.append(key)
        if run:
            out += self._pieces(run, piece)
        return out

    def _shape(self, key: str) -> tuple[int, ...]:
        """``(B, C, nb, nc, n, m)`` of weight array ``key``."""
        return (*self.grid[self.first[key]], *self.bc.circuit.params[key].shape)

    def _follows(self, prev: str, key: str) -> bool:
        """Whether ``key`` extends the run ending at ``prev``: the same shape, stored right
        after it, its groups right after it, and no padding."""
        B, C, nb, nc, n, m = self._shape(prev)
        return (self._shape(key) == (B, C, nb, nc, n, m) and not (n % B or m % C)
                and self.base[key] == self.base[prev] + nb * nc * B * C
                and self.group0[key] == self.group0[prev] + n)

    def _pieces(self, run: list[str], piece: int) -> list[_Job]:
        B, C, nb, nc, n, m = self._shape(run[0])
        step = max(1, piece // (n * m))
        return [(n * m * len(keys), partial(self._fill_run, keys))
                for keys in (run[i: i + step] for i in range(0, len(run), step))]

    def _fill_run(self, keys: list[str]) -> None:
        """Copy the weight arrays ``keys`` (a piece of a run, see :meth:`jobs`) and write
        their groups."""
        B, C, nb, nc, n, m = self._shape(keys[0])
        lo, g0, size = self.base[keys[0]], self.group0[keys[0]], nb * nc * B * C
        k = len(keys)
        if _row_major(B, C, nc, n, m):
            _back_to_back(self._params[lo: lo + k * size],
                          [self.bc.circuit.params[key] for key in keys])
            self._group[lo: lo + k * size].reshape(k * n, m)[...] = \
                np.arange(g0, g0 + k * n)[:, None]
            return
        if n % B or m % C:  # padded tiles (a run of one): zero weights, group -1, then the
            # real entries
            self._params[lo: lo + size] = 0.0
            self._group[lo: lo + size] = -1
            gsrc = np.broadcast_to((g0 + np.arange(n))[:, None], (n, m))
            _scatter(self._tiles(self._group, lo, keys[0]), gsrc, B, C)
        else:  # row r of block b is group g0 + b*B + r in every chunk
            rows = (g0 + np.arange(k * nb * B)).reshape(k * nb, 1, B, 1)
            self._group[lo: lo + k * size].reshape(k * nb, nc, B, C)[...] = rows
        for key in keys:
            _scatter(self._tiles(self._params, self.base[key], key), self.bc.circuit.params[key],
                     B, C)

    def _fill_root(self, key: str) -> None:
        """Copy the identity weights of a root wrapper (see ``group-blocks``): its zero
        weights belong to no group, like padding, so that neither EM nor gradients ever move
        them and each group is its one weight 1."""
        self._fill_run([key])
        B, C, nb, nc = self.grid[self.first[key]]
        lo, hi = self.base[key], self.base[key] + nb * nc * B * C
        self._group[lo:hi][self._params[lo:hi] == 0.0] = -1

    def _tiles(self, buf: np.ndarray, lo: int, key: str) -> np.ndarray:
        """The ``[nb, B, nc, C]`` view, from offset ``lo`` of ``buf``, of tiles shaped as
        weight array ``key``'s."""
        B, C, nb, nc = self.grid[self.first[key]]
        return buf[lo: lo + nb * nc * B * C].reshape(nb, nc, B, C).transpose(0, 2, 1, 3)


def _row_major(B: int, C: int, nc: int, n: int, m: int) -> bool:
    """Whether an ``[n, m]`` weight array's ``B x C`` tiles (``nc`` per block row) are its
    rows in order: unpadded tiles of whole rows, or of single rows."""
    return (B == 1 and m % C == 0) or (nc == 1 and m == C and n % B == 0)


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


def _exclusive_cumsum(a: np.ndarray) -> np.ndarray:
    """``[0, a0, a0 + a1, ...]`` (one entry more than ``a``)."""
    out = np.zeros(len(a) + 1, np.int64)
    np.cumsum(a, out=out[1:])
    return out


def _spread(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Item ``i`` repeated ``counts[i]`` times, and each repeat's place ``0 .. counts[i] - 1``."""
    item = np.repeat(np.arange(len(counts)), counts)
    return item, np.arange(len(item)) - _exclusive_cumsum(counts)[item]


def _layer(layer: Layer, slot: np.ndarray, next_slot: int, wts: _Weights, elems: _Elements
           ) -> tuple[ProductLayer, SumLayer, int]:
    """The product and sum layer of ``layer``; assigns its sums' node slots from ``next_slot``."""
    reserved = max(g.chunk for g in layer.sums)
    sums = layer.sum_order()
    grids = [wts.grid[s] for s in sums]  # (B, C, nb, nc)
    nb = np.array([g[2] for g in grids], np.int64)
    nc = np.array([g[3] for g in grids], np.int64)
    block = np.array([g.block for g in layer.sums for _ in g.sums], np.int64)
    chunk = np.array([g.chunk for g in layer.sums for _ in g.sums], np.int64)
    first = reserved + _exclusive_cumsum(nc * chunk)  # each sum's runs, padded to whole chunks
    slots = next_slot + _exclusive_cumsum(nb * block)
    slot[sums] = slots[:-1]
    c = wts.bc.circuit
    tiles = np.array([wts.base[_key(c, s)] for s in sums], np.int64)
    sum_parts = []
    lo = 0
    for g in layer.sums:
        hi = lo + len(g.sums)
        sum_parts.append(_sum_partition(g.block, g.chunk, int(slots[lo]), first[lo:hi], nb[lo:hi],
                                        nc[lo:hi], tiles[lo:hi], _read_classes(c, g.sums)))
        lo = hi
    end = int(first[-1])
    child, start = elems.runs(np.array(sums, np.int64), first[:-1])
    return (ProductLayer(end, reserved, _products(layer, child, start, end, elems)),
            SumLayer(tuple(sum_parts)), int(slots[-1]))


def _read_classes(c: Circuit, sums: tuple[int, ...]) -> np.ndarray:
    """Per sum of a partition, the first of its sums with the same children (one per
    vector, never per edge): their elements have equal children."""
    first: dict[tuple[int, ...], int] = {}
    return np.array([first.setdefault(tuple(c.nodes[s].children), i)
                     for i, s in enumerate(sums)], np.int64)


def _sum_partition(B: int, C: int, first_slot: int, starts: np.ndarray, nb: np.ndarray,
                   nc: np.ndarray, tiles: np.ndarray, reads: np.ndarray) -> SumPartition:
    """A sum partition whose sums' blocks are laid out from node slot ``first_slot``; sum
    ``i`` has ``nb[i]`` blocks of ``nc[i]`` chunks, its elements from ``starts[i]``, its
    ``[nb, nc]`` tiles stored row-major from offset ``tiles[i]``, its read class
    ``reads[i]``."""
    of, row = _spread(nb)  # the sum of every block, and its place in the sum
    k = np.arange(int(nc.max()))[None, :]
    width = nc[of][:, None]
    chunk = np.where(k < width, starts[of][:, None] + C * k, 0)
    tile = np.where(k < width, tiles[of][:, None] + (row[:, None] * width + k) * (B * C),
                    0)  # padding chunks: the zero tile
    return SumPartition(B, C, first_slot + B * np.arange(len(of)), chunk, tile, nc[of],
                        reads[of])


def _products(layer: Layer, child: np.ndarray, start: np.ndarray, end: int, elems: _Elements
              ) -> tuple[ProductPartition, ...]:
    """Product partitions over the runs (``child`` vector and ``start`` element of each; padding:
    slot 0, log 1)."""
    bounds = np.append(start, end)
    parts = []
    r = 0
    for pg in layer.products:
        lo, hi = int(bounds[r]), int(bounds[r + pg.runs])
        parts.append(ProductPartition(lo, elems.table(child[r: r + pg.runs],
                                                      start[r: r + pg.runs] - lo,
                                                      hi - lo, pg.fanin)))
        r += pg.runs
    return tuple(parts)


_PASS, _ELEMENTWISE, _EDGES, _NESTED = range(4)  # how a run's elements read their factors


class _Elements:
    """The factor slots of element runs, written into product tables with whole-array numpy
    operations per partition (only products of products go one run at a time).

    A run's child vector is one of: a pass-through (an input or a sum: one factor, the node
    itself); an element-wise product (factor ``j`` of element ``i`` is node ``i`` of child
    ``j``, or node 0 of a one-node child); a product with explicit edges; a product of products
    (flattened by :func:`pccc.ir.layered.factors`).
    """

    def __init__(self, c: Circuit, slot: np.ndarray):
        self.c = c
        self.slot = slot
        nodes = c.nodes
        kids = [nd.children for nd in nodes]
        self.degree = np.array([len(k) for k in kids], np.int64)
        self.kid_ptr = _exclusive_cumsum(self.degree)
        self.kid = np.fromiter(chain.from_iterable(kids), np.int64, count=int(self.kid_ptr[-1]))
        self.size = np.array([nd.n for nd in nodes], np.int64)
        is_prod = np.array([isinstance(nd, ProductVector) for nd in nodes], bool)
        explicit = np.array([isinstance(nd, ProductVector) and nd.edges is not None
                             for nd in nodes], bool)
        owner = np.repeat(np.arange(len(nodes)), self.degree)
        nested = np.bincount(owner[is_prod[self.kid]], minlength=len(nodes)) > 0
        self.kind = np.where(~is_prod, _PASS,
                             np.where(nested, _NESTED, np.where(explicit, _EDGES, _ELEMENTWISE)))

    def runs(self, sums: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(child vector, first element)`` of every run of ``sums`` (sum ``i``'s runs laid out
        from element ``first[i]``), in order."""
        of, place = _spread(self.degree[sums])
        child = self.kid[self.kid_ptr[sums][of] + place]
        before = _exclusive_cumsum(self.size[child])  # elements of the runs before each run
        return child, first[of] + before[:-1] - before[_exclusive_cumsum(self.degree[sums])[of]]

    def table(self, child: np.ndarray, start: np.ndarray, rows: int, fanin: int) -> np.ndarray:
        """The ``[rows, fanin]`` table of the runs (``child`` vector and ``start`` row of each)."""
        table = np.zeros((rows, fanin), np.int64)
        kind = self.kind[child]
        sel = kind == _PASS
        if sel.any():
            self._pass_through(table, child[sel], start[sel])
        for kd, fill in ((_ELEMENTWISE, self._elementwise), (_EDGES, self._explicit)):
            sel = kind == kd
            if not sel.any():
                continue
            degree = self.degree[child[sel]]
            for k in sorted(set(degree.tolist())):  # the runs of k factors at once
                fill(table, child[sel][degree == k], start[sel][degree == k], k)
        for ch, a in zip(child[kind == _NESTED].tolist(), start[kind == _NESTED].tolist()):
            n = self.c.nodes[ch].n
            for j, (v, idx) in enumerate(factors(self.c, ch)):
                table[a: a + n, j] = self.slot[v] + idx
        return table

    def _pass_through(self, table: np.ndarray, child: np.ndarray, start: np.ndarray) -> None:
        """Runs of inputs or sums: element ``i`` reads node ``i``."""
        n = self.size[child]
        rows = _rows(start, n)
        _put_rows(table, rows, (rows + np.repeat(self.slot[child] - start, n))[:, None])

    def _elementwise(self, table: np.ndarray, child: np.ndarray, start: np.ndarray, k: int
                     ) -> None:
        """Runs of element-wise products of ``k`` factors: factor ``j`` of element ``i`` is node
        ``i`` of child ``j`` (node 0 of a one-node child)."""
        n = self.size[child]
        rows = _rows(start, n)
        factor = self.kid[self.kid_ptr[child][:, None] + np.arange(k)]
        moves = (self.size[factor] != 1).astype(np.int64)  # the node index follows the element
        base = self.slot[factor] - moves * start[:, None]
        vals = np.repeat(base, n, 0)
        vals += rows[:, None] if moves.all() else rows[:, None] * np.repeat(moves, n, 0)
        _put_rows(table, rows, vals)

    def _explicit(self, table: np.ndarray, child: np.ndarray, start: np.ndarray, k: int
                  ) -> None:
        """Runs of products of ``k`` factors with explicit edges."""
        nodes = self.c.nodes
        edges = np.concatenate([nodes[ch].edges for ch in child.tolist()])  # type: ignore[union-attr]
        n = self.size[child]
        factor_slots = self.slot[self.kid[self.kid_ptr[child][:, None] + np.arange(k)]]
        _put_rows(table, _rows(start, n), edges + np.repeat(factor_slots, n, 0))


def _put_rows(table: np.ndarray, rows: np.ndarray, vals: np.ndarray) -> None:
    """``table[rows, :k] = vals`` for ``[len(rows), k]`` values, the rest of those rows being
    zero, written as whole rows (one item per row: much faster than a 2-d fancy write)."""
    fanin = table.shape[1]
    if vals.shape[1] > fanin:
        raise PassError(f"layout-params: elements of {vals.shape[1]} factors in a product "
                        f"partition of fan-in {fanin}")
    if not fanin or not len(rows):
        return
    if vals.shape[1] < fanin:
        vals = np.concatenate([vals, np.zeros((len(vals), fanin - vals.shape[1]), np.int64)], 1)
    row = np.dtype((np.void, table.itemsize * fanin))
    table.view(row)[:, 0][rows] = np.ascontiguousarray(vals).view(row)[:, 0]


def _rows(start: np.ndarray, n: np.ndarray) -> np.ndarray:
    """The rows ``start[r] .. start[r] + n[r] - 1`` of every run ``r``, run after run."""
    return np.arange(int(n.sum())) + np.repeat(start - _exclusive_cumsum(n)[:-1], n)


@register_pass("layout-params", input_level="L2", output_level="L3")
def layout_params(lc: LayeredCircuit, *, threads: int = 0, float32_weights: bool = False
                  ) -> KernelPlan:
    """Lay out node slots, element runs, tiled weights and index tables as flat arrays.

    Args:
        threads: threads copying parameters (0: one per core, at most 8); the result does
            not depend on it.
        float32_weights: store the flat sum weights as float32, rounded (what the Triton
            kernels compute with: its modules are the same; 4 bytes a weight less on the
            host for circuits of billions of weights; the float64 torch backend then starts
            from the rounded weights).
    """
    c = lc.circuit
    slot = np.full(len(c.nodes), -1, np.int64)  # node slot of every input and sum vector
    jobs: list[_Job] = []
    in_layers, in_params, in_map, next_slot = _input_layers(c, slot, 1, jobs)
    order = [s for layer in lc.layers for s in layer.sum_order()]
    wts = _Weights(lc.blocked, order, np.float32 if float32_weights else np.float64)
    _run_jobs(jobs + wts.jobs(PIECE), threads)
    layers: list[ProductLayer | SumLayer] = []
    elems = _Elements(c, slot)
    for layer in lc.layers:
        prod, sm, next_slot = _layer(layer, slot, next_slot, wts, elems)
        layers += [prod, sm]
    pmap = {k: v for k, v in wts.pmap.items() if k != ROOT_KEY}
    pmap.update(in_map)
    cards = c.var_cards()
    plan = KernelPlan(
        num_vars=c.num_vars,
        var_cards=np.array([cards.get(v) or 0 for v in range(c.num_vars)], np.int64),
        num_node_slots=next_slot, root_slot=int(slot[c.root]), num_roots=c.nodes[c.root].n,
        input_layers=tuple(in_layers),
        layers=tuple(layers), params=wts.params, reserved_params=wts.reserved,
        param_group=wts.group, group_size=wts.group_size, input_params=in_params,
        param_map=ParamMap(pmap), input_param_keys=frozenset(in_map),
        meta=(("lowering", "passes"),))
    return plan
