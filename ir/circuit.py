"""The L0 logical IR: an immutable DAG of node vectors with a parameter store beside it.

A *node vector* is ``n`` nodes of one kind over one scope. Scalar circuits read from files have
``n = 1`` everywhere; structured circuits (HCLT, PD) have vectors of tens or hundreds of nodes.

- :class:`InputVector`: ``n`` input distributions over one variable.
- :class:`ProductVector`: node ``i`` multiplies, for each child ``c``, the child node
  ``edges[i, c]`` (default: element-wise, ``i`` itself, or ``0`` when the child has one node).
- :class:`SumVector`: node ``i`` mixes the concatenated child vectors with weight row ``i`` of
  the dense ``[n, sum of child sizes]`` array ``params[param]``. Two sum vectors naming the same
  parameter key are *tied*: they share storage, and their flows add up.

Node ids are positions in :attr:`Circuit.nodes`, which is topologically sorted (children first).
The node classes use ``__slots__`` (a large file makes millions of them); readers that build
them in bulk set the slots through the class's member descriptors (see
:mod:`pccc.formats._assemble`). The parameter store is any read-only mapping from keys to
read-only arrays, in sorted key order: a plain one, or a :class:`PackedParams`, which keeps
the ``[1, k]`` weight rows of millions of scalar sums in one buffer.

Example::

    from pccc.ir import CircuitBuilder
    b = CircuitBuilder()
    x0 = b.input(0, "bernoulli", params=[0.3])
    x1 = b.input(1, "bernoulli", params=[0.6])
    p = b.product([x0, x1])
    root = b.sum([p], weights=[[1.0]])
    circuit = b.build(root)
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, Mapping, ValuesView
from dataclasses import dataclass, field
from itertools import chain
from types import MappingProxyType
from typing import Any, Union

import numpy as np


def _freeze(a: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """A read-only array; arrays that are already read-only (and of ``dtype``) are kept as they
    are, so readers can hand in cheap views of one big read-only buffer."""
    if isinstance(a, np.ndarray) and a.dtype == dtype and not a.flags.writeable:
        return a
    a = np.array(a, dtype=dtype, copy=True)
    a.setflags(write=False)
    return a


def padded_keys(prefix: str, idx: np.ndarray, width: int) -> list[str]:
    """``f"{prefix}{i:0{width}d}"`` for each ``i >= 0`` of ``idx`` (``prefix``: one ASCII
    letter; the digits are made by numpy, the strings by one ``str.split``)."""
    m = len(idx)
    if m == 0:
        return []
    d = np.empty((m, width + 2), dtype=np.uint8)
    d[:, 0] = ord(prefix)
    d[:, -1] = 32
    x = np.asarray(idx, dtype=np.int64).copy()
    for j in range(width, 0, -1):
        d[:, j] = x % 10 + 48
        x //= 10
    return d.tobytes().decode("ascii").split()


class PackedParams(Mapping[str, np.ndarray]):
    """A read-only parameter store for many ``[1, k]`` weight rows (the sums of a scalar
    circuit read from a file): one flat buffer instead of one array and one dict entry per
    sum, which for millions of sums cost seconds to build while reading.

    Key ``f"{prefix}{ids[j]:0{width}d}"`` names row ``j``, the read-only ``[1, k]`` array of the
    values ``buf[ptr[j]:ptr[j + 1]]`` (``ids`` increasing, so the keys are in sorted order).
    ``head`` holds other read-only arrays, in sorted key order, every key sorting before the
    packed ones. Iteration is in sorted key order, as for any store of a :class:`Circuit`.
    Nothing per row is made until the store is used: the first lookup or iteration makes the
    arrays of all rows at once (views of one copy of ``buf``, grouped by ``k``; about 0.2 s per
    million rows) and keeps them; key strings are made when iterated."""

    __slots__ = ("_head", "_prefix", "_width", "_ids", "_ptr", "_buf", "_rows", "_views")

    def __init__(self, head: Mapping[str, np.ndarray], prefix: str, width: int,
                 ids: np.ndarray, ptr: np.ndarray, buf: np.ndarray):
        ids = np.asarray(ids, dtype=np.int64)
        ptr = np.asarray(ptr, dtype=np.int64)
        if not (len(prefix) == 1 and prefix.isascii() and prefix.isalpha()):
            raise ValueError(f"packed keys need a one-letter prefix, not {prefix!r}")
        if len(ptr) != len(ids) + 1 or (len(ids) and (
                ids[0] < 0 or np.any(np.diff(ids) <= 0) or int(ids[-1]) >= 10**width)):
            raise ValueError("packed keys need increasing ids of at most `width` digits")
        if ptr[0] != 0 or ptr[-1] != len(buf) or np.any(np.diff(ptr) < 0):
            raise ValueError("packed rows need increasing offsets into the buffer")
        keys = list(head)
        if keys != sorted(keys) or (keys and len(ids) and
                                    keys[-1] >= padded_keys(prefix, ids[:1], width)[0]):
            raise ValueError("the other keys must be sorted and sort before the packed ones")
        self._head = {k: _freeze(v) for k, v in head.items()}
        self._prefix, self._width, self._ids, self._ptr = prefix, width, ids, ptr
        self._buf = _freeze(buf)
        self._rows: memoryview | None = None  # id -> row, made at the first lookup
        self._views: list[np.ndarray] | None = None  # the arrays, made at the first use

    def _row(self, key: object) -> int:
        """The row of a packed key (of the right length, prefix and ASCII digits), or -1."""
        rows = self._rows if self._rows is not None else self._make_rows()
        if key.__class__ is str and len(key) == self._width + 1 and key[0] == self._prefix:
            digits = key[1:]
            if digits.isdigit() and digits.isascii():
                i = int(digits)
                if i < len(rows):
                    return rows[i]
        return -1

    def _make_rows(self) -> memoryview:
        ids = self._ids
        rows = np.full(int(ids[-1]) + 1 if len(ids) else 0, -1, dtype=np.int64)
        rows[ids] = np.arange(len(ids))
        self._rows = rows.data
        return self._rows

    def _arrays(self) -> list[np.ndarray]:
        """The ``[1, k]`` array of every row, in row order (made once)."""
        if self._views is None:
            ptr, fan = self._ptr, np.diff(self._ptr)
            group = np.empty(len(fan), dtype=np.intp)
            fans = np.unique(fan).tolist()
            its = np.empty(len(fans), dtype=object)
            for g, k in enumerate(fans):
                rows = np.flatnonzero(fan == k)
                group[rows] = g
                w = self._buf[ptr[rows][:, None] + np.arange(k)].reshape(len(rows), 1, k)
                w.setflags(write=False)
                its[g] = iter(list(w))  # views of w, made in C
            # each row takes the next array of its group (a loop in C)
            self._views = list(map(next, its[group].tolist()))
        return self._views

    def __getitem__(self, key: str) -> np.ndarray:
        j = self._row(key)
        if j >= 0:
            views = self._views if self._views is not None else self._arrays()
            return views[j]
        return self._head[key]

    def __contains__(self, key: object) -> bool:
        return self._row(key) >= 0 or key in self._head

    def __len__(self) -> int:
        return len(self._head) + len(self._ids)

    def __iter__(self) -> Iterator[str]:
        yield from self._head
        for lo in range(0, len(self._ids), _KEY_SLICE):
            yield from padded_keys(self._prefix, self._ids[lo:lo + _KEY_SLICE], self._width)

    def _items(self) -> Iterator[tuple[str, np.ndarray]]:
        yield from self._head.items()
        arrays = self._arrays()
        for lo in range(0, len(self._ids), _KEY_SLICE):
            keys = padded_keys(self._prefix, self._ids[lo:lo + _KEY_SLICE], self._width)
            yield from zip(keys, arrays[lo:lo + _KEY_SLICE])

    def items(self) -> ItemsView[str, np.ndarray]:
        return _PackedItems(self)

    def values(self) -> ValuesView[np.ndarray]:
        return _PackedValues(self)

    def __repr__(self) -> str:
        return (f"PackedParams({len(self._head)} arrays + {len(self._ids)} rows "
                f"'{self._prefix}...' of {len(self._buf)} weights)")


_KEY_SLICE = 65536


class _PackedItems(ItemsView[str, np.ndarray]):
    _mapping: PackedParams

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        return self._mapping._items()


class _PackedValues(ValuesView[np.ndarray]):
    _mapping: PackedParams

    def __iter__(self) -> Iterator[np.ndarray]:
        m = self._mapping
        return chain(m._head.values(), m._arrays())


@dataclass(frozen=True, eq=True, slots=True)
class InputVector:
    """``n`` input nodes of distribution ``dist`` over variable ``var``."""

    n: int
    """number of nodes in the vector"""
    var: int
    """the variable (0-based)"""
    dist: str
    """registered distribution name (see :mod:`pccc.ir.dists`)"""
    attrs: tuple[tuple[str, Any], ...] = ()
    """hyperparameters, sorted by name"""
    param: str | None = None
    """key of the parameter array in the store (None for parameter-free distributions)"""

    kind = "input"

    @property
    def children(self) -> tuple[int, ...]:
        return ()

    def attr_dict(self) -> dict[str, Any]:
        return dict(self.attrs)


@dataclass(frozen=True, eq=False, slots=True)
class ProductVector:
    """``n`` product nodes; ``edges[i, c]`` picks the factor from child ``c``."""

    n: int
    """number of nodes in the vector"""
    children: tuple[int, ...]
    """child node-vector ids"""
    edges: np.ndarray | None = None
    """int64 ``[n, len(children)]`` or None for element-wise (size-1 children broadcast)"""

    kind = "product"

    def __post_init__(self) -> None:
        if self.edges is not None:
            object.__setattr__(self, "edges", _freeze(self.edges, np.int64))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProductVector):
            return NotImplemented
        if (self.n, self.children) != (other.n, other.children):
            return False
        if self.edges is None or other.edges is None:
            return self.edges is None and other.edges is None
        return bool(np.array_equal(self.edges, other.edges))

    def __hash__(self) -> int:
        return hash((self.n, self.children))

    def edge_table(self, child_sizes: list[int]) -> np.ndarray:
        """The explicit ``[n, k]`` table, also for element-wise vectors."""
        if self.edges is not None:
            return self.edges
        cols = [np.zeros(self.n, np.int64) if m == 1 else np.arange(self.n) for m in child_sizes]
        return np.stack(cols, axis=1) if cols else np.zeros((self.n, 0), np.int64)


@dataclass(frozen=True, eq=True, slots=True)
class SumVector:
    """``n`` sum nodes over the concatenation of the child vectors."""

    n: int
    """number of nodes in the vector"""
    children: tuple[int, ...]
    """child node-vector ids"""
    param: str
    """key of the ``[n, sum of child sizes]`` weight array in the store"""

    kind = "sum"


Node = Union[InputVector, ProductVector, SumVector]


@dataclass(frozen=True, eq=False)
class Circuit:
    """An immutable L0 circuit. Build one with :class:`pccc.ir.CircuitBuilder`."""

    nodes: tuple[Node, ...]
    """node vectors in topological order: every child id is smaller than its parent's"""
    params: Mapping[str, np.ndarray] = field(default_factory=dict)
    """parameter store: key -> read-only float64 array, in sorted key order (a read-only view of
    a dict, or a :class:`PackedParams`)"""
    num_vars: int = 0
    """number of variables (ids ``0..num_vars-1``); may exceed the variables used"""
    root: int = -1
    """root node id (default: the last node)"""
    source: Any = field(default=None, compare=False, repr=False)
    """where each node was written (a :class:`pccc.ir.source.SourceMap`), for circuits read
    from a file; None otherwise"""

    level = "L0"

    def __post_init__(self) -> None:
        if not isinstance(self.params, PackedParams):  # (read-only and sorted already)
            frozen = {k: _freeze(v) for k, v in self.params.items()}
            object.__setattr__(self, "params", MappingProxyType(dict(sorted(frozen.items()))))
        object.__setattr__(self, "nodes", tuple(self.nodes))
        if self.root < 0:
            object.__setattr__(self, "root", len(self.nodes) - 1)
        if self.num_vars == 0:
            used = [nd.var + 1 for nd in self.nodes if isinstance(nd, InputVector)]
            object.__setattr__(self, "num_vars", max(used, default=0))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Circuit):
            return NotImplemented
        if (self.nodes, self.num_vars, self.root) != (other.nodes, other.num_vars, other.root):
            return False
        if list(self.params) != list(other.params):
            return False
        return all(np.array_equal(self.params[k], other.params[k]) for k in self.params)

    def __hash__(self) -> int:
        return hash((len(self.nodes), self.num_vars, self.root))

    def __len__(self) -> int:
        return len(self.nodes)

    def param_of(self, node_id: int) -> np.ndarray | None:
        """The parameter array of a node (None for parameter-free inputs and products)."""
        key = getattr(self.nodes[node_id], "param", None)
        return None if key is None else self.params[key]

    def with_params(self, params: Mapping[str, np.ndarray]) -> Circuit:
        """A copy with some parameter arrays replaced (same shapes)."""
        merged = dict(self.params.items())  # (fast for every store, PackedParams too)
        for k, v in params.items():
            if k not in merged:
                raise KeyError(f"no parameter {k!r} in the circuit")
            v = np.asarray(v, dtype=np.float64)
            if v.shape != merged[k].shape:
                raise ValueError(f"parameter {k!r}: shape {v.shape} != {merged[k].shape}")
            merged[k] = v
        return Circuit(self.nodes, merged, self.num_vars, self.root, self.source)

    def var_cards(self) -> dict[int, int | None]:
        """Cardinality of each used variable (None: continuous)."""
        from pccc.ir import dists

        cards: dict[int, int | None] = {}
        for nd in self.nodes:
            if isinstance(nd, InputVector):
                c = dists.get(nd.dist).cardinality(nd.attr_dict())
                prev = cards.get(nd.var, c)
                cards[nd.var] = c if prev is None or c is None else max(prev, c)
        return cards
