"""A direct L0 -> L3 lowering: the whole compiler middle in one function.

This is the seed of the ``group-blocks``/``partition-layers``/``layout-params`` passes and the
fallback ``pccc.compile`` uses until they land. It loops over node *vectors*, never over edges.
See :mod:`pccc.ir.plan` for what the produced arrays mean.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from pccc.ir import dists
from pccc.ir.circuit import Circuit, InputVector, ProductVector, SumVector
from pccc.ir.plan import (
    InputLayer,
    KernelPlan,
    ProductLayer,
    ProductPartition,
    SumLayer,
    SumPartition,
)

ROOT_KEY = "__root__"


def _pow2ceil(x: int) -> int:
    return 1 << max(0, int(x - 1).bit_length())


def _factors(c: Circuit, vid: int) -> list[tuple[int, np.ndarray]]:
    """A vector as a list of (non-product vector, index per node): products flattened."""
    nd = c.nodes[vid]
    if not isinstance(nd, ProductVector):
        return [(vid, np.arange(nd.n))]
    table = nd.edge_table([c.nodes[ch].n for ch in nd.children])
    out: list[tuple[int, np.ndarray]] = []
    for j, ch in enumerate(nd.children):
        for v, idx in _factors(c, ch):
            out.append((v, idx[table[:, j]]))
    return out


def _heights(c: Circuit) -> list[int]:
    """Sum layer of each vector (inputs 0; a product sits at its highest child's height)."""
    h: list[int] = []
    for nd in c.nodes:
        if isinstance(nd, InputVector):
            h.append(0)
        elif isinstance(nd, ProductVector):
            h.append(max(h[ch] for ch in nd.children))
        else:
            h.append(1 + max(h[ch] for ch in nd.children))
    return h


@dataclass
class _State:
    c: Circuit
    block_size: int
    slot: dict[int, int] = field(default_factory=dict)  # vector -> first node slot
    next_slot: int = 1
    params: list[np.ndarray] = field(default_factory=list)
    groups: list[np.ndarray] = field(default_factory=list)
    group_size: list[int] = field(default_factory=list)
    next_param: int = 0
    key_tiles: dict[str, dict[tuple[int, int], int]] = field(default_factory=dict)
    key_groups: dict[str, int] = field(default_factory=dict)
    param_map: dict[str, np.ndarray] = field(default_factory=dict)

    def alloc_slots(self, vid: int, count: int) -> int:
        start = self.next_slot
        self.slot[vid] = start
        self.next_slot += count
        return start

    def add_params(self, values: np.ndarray, groups: np.ndarray) -> int:
        start = self.next_param
        self.params.append(values.ravel())
        self.groups.append(groups.ravel())
        self.next_param += values.size
        return start


def _input_layers(st: _State) -> tuple[list[InputLayer], np.ndarray, set[str]]:
    c = st.c
    by_family: dict[tuple, list[int]] = defaultdict(list)
    for i, nd in enumerate(c.nodes):
        if isinstance(nd, InputVector):
            fam = tuple((k, v) for k, v in nd.attrs if k != "values")
            by_family[(nd.dist, fam)].append(i)
    layers, chunks, offset = [], [], 0
    key_base: dict[str, int] = {}
    input_keys: set[str] = set()
    for (dist, fam), vids in sorted(by_family.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        cls = dists.get(dist)
        start = st.next_slot
        vars_, pstart, values = [], [], []
        for vid in vids:
            nd = c.nodes[vid]
            assert isinstance(nd, InputVector)
            st.alloc_slots(vid, nd.n)
            vars_.append(np.full(nd.n, nd.var))
            shape = cls.param_shape(nd.n, nd.attr_dict())
            psize = 0 if shape is None else int(np.prod(shape[1:], dtype=np.int64))
            if nd.param is None:
                pstart.append(np.zeros(nd.n, np.int64))
            else:
                if nd.param not in key_base:
                    arr = c.params[nd.param]
                    key_base[nd.param] = offset
                    st.param_map[nd.param] = offset + np.arange(arr.size).reshape(arr.shape)
                    input_keys.add(nd.param)
                    chunks.append(arr.ravel())
                    offset += arr.size
                pstart.append(key_base[nd.param] + psize * np.arange(nd.n))
            if dist == "indicator":
                values.append(np.asarray(nd.attr_dict()["values"], np.int64))
        first = c.nodes[vids[0]]
        shape = cls.param_shape(first.n, first.attr_dict())
        psize = 0 if shape is None else int(np.prod(shape[1:], dtype=np.int64))
        layers.append(InputLayer(dist, fam, start, np.concatenate(vars_), np.concatenate(pstart),
                                 psize, np.concatenate(values) if values else None))
    flat = np.concatenate(chunks) if chunks else np.zeros(0)
    return layers, flat, input_keys


def _sum_tiles(st: _State, vid: int, key: str, w: np.ndarray, B: int, C: int) -> np.ndarray:
    """Tile offsets ``[nb, nc]`` of a weight array; tied keys reuse the first allocation."""
    n, m = w.shape
    nb, nc = -(-n // B), -(-m // C)
    if key not in st.key_tiles:
        if key not in st.key_groups:
            st.key_groups[key] = len(st.group_size)
            st.group_size.extend([m] * n)
        g0 = st.key_groups[key]
        pad = np.zeros((nb * B, nc * C))
        pad[:n, :m] = w
        gpad = np.full((nb * B, nc * C), -1, np.int64)
        gpad[:n, :m] = (g0 + np.arange(n))[:, None]
        tiles = pad.reshape(nb, B, nc, C).transpose(0, 2, 1, 3)  # [nb, nc, B, C]
        gt = gpad.reshape(nb, B, nc, C).transpose(0, 2, 1, 3)
        base = st.add_params(np.ascontiguousarray(tiles), np.ascontiguousarray(gt))
        offs = base + np.arange(nb * nc * B * C).reshape(nb, nc, B, C)
        st.param_map[key] = offs.transpose(0, 2, 1, 3).reshape(nb * B, nc * C)[:n, :m]
        st.key_tiles[key] = {(0, 0): base}
    base = st.key_tiles[key][(0, 0)]
    return base + (np.arange(nb)[:, None] * nc + np.arange(nc)[None, :]) * (B * C)


def _choose_sizes(n: int, m: int, block_size: int) -> tuple[int, int]:
    if n == 1 and m <= 1:
        return 1, 1
    B = min(block_size, _pow2ceil(n))
    C = min(block_size, _pow2ceil(m)) if n > 1 else 1
    return B, C


def lower_to_plan(c: Circuit, *, block_size: int = 32) -> KernelPlan:
    """Lower an L0 circuit straight to a :class:`KernelPlan` (see the module docstring)."""
    c = _rooted(c)
    st = _State(c, block_size)
    st.add_params(np.zeros(block_size * block_size), np.full(block_size * block_size, -1))
    reserved_params = st.next_param
    in_layers, in_params, in_keys = _input_layers(st)
    heights = _heights(c)
    sums_at: dict[int, list[int]] = defaultdict(list)
    for i, nd in enumerate(c.nodes):
        if isinstance(nd, SumVector):
            sums_at[heights[i]].append(i)
    layers: list[ProductLayer | SumLayer] = []
    for h in sorted(sums_at):
        layers.extend(_lower_height(st, sums_at[h]))
    plan = KernelPlan(
        num_vars=c.num_vars,
        var_cards=np.array([c.var_cards().get(v) or 0 for v in range(c.num_vars)], np.int64),
        num_node_slots=st.next_slot, root_slot=st.slot[c.root],
        input_layers=tuple(in_layers), layers=tuple(layers),
        params=np.concatenate(st.params), reserved_params=reserved_params,
        param_group=np.concatenate(st.groups).astype(np.int64),
        group_size=np.asarray(st.group_size, np.int64), input_params=in_params,
        param_map={k: v for k, v in st.param_map.items() if k != ROOT_KEY},
        input_param_keys=frozenset(in_keys),
        meta=(("lowering", f"direct block-size={block_size}"),))
    return plan


def _rooted(c: Circuit) -> Circuit:
    """Make the root a sum vector (wrap a product or input root in a 1-weight sum)."""
    if isinstance(c.nodes[c.root], SumVector):
        return c
    if c.nodes[c.root].n != 1:
        raise ValueError("the root vector must hold a single node")
    params = dict(c.params)
    params[ROOT_KEY] = np.ones((1, 1))
    nodes = c.nodes[: c.root + 1] + (SumVector(1, (c.root,), ROOT_KEY),)
    return Circuit(nodes, params, c.num_vars, len(nodes) - 1)


def _lower_height(st: _State, sum_vids: list[int]) -> list[ProductLayer | SumLayer]:
    """One product layer (the children of these sums) and one sum layer."""
    c = st.c
    sizes = {vid: _choose_sizes(c.nodes[vid].n, sum(c.nodes[ch].n for ch in c.nodes[vid].children),
                                st.block_size) for vid in sum_vids}
    reserved = max(C for _, C in sizes.values())
    next_elem = reserved
    blocks: dict[tuple[int, int, int], list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = \
        defaultdict(list)
    elem_chunks: list[tuple[int, np.ndarray]] = []
    for vid in sum_vids:
        nd = c.nodes[vid]
        assert isinstance(nd, SumVector)
        B, C = sizes[vid]
        run_start = next_elem
        for ch in nd.children:
            facs = _factors(c, ch)
            rows = np.stack([st.slot[v] + idx for v, idx in facs], axis=1)
            elem_chunks.append((next_elem, rows))
            next_elem += rows.shape[0]
        m = next_elem - run_start
        nc = -(-m // C)
        next_elem = run_start + nc * C  # pad the run to whole chunks
        w = c.params[nd.param]
        tiles = _sum_tiles(st, vid, nd.param, w, B, C)
        nb = tiles.shape[0]
        node0 = st.alloc_slots(vid, nb * B)
        chunk = run_start + C * np.arange(nc)
        for b in range(nb):
            blocks[(B, C, _pow2ceil(nc))].append((np.array(node0 + b * B), chunk, tiles[b]))
    prod_parts = _product_partitions(elem_chunks)
    sum_parts = []
    for (B, C, _), items in sorted(blocks.items()):
        ncmax = max(len(ch) for _, ch, _ in items)
        cs = np.zeros((len(items), ncmax), np.int64)
        ps = np.zeros((len(items), ncmax), np.int64)
        for i, (_, ch, ti) in enumerate(items):
            cs[i, : len(ch)] = ch
            ps[i, : len(ch)] = ti
        sum_parts.append(SumPartition(B, C, np.array([int(s) for s, _, _ in items]), cs, ps,
                                      np.array([len(ch) for _, ch, _ in items])))
    return [ProductLayer(next_elem, reserved, tuple(prod_parts)), SumLayer(tuple(sum_parts))]


def _product_partitions(elem_chunks: list[tuple[int, np.ndarray]]) -> list[ProductPartition]:
    """All element runs of the layer in one partition, fan-in padded with slot 0 (log 1).

    Runs are laid out back to back except for chunk padding, whose elements also read slot 0:
    their value is log 1, harmless because their weights are 0.
    """
    if not elem_chunks:
        return []
    fanin = max(rows.shape[1] for _, rows in elem_chunks)
    first = min(s for s, _ in elem_chunks)
    last = max(s + rows.shape[0] for s, rows in elem_chunks)
    table = np.zeros((last - first, fanin), np.int64)
    for start, rows in elem_chunks:
        table[start - first : start - first + rows.shape[0], : rows.shape[1]] = rows
    return [ProductPartition(first, table)]
