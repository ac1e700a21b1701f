"""L3 ``KernelPlan``: everything a backend needs, as flat numpy arrays.

Backends consume only this level. The semantics, which every backend implements, are:

**Buffers** (log space, one column per example):

- ``node`` buffer ``[num_node_slots, batch]``. Slot 0 is reserved and always holds ``0.0``
  (log 1); it pads product children. Every input layer and every sum partition writes a
  contiguous run of slots. Slots that no layer writes (block padding) hold ``-inf``.
- one ``element`` buffer per product layer, ``[layer.num_elem_slots, batch]``. Slots
  ``0 .. layer.reserved - 1`` are reserved and hold ``-inf`` (log 0); they pad sum children.
  A product layer's elements are read only by the sum layer right after it, so a backend may
  reuse one element buffer for all layers.
- ``params``: flat linear sum weights. Offsets ``0 .. reserved_params - 1`` hold ``0.0`` (pad).
- ``input_params``: flat parameters of the input nodes, ``param_size`` values per node.

**Layers**, in order: all :class:`InputLayer` s, then alternating :class:`ProductLayer` and
:class:`SumLayer` (each sum layer consumes the elements of the product layer just before it).

- Input layer: ``node[node_start + i] = log p_dist(x[:, vars[i]] | input_params[param_start[i] :
  param_start[i] + param_size])`` (``0.0`` where the variable is missing). Indicators read
  ``values[i]`` instead of parameters.
- Product partition: ``element[elem_start + e] = sum_j node[children[e, j]]``.
- Sum partition with block size ``B`` and chunk size ``C``: for block ``b`` and its chunk ``k``
  the tile ``W = params[param_start[b, k] : + B*C].reshape(B, C)`` (row-major) mixes elements
  ``element[chunk_start[b, k] : + C]`` into nodes ``node[node_start[b] : + B]``:
  ``node[node_start[b] + r] = logsumexp_{k, c} (log W[r, c] + element[chunk_start[b, k] + c])``.
  Padding chunks point at reserved slots and the reserved zero tile.

**Roots**: slots ``root_slot .. root_slot + num_roots - 1`` (the nodes of the root vector, in
order). A backend returns ``node[root_slot]`` as ``[batch]`` when ``num_roots == 1`` and the
root slots as ``[batch, num_roots]`` otherwise. Backward passes give every root flow 1 per
example for the EM statistics: a circuit's flows are the sum of its roots' flows, the flows of
``sum_r log p_r(x)``.

**Parameters of the source circuit**: ``param_map[key]`` has the shape of the L0 array ``key``
and gives each entry's offset in ``params`` (sum weights) or ``input_params`` (inputs, see
``input_param_keys``). Tied L0 vectors share offsets; every flat entry belongs to exactly one
(key, index). For EM, ``param_group[p]`` is the normalization group (one L0 sum node row) of
flat weight ``p`` (``-1`` for padding), ``group_size[g]`` its number of children ``K``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, ItemsView, ValuesView
from concurrent.futures import Future
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

PLAN_VERSION = 1


def _ro(a: Any, dtype: Any = np.int64) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(a, dtype=dtype))
    arr.setflags(write=False)
    return arr


class ParamMap(dict[str, np.ndarray]):
    """A ``param_map`` whose entries may be made when first read.

    The offsets of the parameters are regular (ranges, tile patterns), and most users of a plan
    never read them; for PD-256 they are 155M int64 (1.24 GB) made for nothing. So
    ``layout-params`` gives most entries as a function that makes them. A read through
    ``[]`` or ``get`` makes that entry (once, read-only); anything that sees the values some
    other way (``items``, ``values``, ``==``, copies, pickling) makes them all first. Keys,
    ``len`` and ``in`` never make anything.
    """

    __slots__ = ("_makers", "_lock")

    def __init__(self, made: Any = (),
                 makers: dict[str, Callable[[], np.ndarray]] | None = None):
        made = dict(made)  # (any dict() argument: dataclasses.asdict rebuilds it from pairs)
        makers = makers or {}
        keys = sorted(set(made) | set(makers))
        super().__init__((k, _ro(made[k]) if k in made else _UNMADE) for k in keys)
        self._makers = {k: makers[k] for k in keys if k in makers and k not in made}
        self._lock = threading.Lock()

    def _make(self, key: str) -> np.ndarray:
        with self._lock:  # one maker call per entry, whichever thread reads first
            v = dict.__getitem__(self, key)
            if v is not _UNMADE:
                return v
            arr = _ro(self._makers[key]())  # a maker that raises stays for the next read
            dict.__setitem__(self, key, arr)
            del self._makers[key]
            return arr

    def _make_all(self) -> None:
        for key in list(self._makers):
            self._make(key)

    def __getitem__(self, key: str) -> np.ndarray:
        v = dict.__getitem__(self, key)
        return self._make(key) if v is _UNMADE else v

    def made(self) -> list[tuple[str, np.ndarray]]:
        """The entries made so far (makes none)."""
        return [(k, v) for k, v in dict.items(self) if v is not _UNMADE]

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return self[key] if key in self else default

    def __iter__(self) -> Any:  # (a dict subclass with its own __iter__ is never copied raw)
        return dict.__iter__(self)

    def items(self) -> ItemsView[str, np.ndarray]:  # type: ignore[override]
        self._make_all()
        return dict.items(self)

    def values(self) -> ValuesView[np.ndarray]:  # type: ignore[override]
        self._make_all()
        return dict.values(self)

    def copy(self) -> dict[str, np.ndarray]:
        return dict(self.items())

    def __eq__(self, other: object) -> bool:
        self._make_all()
        if isinstance(other, ParamMap):
            other._make_all()
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        self._make_all()
        return dict.__repr__(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return ParamMap, (dict(self.items()), {})

    def __setitem__(self, key: str, value: np.ndarray) -> None:
        raise TypeError("a plan's param_map is read-only")

    def __delitem__(self, key: str) -> None:
        raise TypeError("a plan's param_map is read-only")

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("a plan's param_map is read-only")

    pop = popitem = setdefault = update = clear = __ior__ = _read_only  # type: ignore[assignment]

    def __or__(self, other: Any) -> Any:
        return dict(self.items()) | other

    def __ror__(self, other: Any) -> Any:
        return other | dict(self.items())


_UNMADE: Any = object()


def same_values(a: Any, b: Any) -> bool:
    """Value equality of plan fields: arrays by shape and contents (NaN equals NaN, dtypes
    aside), tuples and mappings item by item (mappings in key order), the rest by ``==``."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)) or a.shape != b.shape:
            return False
        nan = a.dtype.kind == "f" and b.dtype.kind == "f"
        return bool(np.array_equal(a, b, equal_nan=nan))
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same_values(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same_values(a[k], b[k]) for k in a)
    return bool(a == b)


