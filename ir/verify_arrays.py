"""The L0 verifier's checks over arrays of node vectors, for circuits of any size.

:func:`passes_checks` answers whether a circuit passes every check of
:func:`pccc.ir.verify.verify` with numpy over node-vector tables: no Python per edge, per
scope element or per parameter value, and one pass over each distinct parameter array. Scopes
are bit sets (``uint32`` words, one bit per variable), computed level by level (a node's level
is its depth, so its children are all on lower levels):

- a sum vector is smooth when each child's scope equals the union of its children's scopes;
- a product vector is decomposable when the word-wise sum of its children's scopes (in 64
  bits: no overflow) equals their union; it exceeds the union wherever two children share a
  variable (scopes are never empty, so a repeated child shares one too).

A ``False`` answer does not say where: :func:`~pccc.ir.verify.verify` then runs
:func:`~pccc.ir.verify.verify_nodes`, the per-node checks that define what passes, to name the
first offending node (``tests/test_verify_arrays.py`` compares the two on random circuits and
random breakages of them).

Example::

    if not passes_checks(circuit):
        verify(circuit)      # raises VerifyError naming the node
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from itertools import chain
from operator import attrgetter
from typing import Any

import numpy as np

from pccc.ir import dists
from pccc.ir.circuit import Circuit, InputVector, ProductVector, SumVector
from pccc.ir.dists import finite_nonnegative
from pccc.ir.limits import MAX_VARS

#: a check of parameter values: True when they are in range
ValueCheck = Callable[[], bool]

_KIND = {InputVector: 0, ProductVector: 1, SumVector: 2}
#: parameter arrays of at most this many values are checked together, in one copy
_SMALL = 4096


@dataclass
class NodeTable:
    """The node vectors of a circuit as arrays (children as a flat list with offsets)."""

    kind: np.ndarray
    """int8 per vector: 0 input, 1 product, 2 sum"""
    n: np.ndarray
    """int64 vector sizes"""
    ptr: np.ndarray
    """int64 ``[N + 1]``: the children of vector ``i`` are ``kid[ptr[i]:ptr[i + 1]]``"""
    kid: np.ndarray
    """int64 child ids, vector by vector"""
    children: list[tuple[int, ...]]
    """the children tuples themselves (for the levels)"""

    @property
    def parent(self) -> np.ndarray:
        """The vector each entry of ``kid`` belongs to."""
        return np.repeat(np.arange(len(self.n)), np.diff(self.ptr))


def node_table(c: Circuit) -> NodeTable | None:
    """The arrays of ``c``'s node vectors, or None when a node is not a node vector or a size
    is not an integer."""
    nodes = c.nodes
    try:
        kind = np.fromiter(map(_KIND.__getitem__, map(type, nodes)), np.int8, len(nodes))
    except KeyError:
        return None
    n = np.array(list(map(attrgetter("n"), nodes)))
    if n.dtype.kind not in "iu" or n.ndim != 1:
        return None
    children = list(map(attrgetter("children"), nodes))
    lens = np.fromiter(map(len, children), np.int64, len(nodes))
    ptr = np.zeros(len(nodes) + 1, np.int64)
    np.cumsum(lens, out=ptr[1:])
    kid = np.fromiter(chain.from_iterable(children), np.int64, int(ptr[-1]))
    return NodeTable(kind, n.astype(np.int64), ptr, kid, children)


def _structure_ok(c: Circuit, t: NodeTable) -> bool:
    """Sizes, arities, child ids before their parents, input variables in range."""
    if len(t.n) and int(t.n.min()) < 1:
        return False
    lens = np.diff(t.ptr)
    if np.any((lens == 0) & (t.kind != 0)):
        return False
    if t.kid.size and (int(t.kid.min()) < 0 or np.any(t.kid >= t.parent)):
        return False
    inputs = [nd for nd in c.nodes if isinstance(nd, InputVector)]
    var = np.array([nd.var for nd in inputs])
    return var.size == 0 or (var.dtype.kind in "iu" and int(var.min()) >= 0
                             and int(var.max()) < c.num_vars)


def _products_ok(c: Circuit, t: NodeTable) -> bool:
    """Element-wise products' child sizes, and the shapes and values of edge tables."""
    prods = np.flatnonzero(t.kind == 1)
    tables: list[np.ndarray | None] = list(
        map(attrgetter("edges"), map(c.nodes.__getitem__, prods.tolist())))
    explicit = np.array([e is not None for e in tables], dtype=bool)
    # element-wise: each child of n or 1 nodes
    ew = prods[~explicit]
    lens = np.diff(t.ptr)
    at = _entries(t.ptr, ew)
    m = t.n[t.kid[at]]
    if np.any((m != 1) & (m != np.repeat(t.n[ew], lens[ew]))):
        return False
    # explicit tables: [n, k] of ints in 0..size-1 of their column's child, by arity
    ex = prods[explicit]
    arrays = [e for e in tables if e is not None]
    shapes = np.array([a.shape for a in arrays], dtype=np.int64).reshape(-1, 2)
    if np.any(shapes[:, 0] != t.n[ex]) or np.any(shapes[:, 1] != lens[ex]):
        return False
    for k in np.unique(lens[ex]).tolist():
        sel = np.flatnonzero(lens[ex] == k)
        vals = np.concatenate([arrays[j] for j in sel.tolist()])
        limit = t.n[t.kid[t.ptr[ex[sel]][:, None] + np.arange(k)]]  # [products, k]
        limit = np.repeat(limit, t.n[ex[sel]], axis=0)
        if not np.all(vals.view(np.uint64) < limit.view(np.uint64)):
            return False
    return True


