"""Analyses of L0 circuits: scopes, depths, counts. Nouns, computed on demand."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pccc.ir.circuit import Circuit, InputVector, ProductVector, SumVector


def scopes(c: Circuit) -> list[frozenset[int]]:
    """The set of variables below each node vector."""
    out: list[frozenset[int]] = []
    for nd in c.nodes:
        if isinstance(nd, InputVector):
            out.append(frozenset((nd.var,)))
        else:
            s: frozenset[int] = frozenset()
            for ch in nd.children:
                s = s | out[ch]
            out.append(s)
    return out


def depths(c: Circuit) -> list[int]:
    """Longest path from each node vector down to an input (inputs have depth 0)."""
    out: list[int] = []
    for nd in c.nodes:
        out.append(0 if isinstance(nd, InputVector) else 1 + max(out[ch] for ch in nd.children))
    return out


def reachable(c: Circuit) -> np.ndarray:
    """Boolean mask of node vectors reachable from the root."""
    if not c.nodes:
        return np.zeros(0, dtype=bool)
    mask = [False] * len(c.nodes)  # (a list: numpy scalar indexing is slow)
    mask[c.root] = True
    nodes = c.nodes
    for i in range(c.root, -1, -1):
        if mask[i]:
            for ch in nodes[i].children:
                mask[ch] = True
    return np.array(mask, dtype=bool)


def num_edges(c: Circuit, node_id: int) -> int:
    """Edges into the scalar nodes of one vector (sum: n x m, product: n x k)."""
    nd = c.nodes[node_id]
    if isinstance(nd, SumVector):
        return nd.n * sum(c.nodes[ch].n for ch in nd.children)
    if isinstance(nd, ProductVector):
        return nd.n * len(nd.children)
    return 0


@dataclass(frozen=True)
class Counts:
    """Sizes of a circuit, counting scalar nodes (not vectors)."""

    vectors: int
    nodes: int
    input_nodes: int
    sum_nodes: int
    product_nodes: int
    sum_edges: int
    product_edges: int
    params: int
    depth: int

    @property
    def edges(self) -> int:
        return self.sum_edges + self.product_edges


def counts(c: Circuit) -> Counts:
    """Count node vectors, scalar nodes, edges and free parameters (tied storage counted once)."""
    n_in = n_sum = n_prod = e_sum = e_prod = 0
    for i, nd in enumerate(c.nodes):
        if isinstance(nd, InputVector):
            n_in += nd.n
        elif isinstance(nd, SumVector):
            n_sum += nd.n
            e_sum += num_edges(c, i)
        else:
            n_prod += nd.n
            e_prod += num_edges(c, i)
    n_params = sum(int(v.size) for v in c.params.values())
    d = max(depths(c), default=0)
    return Counts(len(c.nodes), n_in + n_sum + n_prod, n_in, n_sum, n_prod, e_sum, e_prod,
                  n_params, d)