def _hash_key(v: Any) -> Any:
    """What a field adds to a hash: shapes and lengths, never array contents."""
    if isinstance(v, np.ndarray):
        return ("array", v.shape)
    if isinstance(v, tuple):
        return ("tuple", len(v))
    if isinstance(v, dict):
        return ("map", len(v))
    return v


class ValueEq:
    """Value equality and a hash consistent with it, for the plan's frozen dataclasses.

    Two values are equal when they have the same type and every field holds the same values
    (:func:`same_values`); the hash reads scalars, shapes and lengths only, so it is cheap."""

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(same_values(getattr(self, f.name), getattr(other, f.name))
                   for f in fields(self))  # type: ignore[arg-type]

    def __hash__(self) -> int:
        return hash((type(self).__name__,) + tuple(
            _hash_key(getattr(self, f.name)) for f in fields(self)))  # type: ignore[arg-type]


@dataclass(frozen=True, eq=False)
class InputLayer(ValueEq):
    """``n`` input nodes of one distribution family with the same hyperparameters."""

    dist: str
    """registered distribution name"""
    attrs: tuple[tuple[str, Any], ...]
    """hyperparameters shared by the layer (indicator: ``card`` only; values are per node)"""
    node_start: int
    """first node slot; the layer writes slots ``node_start .. node_start + n - 1``"""
    vars: np.ndarray
    """int64 ``[n]``: the variable of each node"""
    param_start: np.ndarray
    """int64 ``[n]``: offset of each node's parameters in ``input_params`` (indicator: 0)"""
    param_size: int
    """parameters per node (categorical: card, bernoulli/binomial: 1, gaussian: 2, indicator: 0)"""
    values: np.ndarray | None = None
    """int64 ``[n]`` for indicators: the value each node tests"""

    @property
    def n(self) -> int:
        return int(self.vars.shape[0])

    def __post_init__(self) -> None:
        object.__setattr__(self, "vars", _ro(self.vars))
        object.__setattr__(self, "param_start", _ro(self.param_start))
        if self.values is not None:
            object.__setattr__(self, "values", _ro(self.values))


