"""``canonicalize`` (L0 -> L0): a smaller circuit computing the same function.

Always (the parametrization is kept, so training the result equals training the source):

- drop vectors the root does not reach;
- flatten nested products (a product child's factors become the parent's factors);
- collapse single-child products that pass their child through unchanged;
- merge structurally identical vectors that name the same parameters (hash-consing).

On request (the ``default`` inference pipeline turns these on, ``training`` leaves them off):

- ``collapse-sums``: drop sum vectors whose weights are the identity (a single-child sum of
  weight 1 included);
- ``merge-sum-chains``: fold a sum child read by one parent into it (the weights multiply out);
- ``merge-identical``: also merge identical vectors whose parameters are equal but stored under
  different keys.

One bottom-up sweep over node *vectors*; weights are touched only by the chain merge.
"""

from __future__ import annotations

from collections import Counter
from itertools import chain
from typing import Any

import numpy as np

from pccc.ir.analyses import reachable
from pccc.ir.circuit import Circuit, InputVector, Node, ProductVector, SumVector
from pccc.passes.registry import register_pass


def _is_identity(w: np.ndarray) -> bool:
    if w.shape == (1, 1):
        return bool(w[0, 0] == 1.0)
    return bool(np.array_equal(w, np.eye(w.shape[0])))


def _default_table(n: int, sizes: list[int]) -> np.ndarray:
    cols = [np.zeros(n, np.int64) if m == 1 else np.arange(n) for m in sizes]
    return np.stack(cols, axis=1) if cols else np.zeros((n, 0), np.int64)


def _product_key(nd: ProductVector) -> Any:
    """The structure key of a product vector (its edges by their bytes)."""
    return ("p", nd.n, nd.children, None if nd.edges is None else nd.edges.tobytes())


