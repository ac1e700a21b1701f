"""Assembling a scalar :class:`Circuit` from flat node tables, quickly.

Readers of scalar formats (one node per line) describe the circuit as arrays: a kind per node,
children in CSR form, and the log-weights of sum edges. :func:`assemble` turns them into an L0
circuit with ``n = 1`` everywhere. It is the hot loop of parsing a large file, so it avoids the
per-node costs of the public constructors (dataclass ``__init__``, ``_freeze``, sorting the
parameter store) while producing exactly the values they would: every weight array is a
read-only ``[1, k]`` view of one buffer, and parameter keys are zero-padded so that the store
is already in sorted order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from pccc.ir.circuit import Circuit, InputVector, Node, ProductVector, SumVector

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


def _obj(cls: type, attrs: dict) -> Node:
    """A frozen dataclass instance without running ``__init__`` (the fields are trusted)."""
    obj = object.__new__(cls)
    obj.__dict__.update(attrs)
    return obj


def _key_width(n: int) -> int:
    return len(str(max(n - 1, 0)))


def _weight_views(t: Table, sums: np.ndarray) -> list[np.ndarray]:
    """Read-only ``[1, k]`` views of one buffer holding the exponentiated sum-edge weights."""
    starts, ends = t.ptr[sums], t.ptr[sums + 1]
    sel = np.zeros(len(t.kids), dtype=bool)
    if len(sums):
        # mark the edge ranges of sum nodes with a difference array
        d = np.zeros(len(t.kids) + 1, dtype=np.int64)
        np.add.at(d, starts, 1)
        np.add.at(d, ends, -1)
        sel = np.cumsum(d[:-1]) > 0
    w = np.exp(t.logw[sel])
    w.setflags(write=False)
    fan = (ends - starts).tolist()
    offs = np.concatenate([[0], np.cumsum(ends - starts)]).tolist()
    return [w[o:o + k].reshape(1, k) for o, k in zip(offs, fan)]


def assemble(t: Table) -> Circuit:
    """Build the circuit of table ``t``; the root is the last node."""
    n = len(t.kind)
    kind = np.asarray(t.kind)
    sums = np.flatnonzero(kind == SUM)
    views = _weight_views(t, sums)
    width = _key_width(n)
    ptr = t.ptr.tolist()
    kids = t.kids.tolist()
    kinds = kind.tolist()
    nodes: list[Node] = [None] * n  # type: ignore[list-item]
    # zero-padded keys, "p..." before "w...", each inserted in index order: already sorted
    pparams: dict[str, np.ndarray] = {}
    params: dict[str, np.ndarray] = {}
    sum_iter = iter(views)
    for i in range(n):
        k = kinds[i]
        if k == INPUT:
            vec, arr = t.inputs[i]
            if arr is not None:
                key = f"p{i:0{width}d}"
                arr.setflags(write=False)
                pparams[key] = arr
                vec = _obj(InputVector, {**vec.__dict__, "param": key})
            nodes[i] = vec
        elif k == PRODUCT:
            nodes[i] = _obj(ProductVector, {"n": 1, "children": tuple(kids[ptr[i]:ptr[i + 1]]),
                                            "edges": None})
        else:
            key = f"w{i:0{width}d}"
            params[key] = next(sum_iter)
            nodes[i] = _obj(SumVector, {"n": 1, "children": tuple(kids[ptr[i]:ptr[i + 1]]),
                                        "param": key})
    pparams.update(params)
    return _circuit(nodes, pparams, t.num_vars)


def _circuit(nodes: Sequence[Node], params: dict[str, np.ndarray], num_vars: int) -> Circuit:
    """A Circuit from trusted parts: read-only float64 arrays, keys already in sorted order."""
    c = object.__new__(Circuit)
    c.__dict__.update({
        "nodes": tuple(nodes),
        "params": MappingProxyType(params),
        "num_vars": num_vars,
        "root": len(nodes) - 1,
    })
    return c


class Inputs:
    """Input nodes collected while reading; indicators get their variable's cardinality at the
    end (the largest value any node of the file gives the variable), since ``L``/``I``/``v``
    lines do not carry it."""

    def __init__(self) -> None:
        self.specs: dict[int, tuple[int, str, object]] = {}
        self.card: dict[int, int] = {}

    def _see(self, var: int, card: int) -> None:
        if card > self.card.get(var, 0):
            self.card[var] = card

    def indicator(self, i: int, var: int, value: int, card: int = 2) -> None:
        self._see(var, max(card, value + 1))
        self.specs[i] = (var, "indicator", value)

    def categorical(self, i: int, var: int, probs: list[float]) -> None:
        self._see(var, len(probs))
        self.specs[i] = (var, "categorical", probs)

    def bernoulli(self, i: int, var: int, p: float) -> None:
        self._see(var, 2)
        self.specs[i] = (var, "bernoulli", p)

    def binomial(self, i: int, var: int, total: int, p: float) -> None:
        self._see(var, total + 1)
        self.specs[i] = (var, "binomial", (total, p))

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
                key = (var, int(data))  # type: ignore[call-overload]
                vec = shared.get(key)
                if vec is None:
                    attrs = (("card", self.card[var]), ("values", (key[1],)))
                    vec = shared[key] = InputVector(1, var, "indicator", attrs)
                out[i] = (vec, None)
            elif dist == "categorical":
                k = len(data)  # type: ignore[arg-type]
                out[i] = (InputVector(1, var, dist, (("card", k),)),
                          np.array(data, dtype=np.float64).reshape(1, k))
            elif dist == "binomial":
                total, p = data  # type: ignore[misc]
                out[i] = (InputVector(1, var, dist, (("total", total),)), np.array([p]))
            elif dist == "gaussian":
                out[i] = (InputVector(1, var, dist), np.array([data], dtype=np.float64))
            else:
                out[i] = (InputVector(1, var, dist), np.array([data], dtype=np.float64))
        return out


class Rows:
    """Appends nodes one at a time (the line-by-line readers) and yields a :class:`Table`."""

    def __init__(self) -> None:
        self.kind: list[int] = []
        self.ptr: list[int] = [0]
        self.kids: list[int] = []
        self.logw: list[float] = []
        self.inputs = Inputs()

    def __len__(self) -> int:
        return len(self.kind)

    def input(self) -> int:
        """Reserve an input node; describe it with ``self.inputs.<dist>(index, ...)``."""
        self.kind.append(INPUT)
        self.ptr.append(len(self.kids))
        return len(self.kind) - 1

    def product(self, kids: Sequence[int]) -> int:
        self.kind.append(PRODUCT)
        self.kids.extend(kids)
        self.logw.extend([0.0] * len(kids))
        self.ptr.append(len(self.kids))
        return len(self.kind) - 1

    def sum(self, kids: Sequence[int], logw: Sequence[float]) -> int:
        self.kind.append(SUM)
        self.kids.extend(kids)
        self.logw.extend(logw)
        self.ptr.append(len(self.kids))
        return len(self.kind) - 1

    def table(self) -> Table:
        return Table(np.array(self.kind, dtype=np.int8), np.array(self.ptr, dtype=np.int64),
                     np.array(self.kids, dtype=np.int64), np.array(self.logw, dtype=np.float64),
                     self.inputs.vectors(), self.inputs.num_vars())