@dataclass(frozen=True, eq=False)
class ProductPartition(ValueEq):
    """Elements ``elem_start .. elem_start + E - 1`` each add up ``fanin`` node slots."""

    elem_start: int
    children: np.ndarray
    """int64 ``[E, fanin]`` node slots (padding: slot 0, which holds log 1)"""

    def __post_init__(self) -> None:
        object.__setattr__(self, "children", _ro(self.children))

    @property
    def num_elems(self) -> int:
        return int(self.children.shape[0])


@dataclass(frozen=True, eq=False)
class ProductLayer(ValueEq):
    """One product layer: its element buffer and the partitions that fill it."""

    num_elem_slots: int
    """size of the layer's element buffer, reserved slots included"""
    reserved: int
    """slots ``0 .. reserved - 1`` hold log 0 (sum padding)"""
    partitions: tuple[ProductPartition, ...]


@dataclass(frozen=True, eq=False)
class SumPartition(ValueEq):
    """Node blocks of ``block_size`` mixing ``num_chunks`` chunks of ``chunk_size`` elements."""

    block_size: int
    chunk_size: int
    node_start: np.ndarray
    """int64 ``[nb]``: first node slot of each block"""
    chunk_start: np.ndarray
    """int64 ``[nb, nc]``: first element slot of each chunk (padding: reserved slot 0)"""
    param_start: np.ndarray
    """int64 ``[nb, nc]``: offset of each ``block_size x chunk_size`` tile (padding: 0)"""
    num_chunks: np.ndarray
    """int64 ``[nb]``: real (unpadded) chunks of each block, a prefix of the row"""

    def __post_init__(self) -> None:
        for name in ("node_start", "chunk_start", "param_start", "num_chunks"):
            object.__setattr__(self, name, _ro(getattr(self, name)))

    @property
    def num_blocks(self) -> int:
        return int(self.node_start.shape[0])

    @property
    def max_chunks(self) -> int:
        return int(self.chunk_start.shape[1])


@dataclass(frozen=True, eq=False)
class SumLayer(ValueEq):
    """One sum layer; reads the element buffer of the product layer just before it."""

    partitions: tuple[SumPartition, ...]