class _Sweep:
    """State of one canonicalization sweep: the new nodes and how old ids map onto them."""

    def __init__(self, c: Circuit, merge_identical: bool):
        self.c = c
        self.merge_identical = merge_identical
        self.nodes: list[Node] = []
        self.params: dict[str, np.ndarray] = {}
        self.alias: list[int] = [-1] * len(c.nodes)
        self.refs: list[int] = []  # parent edges of each new vector
        self.cons: dict[Any, Any] = {}
        self.pending: dict[str, np.ndarray] = {}
        reach = reachable(c).tolist()
        self.reach = reach
        live = [nd for nd, r in zip(c.nodes, reach) if r]
        kids = list(chain.from_iterable([nd.children for nd in live]))
        self.old_refs: list[int] = np.bincount(np.array(kids, np.int64),
                                               minlength=len(c.nodes)).tolist()
        self.old_refs[c.root] += 1
        self.key_users: Counter[str] = Counter(
            [str(p) for p in [getattr(nd, "param", None) for nd in live] if p])

    def size(self, nid: int) -> int:
        return self.nodes[nid].n

    def emit(self, old: int, nd: Node) -> None:
        """Add ``nd`` for old vector ``old`` unless an identical vector exists."""
        if isinstance(nd, ProductVector):
            self._add(old, nd, _product_key(nd), None)
        elif isinstance(nd, SumVector):
            self._add(old, nd, ("s", nd.n, nd.children), nd.param)
        else:
            self._add(old, nd, ("i", nd.n, nd.var, nd.dist, nd.attrs), nd.param)

    def _add(self, old: int, nd: Node, skey: Any, param: str | None) -> None:
        """:meth:`emit` with the structure key ``skey`` and parameter key ``param`` of ``nd``."""
        exact = (skey, param)  # same structure, same parameters: always the same vector
        found = self.cons.get(exact)
        if found is None and self.merge_identical and param is not None:
            found = self._equal_valued(skey, param)
        if found is not None:
            self.point(old, found)
            self._drop_refs(nd)
            return
        nid = len(self.nodes)
        self.nodes.append(nd)
        self.refs.append(self.old_refs[old])
        self.alias[old] = nid
        if param is not None and param not in self.params:
            self.params[param] = self.value(param)
        self.cons[exact] = nid
        if self.merge_identical and param is not None:
            self._remember_value(skey, param, nid)

    def _value_key(self, skey: Any, param: str) -> Any:
        arr = self.value(param)
        # small arrays are keyed by their bytes; big ones by shape, then compared
        return (skey, arr.shape, arr.tobytes() if arr.size <= 4096 else None)

    def _equal_valued(self, skey: Any, param: str) -> int | None:
        for cand in self.cons.get(self._value_key(skey, param), []):
            other = getattr(self.nodes[cand], "param", None)
            if other is not None and self._same(param, other):
                return int(cand)
        return None

    def _remember_value(self, skey: Any, param: str, nid: int) -> None:
        self.cons.setdefault(self._value_key(skey, param), []).append(nid)

    def _scalar_product(self, i: int, kids: list[int]) -> None:
        """A product of one node (children of one node each): flattened with plain lists."""
        flat: list[int] = []
        for k in kids:
            sub = self.nodes[k]
            if isinstance(sub, ProductVector) and sub.edges is None and sub.n == 1:
                flat.extend(sub.children)
                self.refs[k] -= 1
                for g in sub.children:
                    self.refs[g] += 1
            else:
                flat.append(k)
        if len(flat) == 1:  # a pass-through product
            self.refs[flat[0]] -= 1
            self.point(i, flat[0])
            return
        self.emit(i, ProductVector(1, tuple(flat)))

    def value(self, key: str) -> np.ndarray:
        """The (possibly folded) weights stored under ``key``."""
        return self.pending[key] if key in self.pending else self.c.params[key]

    def _same(self, a: str, b: str) -> bool:
        x, y = self.value(a), self.value(b)
        return x.shape == y.shape and bool(np.array_equal(x, y))

    def _drop_refs(self, nd: Node) -> None:
        for ch in nd.children:
            self.refs[ch] -= 1

    def point(self, old: int, new: int) -> None:
        self.alias[old] = new
        self.refs[new] += self.old_refs[old]

    def product(self, i: int, nd: ProductVector) -> None:
        kids = [self.alias[ch] for ch in nd.children]
        nodes = self.nodes
        if len(kids) > 1 and not any([isinstance(nodes[k], ProductVector) for k in kids]):
            new = tuple(kids)  # nothing to flatten (the vector itself when ids are unchanged)
            if new != nd.children:
                nd = ProductVector(nd.n, new, nd.edges)
            self._add(i, nd, _product_key(nd), None)
            return
        if nd.n == 1 and nd.edges is None:
            self._scalar_product(i, kids)
            return
        table = nd.edge_table([self.c.nodes[ch].n for ch in nd.children])
        new_kids: list[int] = []
        cols: list[np.ndarray] = []
        for j, k in enumerate(kids):
            sub = self.nodes[k]
            if isinstance(sub, ProductVector):  # flatten: already flat itself
                sub_table = sub.edge_table([self.size(g) for g in sub.children])
                new_kids.extend(sub.children)
                cols.extend(sub_table[table[:, j], q] for q in range(len(sub.children)))
                self.refs[k] -= 1
                for g in sub.children:
                    self.refs[g] += 1
            else:
                new_kids.append(k)
                cols.append(table[:, j])
        flat = np.stack(cols, axis=1)
        if len(new_kids) == 1 and self.size(new_kids[0]) == nd.n and \
                np.array_equal(flat[:, 0], np.arange(nd.n)):
            self.refs[new_kids[0]] -= 1
            self.point(i, new_kids[0])
            return
        sizes = [self.size(k) for k in new_kids]
        plain = all(m in (1, nd.n) for m in sizes) and np.array_equal(
            flat, _default_table(nd.n, sizes))
        self.emit(i, ProductVector(nd.n, tuple(new_kids), None if plain else flat))

    def sum(self, i: int, nd: SumVector, chains: bool, collapse: bool) -> None:
        kids = [self.alias[ch] for ch in nd.children]
        w = self.c.params[nd.param]
        key = nd.param
        if chains and self.key_users[nd.param] == 1 and any(self._foldable(k) for k in kids):
            kids, w2 = self._fold_chains(kids, w)
            if w2 is not w:
                w = w2
                w.setflags(write=False)
                self.pending[key] = w
        if collapse and len(kids) == 1 and w.shape[0] == w.shape[1] and _is_identity(w):
            self.refs[kids[0]] -= 1
            self.point(i, kids[0])
            return
        new = tuple(kids)
        self._add(i, SumVector(nd.n, new, key), ("s", nd.n, new), key)

    def _foldable(self, k: int) -> bool:
        """A sum child read by one parent only, with weights of its own."""
        sub = self.nodes[k]
        return isinstance(sub, SumVector) and self.refs[k] == 1 and \
            self.key_users[sub.param] == 1

    def _fold_chains(self, kids: list[int], w: np.ndarray) -> tuple[list[int], np.ndarray]:
        out_kids: list[int] = []
        blocks: list[np.ndarray] = []
        col = 0
        changed = False
        for k in kids:
            m = self.size(k)
            part = w[:, col: col + m]
            col += m
            sub = self.nodes[k]
            if isinstance(sub, SumVector) and self._foldable(k):
                out_kids.extend(sub.children)
                blocks.append(part @ self.value(sub.param))
                self.refs[k] -= 1
                for g in sub.children:
                    self.refs[g] += 1
                changed = True
            else:
                out_kids.append(k)
                blocks.append(part)
        return out_kids, (np.concatenate(blocks, axis=1) if changed else w)


