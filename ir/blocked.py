"""L1 blocked IR: the L0 circuit with every sum vector cut into ``B x C`` weight tiles.

A sum vector of ``n`` nodes over a run of ``m`` child elements (its children concatenated, a
product child contributing one element per product node) is cut into ``ceil(n / B)`` node
blocks and ``ceil(m / C)`` element chunks; block ``b`` and chunk ``k`` meet in the dense tile
``W[b*B : (b+1)*B, k*C : (k+1)*C]`` (zero-padded at the edges). ``B = C = 1`` is the sparse
form that scalar circuits read from files use.

The circuit is kept whole (it is the parameter store too); blocking is a table beside it. The
text of an L1 value names its source circuit (the circuit before :func:`wrap_root`) and prints
the tile shapes (see :mod:`pccc.ir.print_lowered`).

Example::

    from pccc.passes import run_pipeline
    blocked = run_pipeline(circuit, "canonicalize,group-blocks{block-size=32}")
    blocked.blocks[blocked.circuit.root]      # (B, C) of the root
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from pccc.ir.circuit import Circuit, InputVector, ProductVector, SumVector
from pccc.ir.errors import VerifyError

#: key of the weight array of a root sum added when the source root is not a sum vector
ROOT_KEY = "__root__"


def wrap_root(c: Circuit) -> Circuit:
    """``c`` with its root vector of ``n`` nodes wrapped in a sum vector of ``n`` nodes whose
    weights ``@__root__`` are the identity (node ``r`` passes root node ``r`` through); the
    wrapper is the last node and the new root."""
    n = c.nodes[c.root].n
    params = dict(c.params.items())
    params[ROOT_KEY] = np.eye(n)
    nodes = c.nodes + (SumVector(n, (c.root,), ROOT_KEY),)
    return Circuit(nodes, params, c.num_vars, len(nodes) - 1)


def split_root(c: Circuit) -> tuple[Circuit, bool]:
    """The circuit ``c`` was made from by :func:`wrap_root` and True, or ``c`` and False when
    its root is no such wrapper."""
    nd = c.nodes[c.root]
    if not (c.root == len(c.nodes) - 1 and isinstance(nd, SumVector) and nd.param == ROOT_KEY
            and len(nd.children) == 1 and c.nodes[nd.children[0]].n == nd.n):
        return c, False
    if sum(getattr(x, "param", None) == ROOT_KEY for x in c.nodes) != 1:
        return c, False
    w = c.params.get(ROOT_KEY)
    if w is None or w.shape != (nd.n, nd.n) or not np.array_equal(w, np.eye(nd.n)):
        return c, False
    params = {k: v for k, v in c.params.items() if k != ROOT_KEY}
    return Circuit(c.nodes[:-1], params, c.num_vars, nd.children[0]), True


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for positive integers."""
    return -(-a // b)


def run_length(c: Circuit, vid: int) -> int:
    """Elements a sum vector mixes: the sizes of its children added up."""
    nodes = c.nodes
    return sum([nodes[ch].n for ch in nodes[vid].children])


@dataclass(frozen=True, eq=False)
class BlockedCircuit:
    """An L1 value: an L0 circuit whose root is a sum, and the tile shape of each sum vector."""

    circuit: Circuit
    """the (canonical) L0 circuit; its root is a sum vector"""
    blocks: Mapping[int, tuple[int, int]] = field(default_factory=dict)
    """sum vector id -> ``(B, C)``: node-block size and element-chunk size"""

    level = "L1"

    def __post_init__(self) -> None:
        items = sorted((int(k), (int(v[0]), int(v[1]))) for k, v in self.blocks.items())
        object.__setattr__(self, "blocks", MappingProxyType(dict(items)))
        object.__setattr__(self, "_grids", {})  # grid() of each vector, made once

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BlockedCircuit):
            return NotImplemented
        return self.circuit == other.circuit and dict(self.blocks) == dict(other.blocks)

    def __hash__(self) -> int:
        return hash((hash(self.circuit), len(self.blocks)))

    def grid(self, vid: int) -> tuple[int, int, int, int]:
        """``(B, C, num_blocks, num_chunks)`` of sum vector ``vid``."""
        grids: dict[int, tuple[int, int, int, int]] = self._grids  # type: ignore[attr-defined]
        g = grids.get(vid)
        if g is None:
            B, C = self.blocks[vid]
            n, m = self.circuit.nodes[vid].n, run_length(self.circuit, vid)
            g = grids[vid] = B, C, ceil_div(n, B), ceil_div(m, C)
        return g


def verify_blocked(bc: BlockedCircuit) -> None:
    """Check the L1 invariants (and the L0 ones of the circuit inside).

    Raises:
        VerifyError: naming the first offending vector.
    """
    c = bc.circuit
    _verify_l0(c)
    if not isinstance(c.nodes[c.root], SumVector):
        raise VerifyError("the root of a blocked circuit must be a sum vector", node=c.root)
    shape_of: dict[str, tuple[int, int]] = {}
    for i, nd in enumerate(c.nodes):
        if isinstance(nd, SumVector):
            if i not in bc.blocks:
                raise VerifyError("sum vector without a block shape", node=i)
            if shape_of.setdefault(nd.param, bc.blocks[i]) != bc.blocks[i]:
                raise VerifyError(f"tied weights @{nd.param} blocked two ways", node=i)
            B, C = bc.blocks[i]
            if B < 1 or C < 1:
                raise VerifyError(f"block shape ({B}, {C}) must be positive", node=i)
        elif i in bc.blocks:
            raise VerifyError(f"{nd.kind} vector has a block shape (only sums have one)", node=i)
        elif isinstance(nd, ProductVector) and i == c.root:
            raise VerifyError("product root", node=i)
        elif not isinstance(nd, (InputVector, ProductVector)):
            raise VerifyError(f"unknown node type {type(nd).__name__}", node=i)


def _verify_l0(c: Circuit) -> None:
    """Run the L0 verifier (structure, parameters, smoothness, decomposability)."""
    from pccc.ir.verify import verify

    verify(c)
