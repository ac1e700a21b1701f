"""Assembling a scalar :class:`Circuit` from flat node tables, quickly.

Readers of scalar formats (one node per line) describe the circuit as arrays: a kind per node,
children in CSR form, and the log-weights of sum edges. :func:`assemble` turns them into an L0
circuit with ``n = 1`` everywhere. It is the hot loop of parsing a large file, so it avoids the
per-node costs of the public constructors (dataclass ``__init__``, ``_freeze``, sorting the
parameter store) while producing exactly the values they would. The sums' ``[1, k]`` weights
go into one buffer, a :class:`~pccc.ir.circuit.PackedParams` store (not millions of arrays and
dict entries), and parameter keys are zero-padded so that the store is already in sorted order.
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np

from pccc.ir.circuit import (
    Circuit,
    InputVector,
    Node,
    PackedParams,
    ProductVector,
    SumVector,
    padded_keys,
)
from pccc.ir.source import SourceMap

INPUT, PRODUCT, SUM = 0, 1, 2


@dataclass
class Table:
    """A scalar circuit as flat arrays; node ``i`` of the table becomes node ``i`` of the IR."""

    kind: np.ndarray
    """int8 ``[N]``: INPUT, PRODUCT or SUM"""
    ptr: np.ndarray
    """int64 ``[N + 1]``: the children of node ``i`` are ``kids[ptr[i]:ptr[i + 1]]``"""
    kids: np.ndarray
    """int64 ``[E]``: child node indices, each smaller than its parent's"""
    logw: np.ndarray
    """float64 ``[E]``: the log-weight of each edge (read for sum nodes only)"""
    inputs: dict[int, tuple[InputVector, np.ndarray | None]] = field(default_factory=dict)
    """node index -> (input vector with ``param`` unset, its parameters or None)"""
    num_vars: int = 0
    """number of variables"""
    plain: tuple[np.ndarray, list[InputVector]] | None = None
    """more input nodes, without parameters: (their node indices, increasing; their vectors)"""


def _obj(cls: type, attrs: dict) -> Node:
    """A frozen node instance without running ``__init__`` (the fields are trusted; every slot
    of ``cls`` must be given)."""
    obj: Node = object.__new__(cls)
    for k, v in attrs.items():
        getattr(cls, k).__set__(obj, v)
    return obj


def build(cls: type, m: int, **columns: Any) -> list[Node]:
    """``m`` frozen node instances of ``cls`` without running ``__init__``; each keyword is a
    slot and an iterable of its ``m`` values (or :func:`itertools.repeat` of one). The loops
    run in C: ``map`` over ``object.__new__`` and over each slot's member descriptor."""
    setters = [(getattr(cls, name).__set__, iter(values)) for name, values in columns.items()]
    out: list[Node] = []
    for lo in range(0, m, _SLICE):  # a slice at a time, so that its objects stay in cache
        objs: list[Any] = list(map(object.__new__, repeat(cls, min(_SLICE, m - lo))))
        for put, values in setters:
            deque(map(put, objs, values), maxlen=0)
        out += objs
    return out


_SLICE = 65536


def _key_width(n: int) -> int:
    return len(str(max(n - 1, 0)))