@register_pass("canonicalize", input_level="L0", output_level="L0")
def canonicalize(c: Circuit, *, collapse_sums: bool = False, merge_sum_chains: bool = False,
                 merge_identical: bool = False) -> Circuit:
    """Simplify an L0 circuit: drop unreachable vectors, flatten products, merge duplicates.

    Args:
        collapse_sums: drop identity-weight sums (changes the parametrization).
        merge_sum_chains: multiply out sum-into-sum chains (changes the parametrization).
        merge_identical: merge equal-valued duplicates under different keys (changes the
            parametrization).
    """
    sw = _Sweep(c, merge_identical)
    for i, nd in enumerate(c.nodes):
        if not sw.reach[i]:
            continue
        if isinstance(nd, ProductVector):
            sw.product(i, nd)
        elif isinstance(nd, SumVector):
            sw.sum(i, nd, merge_sum_chains, collapse_sums)
        else:
            assert isinstance(nd, InputVector)
            sw._add(i, nd, ("i", nd.n, nd.var, nd.dist, nd.attrs), nd.param)
    return _compact(sw, sw.alias[c.root], c.num_vars)


def _compact(sw: _Sweep, root: int, num_vars: int) -> Circuit:
    """Renumber the vectors still referenced (folding and collapsing orphan some)."""
    nodes_in = sw.nodes
    live = [False] * len(nodes_in)
    live[root] = True
    for i in range(len(nodes_in) - 1, -1, -1):
        if live[i]:
            for ch in nodes_in[i].children:
                live[ch] = True
    if all(live):  # nothing orphaned: every vector keeps its id
        return _circuit(sw, nodes_in, num_vars, root)
    new_id = [-1] * len(nodes_in)
    nodes: list[Node] = []
    shifted = False
    for i, nd in enumerate(nodes_in):
        if not live[i]:
            shifted = True
            continue
        new_id[i] = len(nodes)
        if shifted and isinstance(nd, (ProductVector, SumVector)):
            kids = tuple(new_id[ch] for ch in nd.children)
            nd = (ProductVector(nd.n, kids, nd.edges) if isinstance(nd, ProductVector)
                  else SumVector(nd.n, kids, nd.param))
        nodes.append(nd)
    return _circuit(sw, nodes, num_vars, new_id[root])


def _circuit(sw: _Sweep, nodes: list[Node], num_vars: int, root: int) -> Circuit:
    """The circuit of ``nodes`` and the parameters they name."""
    keys = {str(k) for k in [getattr(nd, "param", None) for nd in nodes] if k}
    return Circuit(tuple(nodes), {k: sw.params[k] for k in sorted(keys)}, num_vars, root)