def _entries(ptr: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Positions in ``kid`` of the children of ``nodes``, node by node."""
    lens = ptr[nodes + 1] - ptr[nodes]
    starts = np.repeat(ptr[nodes] - np.cumsum(lens) + lens, lens)
    return starts + np.arange(int(lens.sum()))


def _sums_ok(c: Circuit, t: NodeTable, later: list[ValueCheck]) -> bool:
    """Sum weights: present and ``[n, sum of child sizes]``; appends to ``later`` the checks
    that they are finite and ``>= 0``."""
    sums = np.flatnonzero(t.kind == 2)
    keys = list(map(attrgetter("param"), map(c.nodes.__getitem__, sums.tolist())))
    index: dict[Any, int] = {}
    ids = np.array([index.setdefault(k, len(index)) for k in keys], dtype=np.int64)
    store = dict(c.params.items())  # (one pass over a packed store, not a lookup per key)
    found = list(map(store.get, index))
    arrays = [a for a in found if a is not None]
    if len(arrays) < len(found) or set(map(attrgetter("ndim"), arrays)) - {2}:
        return False
    shapes = np.array(list(map(attrgetter("shape"), arrays)), dtype=np.int64).reshape(-1, 2)
    csum = np.concatenate([[0], np.cumsum(t.n[t.kid])])
    width = csum[t.ptr[sums + 1]] - csum[t.ptr[sums]]
    if np.any(shapes[ids, 0] != t.n[sums]) or np.any(shapes[ids, 1] != width):
        return False
    small = [a for a in arrays if a.size <= _SMALL]
    if small:
        later.append(partial(finite_nonnegative, np.concatenate(small, axis=None)))
    later.extend(partial(finite_nonnegative, a) for a in arrays if a.size > _SMALL)
    return True


def _inputs_ok(c: Circuit, later: list[ValueCheck]) -> bool:
    """Distributions, attributes and parameter shapes, each distinct one checked once; appends
    to ``later`` the checks of the parameter values."""
    shape_of: dict[Any, tuple[int, ...] | None] = {}
    card_of: dict[Any, int | None] = {}
    domain: dict[int, int | None] = {}
    seen: set[Any] = set()
    for nd in c.nodes:
        if not isinstance(nd, InputVector):
            continue
        sig = (nd.dist, nd.n, nd.attrs)
        try:
            shape = shape_of[sig] if sig in shape_of else shape_of.setdefault(
                sig, _input_shape(nd))
        except TypeError:  # unhashable attribute values: checked by the per-node verifier
            return False
        if shape == ():
            return False
        card = card_of[sig] if sig in card_of else card_of.setdefault(
            sig, dists.get(nd.dist).cardinality(nd.attr_dict()))
        if domain.setdefault(nd.var, card) != card:  # one variable, one domain
            return False
        if shape is None:
            if nd.param is not None:
                return False
            continue
        arr = c.params.get(nd.param) if isinstance(nd.param, str) else None
        if arr is None or arr.shape != shape:
            return False
        if (nd.param, nd.dist, nd.attrs) not in seen:
            seen.add((nd.param, nd.dist, nd.attrs))
            later.append(partial(_params_in_range, dists.get(nd.dist), arr, nd.attr_dict()))
    return True


def _params_in_range(cls: type[dists.Distribution], arr: np.ndarray, attrs: dict[str, Any]
                     ) -> bool:
    return cls.check_params(arr, attrs) is None


def _input_shape(nd: InputVector) -> tuple[int, ...] | None:
    """The parameter shape of an input vector; ``()`` when its distribution or attributes are
    refused (as :func:`pccc.ir.verify._input_shape` would)."""
    try:
        cls = dists.get(nd.dist)
        attrs = nd.attr_dict()
        if cls.check_attrs(nd.n, attrs) is not None:
            return ()
        card = cls.cardinality(attrs)
    except (KeyError, TypeError, ValueError):
        return ()
    if card is not None and card < 1:
        return ()
    return cls.param_shape(nd.n, attrs)


def levels(t: NodeTable) -> np.ndarray:
    """The depth of every vector (inputs 0): its children all lie on lower levels."""
    depth = [0] * len(t.children)
    get = depth.__getitem__
    for i, ks in enumerate(t.children):
        if ks:
            depth[i] = 1 + max(map(get, ks))
    return np.array(depth, dtype=np.int64)


def scope_flags(c: Circuit, t: NodeTable) -> tuple[bool, bool]:
    """``(smooth, decomposable)`` of a structurally valid circuit (see the module docstring).

    A scope's bits are those of the variables the circuit uses (numbered densely), not of all
    ``num_vars``, so the sets stay as small as the circuit."""
    inputs = np.flatnonzero(t.kind == 0)
    var = np.array(list(map(attrgetter("var"), map(c.nodes.__getitem__, inputs.tolist()))),
                   dtype=np.int64)
    var = np.unique(var, return_inverse=True)[1].reshape(-1)
    words = max(1, -(-(int(var.max(initial=-1)) + 1) // 32))
    bits = np.zeros((len(t.n), words), np.uint32)
    bits[inputs, var >> 5] = np.left_shift(np.uint32(1), (var & 31).astype(np.uint32))
    depth = levels(t)
    order = np.argsort(depth, kind="stable")
    bounds = np.searchsorted(depth[order], np.arange(int(depth.max(initial=0)) + 2))
    smooth = decomposable = True
    lens = np.diff(t.ptr)
    for d in range(1, len(bounds) - 1):
        nodes = order[bounds[d]:bounds[d + 1]]
        seg = np.concatenate([[0], np.cumsum(lens[nodes])[:-1]])
        rows = bits[t.kid[_entries(t.ptr, nodes)]]           # [children, words]
        union = np.bitwise_or.reduceat(rows, seg, axis=0)    # [nodes, words]
        bits[nodes] = union
        is_sum = t.kind[nodes] == 2
        if smooth and is_sum.any():
            owner = np.repeat(np.arange(len(nodes)), lens[nodes])
            on_sum = is_sum[owner]
            smooth = bool(np.all(rows[on_sum] == union[owner[on_sum]]))
        if decomposable and not is_sum.all():
            total = np.add.reduceat(rows.astype(np.uint64), seg, axis=0)
            decomposable = bool(np.all(total[~is_sum] == union[~is_sum]))
        if not (smooth or decomposable):
            break
    return smooth, decomposable


def scope_properties(c: Circuit) -> tuple[bool, bool] | None:
    """``(smooth, decomposable)``, or None when ``c``'s structure is broken (children undefined
    or out of order, sizes or variables out of range)."""
    t = node_table(c)
    if t is None or not _structure_ok(c, t):
        return None
    return scope_flags(c, t)


def structure_checks(c: Circuit) -> list[ValueCheck] | None:
    """Every check of :func:`pccc.ir.verify.verify` but the ranges of the parameter values.

    Returns:
        None when a check fails; else the checks of the values, each a function that reads
        one or a few parameter arrays (numpy, mostly without the GIL) and returns True when
        their values are in range.
    """
    if not c.nodes or not 0 <= c.root < len(c.nodes) or c.num_vars > MAX_VARS:
        return None
    t = node_table(c)
    if t is None or not _structure_ok(c, t):
        return None
    later: list[ValueCheck] = []
    if not (_products_ok(c, t) and _sums_ok(c, t, later) and _inputs_ok(c, later)):
        return None
    return later if all(scope_flags(c, t)) else None


def passes_checks(c: Circuit) -> bool:
    """True when ``c`` passes every check of :func:`pccc.ir.verify.verify`."""
    later = structure_checks(c)
    return later is not None and all(check() for check in later)