def _by_fan(idx: np.ndarray, fan: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``idx`` split by fan-in: [(k, the nodes of fan-in k, in order)]."""
    f = fan[idx]
    return [(int(k), idx[f == k]) for k in np.unique(f)]


def _edge_rows(t: Table, idx: np.ndarray, k: int) -> np.ndarray:
    """Edge positions of nodes ``idx`` (all of fan-in ``k``) as a ``[len(idx), k]`` table."""
    return t.ptr[idx][:, None] + np.arange(k)


def _tuples(kids: np.ndarray):
    """The rows of a ``[m, k]`` table as tuples of ints (zip builds them in C)."""
    return zip(*(col.tolist() for col in kids.T))


def _products(t: Table, idx: np.ndarray, k: int) -> list[Node]:
    kids = _tuples(t.kids[_edge_rows(t, idx, k)])
    return build(ProductVector, len(idx), n=repeat(1), children=kids, edges=repeat(None))


def _sums(t: Table, idx: np.ndarray, k: int, width: int) -> list[Node]:
    """The sum vectors of nodes ``idx`` (their weights are in the packed store)."""
    kids = _tuples(t.kids[_edge_rows(t, idx, k)])
    keys = padded_keys("w", idx, width)
    return build(SumVector, len(idx), n=repeat(1), children=kids, param=keys)


def _inputs(t: Table, width: int) -> tuple[list[Node], list[int], dict[str, np.ndarray]]:
    """(input nodes, their rows, parameters of those that have some), in node order."""
    if t.plain is not None and not t.inputs:
        return list(t.plain[1]), t.plain[0].tolist(), {}
    table = t.inputs
    if t.plain is not None:
        table = {**table, **dict(zip(t.plain[0].tolist(), zip(t.plain[1], repeat(None))))}
    rows = sorted(table)
    pairs = list(map(table.__getitem__, rows))
    objs: list[Node] = list(map(itemgetter(0), pairs))
    params: dict[str, np.ndarray] = {}
    for j in [j for j, (_, a) in enumerate(pairs) if a is not None]:
        vec, arr = pairs[j]
        assert arr is not None
        key = f"p{rows[j]:0{width}d}"
        arr.setflags(write=False)
        params[key] = arr
        objs[j] = _obj(InputVector, {**{f: getattr(vec, f) for f in InputVector.__slots__},
                                     "param": key})
    return objs, rows, params


@contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: a reader makes millions of objects and no garbage,
    and the collector would only rescan them again and again.

    On the way out, every object the collector tracks is moved to its oldest generation
    (``gc.freeze()`` then ``gc.unfreeze()``, two list splices): the circuit just read is
    long-lived, and left in the youngest generation it would be scanned whole by the next
    young collection (about 0.1 s per million nodes) and again by the next middle one. Skipped
    when the program has frozen objects of its own (unfreezing would release them)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()


def assemble(t: Table) -> Circuit:
    """Build the circuit of table ``t``; the root is the last node."""
    with no_gc():
        return _assemble(t)


def _assemble(t: Table) -> Circuit:
    n = len(t.kind)
    kind = np.asarray(t.kind)
    fan = np.diff(t.ptr)
    width = _key_width(n)
    if n and (int(kind.min()) < INPUT or int(kind.max()) > SUM):
        raise ValueError("a node of the table has no known kind")
    inputs, rows, params = _inputs(t, width)
    if not np.array_equal(np.array(rows, dtype=np.int64), np.flatnonzero(kind == INPUT)):
        raise ValueError("the input nodes of the table do not match its kinds")
    # nodes are made group by group (inputs, then products and sums by fan-in), each group
    # in node order; group[i] says which group node i is in, and the groups are merged
    group = np.zeros(n, dtype=np.intp)
    objs: list[list] = [inputs]
    for k, idx in _by_fan(np.flatnonzero(kind == PRODUCT), fan):
        group[idx] = len(objs)
        objs.append(_products(t, idx, k))
    is_sum = kind == SUM
    sums = np.flatnonzero(is_sum)
    for k, idx in _by_fan(sums, fan):
        group[idx] = len(objs)
        objs.append(_sums(t, idx, k, width))
    nodes = _merge(objs, group)
    if len(nodes) != n:  # (map stops at the first exhausted group)
        raise ValueError("a node of the table has no known kind")
    # the weights of all sums, in node order, in one buffer; zero-padded keys, "p..." (the
    # inputs') before "w...", each in node order: the store is sorted already
    w = np.exp(t.logw[np.repeat(is_sum, fan)])
    w.setflags(write=False)
    sptr = np.zeros(len(sums) + 1, dtype=np.int64)
    np.cumsum(fan[sums], out=sptr[1:])
    return _circuit(nodes, PackedParams(params, "w", width, sums, sptr, w), t.num_vars)


def _merge(groups: Sequence[Iterable], group: np.ndarray) -> list:
    """Items taken from ``groups`` (each in order) as ``group`` says: item ``i`` is the next
    one of group ``group[i]`` (``map(next, ...)`` over the groups' iterators, a loop in C)."""
    its = np.empty(len(groups), dtype=object)
    for g, items in enumerate(groups):
        its[g] = iter(items)
    return list(map(next, its[group].tolist()))


def _circuit(nodes: Sequence[Node], params: PackedParams, num_vars: int) -> Circuit:
    """A Circuit from trusted parts."""
    c = object.__new__(Circuit)
    c.__dict__.update({
        "nodes": tuple(nodes),
        "params": params,
        "num_vars": num_vars,
        "root": len(nodes) - 1,
        "source": None,
    })
    return c


def with_source(c: Circuit, source: SourceMap) -> Circuit:
    """``c`` with its source map set (readers call this on the circuit they built)."""
    object.__setattr__(c, "source", source)
    return c


class Inputs:
    """Input nodes collected while reading; indicators get their variable's cardinality at the
    end (the largest value any node of the file gives the variable), since ``L``/``I``/``v``
    lines do not carry it."""

    def __init__(self) -> None:
        self.specs: dict[int, tuple[int, str, Any]] = {}
        self.card: dict[int, int] = {}

    def _see(self, var: int, card: int) -> None:
        if card > self.card.get(var, 0):
            self.card[var] = card

    def indicator(self, i: int, var: int, value: int, card: int = 2) -> None:
        self._see(var, max(card, value + 1))
        self.specs[i] = (var, "indicator", value)

    def categorical(self, i: int, var: int, logprobs: list[float]) -> None:
        self._see(var, len(logprobs))
        self.specs[i] = (var, "categorical", logprobs)

    def bernoulli(self, i: int, var: int, logp: float) -> None:
        self._see(var, 2)
        self.specs[i] = (var, "bernoulli", logp)

    def binomial(self, i: int, var: int, total: int, logp: float) -> None:
        self._see(var, total + 1)
        self.specs[i] = (var, "binomial", (total, logp))

    def gaussian(self, i: int, var: int, mean: float, std: float) -> None:
        self.specs[i] = (var, "gaussian", (mean, std))

    def num_vars(self) -> int:
        return max((v for v, _, _ in self.specs.values()), default=-1) + 1

    def vectors(self) -> dict[int, tuple[InputVector, np.ndarray | None]]:
        """Node index -> (input vector, parameters); equal vectors are one shared object."""
        out: dict[int, tuple[InputVector, np.ndarray | None]] = {}
        shared: dict[tuple[int, int], InputVector] = {}
        for i, (var, dist, data) in self.specs.items():
            if dist == "indicator":
                key = (var, int(data))
                vec = shared.get(key)
                if vec is None:
                    attrs = (("card", self.card[var]), ("values", (key[1],)))
                    vec = shared[key] = InputVector(1, var, "indicator", attrs)
                out[i] = (vec, None)
            elif dist == "categorical":
                k = len(data)
                out[i] = (InputVector(1, var, dist, (("card", k),)),
                          np.exp(np.array(data, dtype=np.float64)).reshape(1, k))
            elif dist == "binomial":
                total, logb = data
                out[i] = (InputVector(1, var, dist, (("total", int(total)),)),
                          np.exp(np.array([logb], dtype=np.float64)))
            elif dist == "gaussian":
                out[i] = (InputVector(1, var, dist), np.array([data], dtype=np.float64))
            else:  # bernoulli, from log p
                out[i] = (InputVector(1, var, dist), np.exp(np.array([data], dtype=np.float64)))
        return out


class Rows:
    """Appends nodes one at a time (the line-by-line readers) and yields a :class:`Table`."""

    def __init__(self) -> None:
        self.kind: list[int] = []
        self.ptr: list[int] = [0]
        self.kids: list[int] = []
        self.logw: list[float] = []
        self.inputs = Inputs()
        #: where each node was written: (line, id in the file, element or -1), see mark()
        self.origin: list[tuple[int, int, int]] = []
        self._at = (0, 0, -1)

    def __len__(self) -> int:
        return len(self.kind)

    def mark(self, line: int, nid: int, elem: int = -1) -> None:
        """The source of the nodes appended from now on (:class:`pccc.ir.source.SourceMap`)."""
        self._at = (line, nid, elem)

    def input(self) -> int:
        """Reserve an input node; describe it with ``self.inputs.<dist>(index, ...)``."""
        self.kind.append(INPUT)
        self.ptr.append(len(self.kids))
        self.origin.append(self._at)
        return len(self.kind) - 1

    def product(self, kids: Sequence[int]) -> int:
        self.kind.append(PRODUCT)
        self.kids.extend(kids)
        self.logw.extend([0.0] * len(kids))
        self.ptr.append(len(self.kids))
        self.origin.append(self._at)
        return len(self.kind) - 1

    def sum(self, kids: Sequence[int], logw: Sequence[float]) -> int:
        self.kind.append(SUM)
        self.kids.extend(kids)
        self.logw.extend(logw)
        self.ptr.append(len(self.kids))
        self.origin.append(self._at)
        return len(self.kind) - 1

    def source(self, file: str) -> SourceMap:
        """The source map of the nodes appended so far."""
        lines, ids, elems = zip(*self.origin) if self.origin else ((), (), ())
        return SourceMap.of(file, list(lines), list(ids), list(elems))

    def table(self) -> Table:
        return Table(np.array(self.kind, dtype=np.int8), np.array(self.ptr, dtype=np.int64),
                     np.array(self.kids, dtype=np.int64), np.array(self.logw, dtype=np.float64),
                     self.inputs.vectors(), self.inputs.num_vars())