@dataclass(frozen=True, eq=False)
class KernelPlan(ValueEq):
    """The L3 plan. See the module docstring for the semantics every backend implements."""

    num_vars: int
    var_cards: np.ndarray
    """int64 ``[num_vars]``: values of each variable (0: continuous or unused)"""
    num_node_slots: int
    root_slot: int
    input_layers: tuple[InputLayer, ...]
    layers: tuple[ProductLayer | SumLayer, ...]
    """alternating ProductLayer, SumLayer, ProductLayer, SumLayer, ..."""
    params: np.ndarray
    """float64 flat linear sum weights"""
    reserved_params: int
    """``params[:reserved_params]`` are the zero padding tile"""
    param_group: np.ndarray
    """int64 ``[len(params)]``: normalization group of each weight (-1: padding)"""
    group_size: np.ndarray
    """int64 ``[num_groups]``: children of each group (K in the EM pseudocount)"""
    input_params: np.ndarray
    """float64 flat input-node parameters"""
    param_map: dict[str, np.ndarray] = field(default_factory=dict)
    """L0 parameter key -> int64 offsets with the L0 array's shape (a :class:`ParamMap` from
    ``layout-params``: entries made when first read)"""
    input_param_keys: frozenset[str] = frozenset()
    """keys of ``param_map`` that index ``input_params`` (the rest index ``params``)"""
    meta: tuple[tuple[str, str], ...] = ()
    """how the plan was made (pipeline, options, precision); shown in dumps, not semantic"""
    num_roots: int = 1
    """nodes of the root vector: slots ``root_slot .. root_slot + num_roots - 1``"""

    level = "L3"

    def __eq__(self, other: object) -> bool:
        """Value equality: every field (``meta`` too) holds the same values, arrays compared
        element by element (``param_map`` entries are made to be compared); a plan whose
        values are still being copied is waited for. The hash reads sizes only."""
        if isinstance(other, KernelPlan):
            self.wait_values()
            other.wait_values()
        return ValueEq.__eq__(self, other)

    __hash__ = ValueEq.__hash__

    def __post_init__(self) -> None:
        object.__setattr__(self, "var_cards", _ro(self.var_cards))
        object.__setattr__(self, "params", _ro(self.params, np.float64))
        object.__setattr__(self, "input_params", _ro(self.input_params, np.float64))
        object.__setattr__(self, "param_group", _ro(self.param_group))
        object.__setattr__(self, "group_size", _ro(self.group_size))
        if not isinstance(self.param_map, ParamMap):  # (a ParamMap is sorted and read-only)
            object.__setattr__(self, "param_map",
                               {k: _ro(v) for k, v in sorted(self.param_map.items())})

    def values_pending(self, future: Future[None] | None) -> None:
        """Mark ``params``, ``param_group`` and ``input_params`` as still being written until
        ``future`` is done (see :func:`pccc.passes.layout_params.values_in_background`);
        None: they are complete."""
        object.__setattr__(self, "_pending", future)

    @property
    def pending(self) -> Future[None] | None:
        """The copies still writing the value arrays (None: they are complete)."""
        f: Future[None] | None = self.__dict__.get("_pending")
        return f

    def wait_values(self) -> None:
        """Wait until the value arrays are complete (re-raises a failed copy's error); a
        no-op for a plan made the usual way."""
        f = self.pending
        if f is not None:
            f.result()
            object.__setattr__(self, "_pending", None)

    def sum_layers(self) -> list[SumLayer]:
        return [ly for ly in self.layers if isinstance(ly, SumLayer)]

    def product_layers(self) -> list[ProductLayer]:
        return [ly for ly in self.layers if isinstance(ly, ProductLayer)]

    def num_sum_edges(self) -> int:
        """Real (unpadded) weighted edges: ``B * C`` per real tile."""
        return sum(int(p.num_chunks.sum()) * p.block_size * p.chunk_size
                   for ly in self.sum_layers() for p in ly.partitions)

    def source_params(self) -> dict[str, np.ndarray]:
        """The L0 parameter store read back from the flat buffers (for ``pccc.save``)."""
        out = {}
        for key, idx in self.param_map.items():
            buf = self.input_params if key in self.input_param_keys else self.params
            out[key] = buf[idx]
        return out

    def root_slots(self) -> range:
        """The node slots of the roots, in order."""
        return range(self.root_slot, self.root_slot + self.num_roots)

    def _roots_text(self) -> str:
        if self.num_roots == 1:
            return f"root slot {self.root_slot}"
        return f"{self.num_roots} root slots {self.root_slot}..{self.root_slots()[-1]}"

    def summary(self) -> str:
        """A few lines for ``model.artifacts`` and ``pccc info`` on plans."""
        lines = [f"KernelPlan v{PLAN_VERSION}: {self.num_vars} vars, "
                 f"{self.num_node_slots} node slots, {len(self.params)} weights, "
                 f"{len(self.input_params)} input params, {self._roots_text()}"]
        for inp in self.input_layers:
            lines.append(f"  input {inp.dist}{dict(inp.attrs)} n={inp.n} @{inp.node_start}")
        for i, ly in enumerate(self.layers):
            if isinstance(ly, ProductLayer):
                parts = ", ".join(f"{p.num_elems}x{p.children.shape[1]}" for p in ly.partitions)
                lines.append(f"  [{i}] product elems={ly.num_elem_slots} parts: {parts}")
            else:
                parts = ", ".join(f"{q.num_blocks}blk B={q.block_size} C={q.chunk_size} "
                                  f"nc={q.max_chunks}" for q in ly.partitions)
                lines.append(f"  [{i}] sum parts: {parts}")
        for k, v in self.meta:
            lines.append(f"  {k}: {v}")
        return "\n".join(lines)
