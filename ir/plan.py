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

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

PLAN_VERSION = 1


def _ro(a: Any, dtype: Any = np.int64) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(a, dtype=dtype))
    arr.setflags(write=False)
    return arr


def _float_kind(a: Any) -> Any:
    """float32 for a float32 array (kept as it is), else float64."""
    return np.float32 if isinstance(a, np.ndarray) and a.dtype == np.float32 else np.float64


def _int32(a: Any) -> Any:
    """``a``, checked to fit int32 unless it is int32 already (then as it is: no pass)."""
    if isinstance(a, np.ndarray) and a.dtype == np.int32:
        return a
    arr = np.asarray(a)
    if arr.size and arr.dtype.kind in "iu" and (arr.min() < -(1 << 31) or arr.max() >= 1 << 31):
        raise ValueError("param_group: a group id beyond int32")
    return arr


@dataclass(frozen=True)
class Offsets:
    """A regular ``param_map`` entry, kept as its rule: the offsets of an array of ``shape``
    stored from ``start``, whole and row-major (``tiling`` None), or (a 2-d weight array) as
    ``[nb, nc, B, C]`` tiles, every tile contiguous and row-major (``tiling``:
    ``(B, C, nc)``). :meth:`array` gives the offsets themselves."""

    start: int
    shape: tuple[int, ...]
    tiling: tuple[int, int, int] | None = None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def _axes(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-row and per-column parts of a tiled entry's offsets (they add up)."""
        assert self.tiling is not None
        (n, m), (B, C, nc) = self.shape, self.tiling
        i, j = np.arange(n), np.arange(m)
        return (self.start + (i // B) * (nc * B * C) + (i % B) * C,
                (j // C) * (B * C) + (j % C))

    def array(self) -> np.ndarray:
        """The int64 offsets, of shape ``shape`` (a new read-only array)."""
        if self.tiling is None:
            return _ro(np.arange(self.start, self.start + self.size).reshape(self.shape))
        rows, cols = self._axes()
        return _ro(rows[:, None] + cols[None, :])

    def bounds(self) -> tuple[int, int]:
        """``(lowest, highest + 1)`` offset (``(start, start)`` when empty), without making
        the array (offsets grow along each axis)."""
        if self.size == 0:
            return self.start, self.start
        if self.tiling is None:
            return self.start, self.start + self.size
        rows, cols = self._axes()
        return int(rows[0] + cols[0]), int(rows[-1] + cols[-1]) + 1


class ParamMap(Mapping[str, np.ndarray]):
    """A plan's ``param_map``: an immutable mapping from L0 parameter keys to int64 offset
    arrays, in key order.

    An entry is stored as an array, or as the :class:`Offsets` rule that gives it (the
    layouts of ``layout-params`` are regular: ranges and tile patterns; for PD-256 the arrays
    would be 155M int64). Reading an entry (``[]``, ``get``, ``items``, ...) gives the
    array, made from its rule on each read (nothing is cached: the map never changes);
    :meth:`entry` gives what is stored. Equality compares the arrays (two equal rules
    without making them).
    """

    __slots__ = ("_entries",)
    _entries: dict[str, np.ndarray | Offsets]

    def __init__(self, entries: Any = ()):
        items = dict(entries)  # (any dict() argument: dataclasses.asdict rebuilds it from pairs)
        object.__setattr__(self, "_entries", {
            k: v if isinstance(v, Offsets) else _ro(v) for k, v in sorted(items.items())})

    def __getitem__(self, key: str) -> np.ndarray:
        e = self._entries[key]
        return e.array() if isinstance(e, Offsets) else e

    def entry(self, key: str) -> np.ndarray | Offsets:
        """What the map stores for ``key``: its array, or the rule that makes it."""
        return self._entries[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        if list(self) != sorted(other):
            return False
        for k in self:
            a, b = self._entries[k], (other.entry(k) if isinstance(other, ParamMap)
                                      else other[k])
            if isinstance(a, Offsets) and isinstance(b, Offsets) and a == b:
                continue
            x, y = self[k], np.asarray(other[k])
            if x.shape != y.shape or not np.array_equal(x, y):
                return False
        return True

    __hash__ = None  # type: ignore[assignment]

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError("a plan's param_map is read-only")

    def __repr__(self) -> str:
        return f"ParamMap({self._entries!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return ParamMap, (self._entries,)


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
    if isinstance(a, ParamMap) or isinstance(b, ParamMap):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same_values(a[k], b[k]) for k in a)
    return bool(a == b)


def _hash_key(v: Any) -> Any:
    """What a field adds to a hash: shapes and lengths, never array contents."""
    if isinstance(v, np.ndarray):
        return ("array", v.shape)
    if isinstance(v, tuple):
        return ("tuple", len(v))
    if isinstance(v, Mapping):
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
    reads: np.ndarray | None = None
    """int64 ``[nb]``: what each block reads, as a class: blocks of equal class read elements
    with equal children (the blocks of one sum vector, and of sum vectors over the same
    children); not semantic, a fact for backends (the Triton backend's sibling groups).
    None: not recorded (blocks whose chunks start at the same element slots read the same)"""

    def __post_init__(self) -> None:
        for name in ("node_start", "chunk_start", "param_start", "num_chunks"):
            object.__setattr__(self, name, _ro(getattr(self, name)))
        if self.reads is not None:
            object.__setattr__(self, "reads", _ro(self.reads))

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
    """float64 flat linear sum weights (float32 where given so: ``layout-params``'
    ``float32-weights``)"""
    reserved_params: int
    """``params[:reserved_params]`` are the zero padding tile"""
    param_group: np.ndarray
    """int32 ``[len(params)]``: normalization group of each weight (-1: padding; any integer
    array given is made int32, refused where a value does not fit: 4 bytes a weight on the
    host)"""
    group_size: np.ndarray
    """int64 ``[num_groups]``: children of each group (K in the EM pseudocount)"""
    input_params: np.ndarray
    """float64 flat input-node parameters"""
    param_map: Mapping[str, np.ndarray] = field(default_factory=dict)
    """L0 parameter key -> int64 offsets with the L0 array's shape (a :class:`ParamMap`; any
    mapping given is made one)"""
    input_param_keys: frozenset[str] = frozenset()
    """keys of ``param_map`` that index ``input_params`` (the rest index ``params``)"""
    meta: tuple[tuple[str, str], ...] = ()
    """how the plan was made (pipeline, options, precision); shown in dumps, not semantic"""
    num_roots: int = 1
    """nodes of the root vector: slots ``root_slot .. root_slot + num_roots - 1``"""

    level = "L3"

    def __post_init__(self) -> None:
        object.__setattr__(self, "var_cards", _ro(self.var_cards))
        object.__setattr__(self, "params", _ro(self.params, _float_kind(self.params)))
        object.__setattr__(self, "input_params", _ro(self.input_params, np.float64))
        object.__setattr__(self, "param_group", _ro(_int32(self.param_group), np.int32))
        object.__setattr__(self, "group_size", _ro(self.group_size))
        if not isinstance(self.param_map, ParamMap):  # (a ParamMap is sorted and read-only)
            object.__setattr__(self, "param_map", ParamMap(self.param_map))

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
