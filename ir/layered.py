"""L2 layered IR: blocked sum vectors grouped into alternating product/sum layers.

Layer ``l`` is a product layer followed by a sum layer. Its sum layer is a list of partitions
(:class:`SumGroup`), each a list of sum vectors with one tile shape ``(B, C)``. Its product
layer computes the *element runs* the sums read: for every sum vector of the layer (in
partition order) and every child of that sum, one run of elements (a product child: one
element per product node, the product of its factors, nested products flattened; an input or
sum child: one single-factor element per node, a pass-through). A sum's runs are contiguous
and padded to whole chunks. :class:`ProductGroup` s cut the sequence of runs into partitions of
one fan-in. Skip connections need nothing: elements read node values of any earlier layer.

Example::

    layered = run_pipeline(circuit, "canonicalize,group-blocks,partition-layers")
    for layer in layered.layers:
        print([len(g.sums) for g in layer.sums])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pccc.ir.blocked import BlockedCircuit, verify_blocked
from pccc.ir.circuit import Circuit, InputVector, ProductVector, SumVector
from pccc.ir.errors import VerifyError


@dataclass(frozen=True)
class SumGroup:
    """One sum partition: sum vectors sharing the tile shape ``(block, chunk)``."""

    block: int
    """node-block size B of every member"""
    chunk: int
    """element-chunk size C of every member"""
    sums: tuple[int, ...]
    """member sum vectors, in the order their blocks are laid out"""


@dataclass(frozen=True)
class ProductGroup:
    """One product partition: ``runs`` consecutive element runs computed with ``fanin`` factors."""

    fanin: int
    """factors per element (shorter elements are padded with log 1)"""
    runs: int
    """number of consecutive runs of the layer covered by this partition"""


@dataclass(frozen=True)
class Layer:
    """A product layer and the sum layer that reads it."""

    sums: tuple[SumGroup, ...]
    """sum partitions"""
    products: tuple[ProductGroup, ...]
    """product partitions, covering the layer's runs in order"""

    def sum_order(self) -> list[int]:
        """The sum vectors of the layer in layout order."""
        return [s for g in self.sums for s in g.sums]


@dataclass(frozen=True, eq=False)
class LayeredCircuit:
    """An L2 value: a blocked circuit and its layers."""

    blocked: BlockedCircuit
    """the L1 value it partitions"""
    layers: tuple[Layer, ...]
    """layers bottom-up; every sum vector appears in exactly one"""

    level = "L2"

    @property
    def circuit(self) -> Circuit:
        return self.blocked.circuit

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LayeredCircuit):
            return NotImplemented
        return self.blocked == other.blocked and self.layers == other.layers

    def __hash__(self) -> int:
        return hash((hash(self.blocked), len(self.layers)))


def factors(c: Circuit, vid: int) -> list[tuple[int, np.ndarray]]:
    """A child vector as element factors: ``[(non-product vector, node index per element)]``.

    Products are flattened (a product of products multiplies all their factors); any other
    vector is its own single factor.
    """
    nd = c.nodes[vid]
    if not isinstance(nd, ProductVector):
        return [(vid, np.arange(nd.n))]
    table = nd.edge_table([c.nodes[ch].n for ch in nd.children])
    out: list[tuple[int, np.ndarray]] = []
    for j, ch in enumerate(nd.children):
        if not isinstance(c.nodes[ch], ProductVector):  # its own factor: the column itself
            out.append((ch, table[:, j]))
            continue
        for v, idx in factors(c, ch):
            out.append((v, idx[table[:, j]]))
    return out


def num_factors(c: Circuit, vid: int, memo: dict[int, int] | None = None) -> int:
    """Factors of each element of child vector ``vid`` (1 for a non-product).

    ``memo`` caches the counts across calls on the same circuit.
    """
    nd = c.nodes[vid]
    if not isinstance(nd, ProductVector):
        return 1
    if memo is not None and vid in memo:
        return memo[vid]
    k = sum(num_factors(c, ch, memo) for ch in nd.children)
    if memo is not None:
        memo[vid] = k
    return k


def factor_counts(c: Circuit) -> list[int]:
    """:func:`num_factors` of every vector, in one pass over the (topologically sorted) nodes."""
    out: list[int] = []
    for nd in c.nodes:
        out.append(sum([out[ch] for ch in nd.children]) if isinstance(nd, ProductVector) else 1)
    return out


def heights(c: Circuit) -> list[int]:
    """Sum layer of each vector: inputs 0, a sum one above its highest child, a product at
    its highest child's height."""
    h: list[int] = []
    at = h.__getitem__
    for nd in c.nodes:
        if isinstance(nd, InputVector):
            h.append(0)
        elif isinstance(nd, ProductVector):
            h.append(max(map(at, nd.children)))
        else:
            h.append(1 + max(map(at, nd.children)))
    return h


def verify_layered(lc: LayeredCircuit) -> None:
    """Check the L2 invariants (and the L1 ones).

    Every sum vector sits in exactly one layer, above every sum or input it reads (through
    its product children too); partition tile shapes match the blocking; product partitions
    cover the layer's runs with enough fan-in.

    Raises:
        VerifyError: naming the first offending vector or layer.
    """
    bc = lc.blocked
    verify_blocked(bc)
    c = bc.circuit
    layer_of: dict[int, int] = {}
    memo: dict[int, int] = {}
    for li, layer in enumerate(lc.layers):
        if not layer.sums:
            raise VerifyError(f"layer {li} has no sum partition")
        for g in layer.sums:
            _check_group(bc, li, g, layer_of)
        _check_products(c, li, layer, memo)
    for i, nd in enumerate(c.nodes):
        if isinstance(nd, SumVector) and i not in layer_of:
            raise VerifyError("sum vector in no layer", node=i)
    for s, li in layer_of.items():
        for ch in c.nodes[s].children:
            for v, _ in factors(c, ch):
                if v in layer_of and layer_of[v] >= li:
                    raise VerifyError(f"reads %{v} of layer {layer_of[v]} from layer {li}",
                                      node=s)


def _check_group(bc: BlockedCircuit, li: int, g: SumGroup, layer_of: dict[int, int]) -> None:
    c = bc.circuit
    if not g.sums:
        raise VerifyError(f"layer {li}: empty sum partition")
    for s in g.sums:
        if not (0 <= s < len(c.nodes)) or not isinstance(c.nodes[s], SumVector):
            raise VerifyError(f"layer {li}: %{s} is not a sum vector")
        if s in layer_of:
            raise VerifyError(f"in layers {layer_of[s]} and {li}", node=s)
        if bc.blocks[s] != (g.block, g.chunk):
            raise VerifyError(f"layer {li}: partition shape ({g.block}, {g.chunk}) "
                              f"differs from the blocking {bc.blocks[s]}", node=s)
        layer_of[s] = li


def _check_products(c: Circuit, li: int, layer: Layer, memo: dict[int, int]) -> None:
    runs = [num_factors(c, ch, memo) for s in layer.sum_order() for ch in c.nodes[s].children]
    if sum(g.runs for g in layer.products) != len(runs):
        raise VerifyError(f"layer {li}: product partitions cover "
                          f"{sum(g.runs for g in layer.products)} runs, the sums read "
                          f"{len(runs)}")
    pos = 0
    for g in layer.products:
        if g.runs < 1:
            raise VerifyError(f"layer {li}: empty product partition")
        need = max(runs[pos: pos + g.runs])
        if need > g.fanin:
            raise VerifyError(f"layer {li}: product partition of fan-in {g.fanin} holds "
                              f"elements of {need} factors")
        pos += g.runs
