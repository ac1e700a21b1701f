"""The L3 verifier: a :class:`~pccc.ir.plan.KernelPlan` that passes is safe to hand to any
backend.

:func:`verify_plan` checks that every size agrees with the arrays present, every index lies in
range, every node and element slot is written before it is read (and written once), the
padding chunks point at the reserved slots and the zero tile, the roots are slots some layer
writes, each input layer's hyperparameters fit its family and its variables' domains, and
(``values=True``) every parameter is finite and in its distribution's domain. The scalar
sizes (slot counts, block and chunk sizes, the root) are checked against the lengths of the
index tables before anything of that size is made, so a plan that claims huge sizes is
refused without allocating them.

The backends run :func:`check_once` before they read a table, so no kernel sees a plan that
fails the structural checks; ``pccc.load_module`` runs every check on a plan read from a file.

Example::

    from pccc.ir.plan_verify import verify_plan
    verify_plan(plan)      # raises VerifyError naming the layer and partition
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from pccc.ir import dists
from pccc.ir.errors import VerifyError
from pccc.ir.limits import MAX_VALUES, MAX_VARS
from pccc.ir.plan import InputLayer, KernelPlan, ProductLayer, SumLayer, SumPartition

#: the largest block or chunk size of a sum partition (and reserved element slots)
MAX_TILE_SIDE = 1 << 16
#: input families: parameters per node (None: the ``card`` attribute)
FAMILIES: dict[str, int | None] = {"indicator": 0, "categorical": None, "bernoulli": 1,
                                   "binomial": 1, "gaussian": 2}
#: the hyperparameters of each family's layers, with their bounds
_ATTRS: dict[str, dict[str, tuple[int, int]]] = {
    "indicator": {"card": (1, MAX_VALUES)}, "categorical": {"card": (1, MAX_VALUES)},
    "bernoulli": {}, "binomial": {"total": (0, MAX_VALUES - 1)}, "gaussian": {}}


def _range(arr: np.ndarray, lo: int, hi: int, what: str) -> None:
    if arr.size and (int(arr.min()) < lo or int(arr.max()) >= hi):
        raise VerifyError(f"{what}: values {int(arr.min())}..{int(arr.max())} outside "
                          f"{lo}..{hi - 1}")


def _int(value: Any, what: str, lo: int, hi: int) -> int:
    """``value`` as an int in ``lo..hi``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise VerifyError(f"{what}: {value!r} is not an integer")
    if not lo <= int(value) <= hi:
        raise VerifyError(f"{what}: {int(value)} outside {lo}..{hi}")
    return int(value)


def _table(arr: Any, ndim: int, what: str, shape: tuple[int, ...] | None = None) -> None:
    if not isinstance(arr, np.ndarray) or arr.ndim != ndim:
        raise VerifyError(f"{what}: not a {ndim}-dimensional array")
    if shape is not None and arr.shape != shape:
        raise VerifyError(f"{what}: shape {arr.shape}, expected {shape}")
    if arr.dtype.kind not in "iu" and arr.size:
        raise VerifyError(f"{what}: {arr.dtype} values, expected integers")


def _input_sizes(plan: KernelPlan) -> int:
    """Node slots the input layers write (their tables' shapes checked)."""
    total = 0
    for i, ly in enumerate(plan.input_layers):
        where = f"input layer {i}"
        _table(ly.vars, 1, f"{where} vars")
        _table(ly.param_start, 1, f"{where} param_start", ly.vars.shape)
        if ly.values is not None:
            _table(ly.values, 1, f"{where} values", ly.vars.shape)
        total += ly.n
    return total


def _sum_sizes(plan: KernelPlan, li: int, ly: SumLayer) -> int:
    """Node slots a sum layer writes (its sizes and tables' shapes checked)."""
    total = 0
    for pi, sp in enumerate(ly.partitions):
        where = f"layer {li} sum partition {pi}"
        B = _int(sp.block_size, f"{where} block_size", 1, MAX_TILE_SIDE)
        C = _int(sp.chunk_size, f"{where} chunk_size", 1, MAX_TILE_SIDE)
        if B * C > plan.reserved_params:
            raise VerifyError(f"{where}: a {B}x{C} tile is larger than the reserved zero tile "
                              f"({plan.reserved_params} weights)")
        _table(sp.node_start, 1, f"{where} node_start")
        nb = sp.node_start.shape[0]
        _table(sp.chunk_start, 2, f"{where} chunk_start")
        if sp.chunk_start.shape[0] != nb:
            raise VerifyError(f"{where}: chunk_start has {sp.chunk_start.shape[0]} rows for "
                              f"{nb} blocks")
        _table(sp.param_start, 2, f"{where} param_start", sp.chunk_start.shape)
        _table(sp.num_chunks, 1, f"{where} num_chunks", (nb,))
        if sp.reads is not None:
            _table(sp.reads, 1, f"{where} reads", (nb,))
        total += nb * B
    return total


def _product_sizes(li: int, ly: ProductLayer) -> None:
    elems = 0
    for pi, pp in enumerate(ly.partitions):
        _table(pp.children, 2, f"layer {li} product partition {pi} children")
        elems += pp.num_elems
    reserved = _int(ly.reserved, f"layer {li} reserved", 1, MAX_TILE_SIDE)
    _int(ly.num_elem_slots, f"layer {li} num_elem_slots", reserved, reserved + elems)


def _check_sizes(plan: KernelPlan) -> None:
    """The scalars against the arrays present, before anything is made from them."""
    for name in ("params", "input_params"):
        arr = getattr(plan, name)
        if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype.kind != "f":
            raise VerifyError(f"{name}: not a one-dimensional array of floats")
    _table(plan.param_group, 1, "param_group", plan.params.shape)
    _table(plan.group_size, 1, "group_size")
    num_vars = _int(plan.num_vars, "num_vars", 0, MAX_VARS)
    _table(plan.var_cards, 1, "var_cards", (num_vars,))
    _range(plan.var_cards, 0, MAX_VALUES + 1, "var_cards")
    _int(plan.reserved_params, "reserved_params", 1, len(plan.params))
    slots = 1 + _input_sizes(plan)
    for li, ly in enumerate(plan.layers):
        if isinstance(ly, ProductLayer):
            _product_sizes(li, ly)
        elif isinstance(ly, SumLayer):
            slots += _sum_sizes(plan, li, ly)
        else:
            raise VerifyError(f"layer {li}: not a product or sum layer")
    n = _int(plan.num_node_slots, "num_node_slots", 2, max(slots, 2))
    root = _int(plan.root_slot, "root slot", 1, n - 1)
    roots = _int(plan.num_roots, "num_roots", -(1 << 62), 1 << 62)
    if roots < 1:
        raise VerifyError(f"num_roots is {roots}; a plan has at least one root")
    if roots > n - root:
        raise VerifyError(f"root slots {root}..{root + roots - 1}: slots from {n} on are never "
                          f"written (the plan has {n} node slots)")


def _check_input_layer(plan: KernelPlan, i: int, ly: InputLayer) -> None:
    """A layer's family, hyperparameters and parameter offsets, against its variables."""
    where = f"input layer {i} ({ly.dist})"
    if ly.dist not in FAMILIES and ly.dist in dists.names():
        _check_registered_layer(plan, ly, where)
        return
    if ly.dist not in FAMILIES:
        raise VerifyError(f"input layer {i}: unknown distribution {ly.dist!r} (known: "
                          f"{', '.join(sorted(FAMILIES))})")
    attrs = dict(ly.attrs) if isinstance(ly.attrs, tuple) else None
    if attrs is None or set(attrs) != set(_ATTRS[ly.dist]):
        raise VerifyError(f"{where}: attributes {ly.attrs!r}, expected "
                          f"{sorted(_ATTRS[ly.dist]) or 'none'}")
    for key, (lo, hi) in _ATTRS[ly.dist].items():
        _int(attrs[key], f"{where} {key}", lo, hi)
    size = FAMILIES[ly.dist]
    size = attrs["card"] if size is None else size
    _int(ly.param_size, f"{where} param_size", size, size)
    _range(ly.vars, 0, plan.num_vars, f"{where} vars")
    if ly.param_size:
        _range(ly.param_start, 0, len(plan.input_params) - ly.param_size + 1,
               f"{where} param_start")
    cards = plan.var_cards[ly.vars]
    if ly.dist == "indicator":
        if ly.values is None:
            raise VerifyError(f"{where}: indicator values missing")
        _range(ly.values, 0, attrs["card"], f"{where} values")
        return
    if ly.dist == "gaussian":
        return
    most = {"categorical": attrs.get("card"), "bernoulli": 2,
            "binomial": attrs.get("total", 0) + 1}[ly.dist]
    if cards.size and (int(cards.min()) < 1 or int(cards.max()) > most):
        raise VerifyError(f"{where}: variables with {int(cards.min())}..{int(cards.max())} "
                          f"values, but the layer's nodes take 1..{most}")


def _check_registered_layer(plan: KernelPlan, ly: InputLayer, where: str) -> None:
    """A layer of a distribution outside :data:`FAMILIES`, by the registry's own checks."""
    cls = dists.get(ly.dist)
    attrs = dict(ly.attrs) if isinstance(ly.attrs, tuple) else None
    try:
        msg = "malformed attributes" if attrs is None else cls.check_layer_attrs(ly.n, attrs)
    except (TypeError, ValueError) as e:
        msg = f"malformed attributes ({e})"
    if msg or attrs is None:
        raise VerifyError(f"{where}: {msg}")
    shape = cls.param_shape(1, attrs)
    size = 0 if shape is None else int(np.prod(shape[1:], dtype=np.int64))
    _int(ly.param_size, f"{where} param_size", size, size)
    _range(ly.vars, 0, plan.num_vars, f"{where} vars")
    if ly.param_size:
        _range(ly.param_start, 0, len(plan.input_params) - ly.param_size + 1,
               f"{where} param_start")
    most = cls.cardinality(attrs)
    cards = plan.var_cards[ly.vars]
    if most is not None and cards.size and (int(cards.min()) < 1 or int(cards.max()) > most):
        raise VerifyError(f"{where}: variables with {int(cards.min())}..{int(cards.max())} "
                          f"values, but the layer's nodes take 1..{most}")


def _check_param_ranges(plan: KernelPlan) -> None:
    """Input nodes' parameter ranges: disjoint, or shared whole by nodes of one family with
    the same hyperparameters (tied parameters); the families read their raw coordinates
    differently, so no other overlap has a meaning."""
    kinds = {(ly.dist, ly.attrs) for ly in plan.input_layers if ly.param_size}
    kind_id = {k: i for i, k in enumerate(sorted(kinds, key=repr))}
    parts = [(ly.param_start, np.full(ly.n, ly.param_size), np.full(ly.n, kind_id[ly.dist,
              ly.attrs])) for ly in plan.input_layers if ly.param_size and ly.n]
    if not parts:
        return
    start, size, kind = (np.concatenate(a) for a in zip(*parts))
    order = np.lexsort((kind, start))
    start, size, kind = start[order], size[order], kind[order]
    same = start[1:] == start[:-1]
    clash = same & (kind[1:] != kind[:-1])
    overlap = ~same & (start[:-1] + size[:-1] > start[1:])
    if clash.any() or overlap.any():
        at = int(start[1:][clash | overlap][0])
        raise VerifyError(f"input parameters at offset {at} are shared by nodes of different "
                          "families or overlap partly")


def _check_inputs(plan: KernelPlan, written: np.ndarray) -> None:
    for i, ly in enumerate(plan.input_layers):
        _check_input_layer(plan, i, ly)
        where = f"input layer {i} ({ly.dist})"
        start = _int(ly.node_start, f"{where} node_start", 1, plan.num_node_slots - ly.n)
        if written[start: start + ly.n].any():
            raise VerifyError(f"{where}: slots written twice")
        written[start: start + ly.n] = True
    _check_param_ranges(plan)


def _check_product(plan: KernelPlan, li: int, ly: ProductLayer, written: np.ndarray
                   ) -> np.ndarray:
    """Check a product layer; returns its element slots that hold a value when read."""
    elems = np.zeros(ly.num_elem_slots, bool)
    elems[: ly.reserved] = True
    for pi, pp in enumerate(ly.partitions):
        where = f"layer {li} product partition {pi}"
        start = _int(pp.elem_start, f"{where} elem_start", ly.reserved,
                     ly.num_elem_slots - pp.num_elems)
        if elems[start: start + pp.num_elems].any():
            raise VerifyError(f"{where}: element slots written twice")
        elems[start: start + pp.num_elems] = True
        kids = pp.children
        _range(kids, 0, plan.num_node_slots, f"{where} children")
        if kids.size and not written[kids].all():
            raise VerifyError(f"{where}: reads node slots no earlier layer writes")
    return elems


def _check_chunks(plan: KernelPlan, where: str, sp: SumPartition, prev: ProductLayer,
                  elems: np.ndarray) -> None:
    """The chunks of a sum partition: real ones read written elements and tiles inside the
    weights; padding ones the reserved slots and the zero tile."""
    B, C = sp.block_size, sp.chunk_size
    _range(sp.num_chunks, 1, sp.max_chunks + 1, f"{where} num_chunks")
    real = np.arange(sp.max_chunks)[None, :] < sp.num_chunks[:, None]
    _range(sp.chunk_start[real], 0, prev.num_elem_slots - C + 1, f"{where} chunk_start")
    _range(sp.param_start[real], 0, len(plan.params) - B * C + 1, f"{where} param_start")
    _range(sp.chunk_start[~real], 0, prev.reserved - C + 1, f"{where} padding chunk_start")
    _range(sp.param_start[~real], 0, plan.reserved_params - B * C + 1,
           f"{where} padding param_start")
    unset = np.concatenate([[0], np.cumsum(~elems)])
    starts = sp.chunk_start[real]
    if starts.size and np.any(unset[starts + C] != unset[starts]):
        raise VerifyError(f"{where}: reads element slots the product layer does not write")
    if sp.reads is not None and len(sp.reads):
        _range(sp.reads, 0, 2**62, f"{where} reads")
        _, first = np.unique(sp.reads, return_index=True)
        _, cls = np.unique(sp.reads, return_inverse=True)
        bad = np.flatnonzero(sp.num_chunks != sp.num_chunks[first[cls.reshape(-1)]])
        if len(bad):
            raise VerifyError(f"{where}: block {int(bad[0])} reads like block "
                              f"{int(first[cls.reshape(-1)][bad[0]])} (reads) but has "
                              "another number of chunks")


def _check_sum(plan: KernelPlan, li: int, ly: SumLayer, prev: ProductLayer, elems: np.ndarray,
               written: np.ndarray) -> None:
    for pi, sp in enumerate(ly.partitions):
        where = f"layer {li} sum partition {pi}"
        if sp.chunk_size > prev.reserved:
            raise VerifyError(f"{where}: chunk larger than the reserved element slots")
        _check_chunks(plan, where, sp, prev, elems)
        _range(sp.node_start, 1, plan.num_node_slots - sp.block_size + 1,
               f"{where} node_start")
        slots = (sp.node_start[:, None] + np.arange(sp.block_size)[None, :]).ravel()
        if written[slots].any() or len(np.unique(slots)) != len(slots):
            raise VerifyError(f"{where}: node slots written twice")
        written[slots] = True


def _check_layers(plan: KernelPlan, written: np.ndarray) -> None:
    prev: ProductLayer | None = None
    elems = np.zeros(0, bool)
    for li, ly in enumerate(plan.layers):
        if isinstance(ly, ProductLayer):
            if prev is not None:
                raise VerifyError(f"layer {li}: two product layers in a row")
            elems = _check_product(plan, li, ly, written)
            prev = ly
        else:
            if prev is None:
                raise VerifyError(f"layer {li}: a sum layer without a product layer before it")
            _check_sum(plan, li, ly, prev, elems, written)
            prev = None
    if prev is not None:
        raise VerifyError(f"layer {len(plan.layers) - 1}: a product layer no sum layer reads")


def _check_roots(plan: KernelPlan, written: np.ndarray) -> None:
    roots = written[plan.root_slot: plan.root_slot + plan.num_roots]
    if not roots.all():
        s = plan.root_slot + int(np.argmin(roots))
        raise VerifyError(f"root slot {s} is never written")


def _check_groups(plan: KernelPlan) -> None:
    """Each weight's normalization group, and each group's size."""
    _range(plan.param_group, -1, len(plan.group_size), "param_group")
    if np.any(plan.param_group[: plan.reserved_params] != -1):
        raise VerifyError("the reserved zero tile belongs to a normalization group")
    g = plan.param_group
    count = np.bincount(g[g >= 0], minlength=len(plan.group_size))
    if not np.array_equal(count, plan.group_size):
        bad = int(np.flatnonzero(count != plan.group_size)[0])
        raise VerifyError(f"group_size[{bad}] is {int(plan.group_size[bad])}, but "
                          f"{int(count[bad])} weights belong to group {bad}")


def _check_param_map(plan: KernelPlan) -> None:
    from pccc.ir.plan import Offsets, ParamMap

    pm = plan.param_map
    for key in pm:
        idx = pm.entry(key) if isinstance(pm, ParamMap) else pm[key]
        buf = plan.input_params if key in plan.input_param_keys else plan.params
        where = f"param_map[{key!r}]"
        if isinstance(idx, Offsets):  # (a rule: its bounds, without making the array)
            lo, hi = idx.bounds()
            if lo < 0 or hi > len(buf):
                raise VerifyError(f"{where}: offsets {lo}..{hi - 1} outside 0..{len(buf) - 1}")
            continue
        _table(idx, idx.ndim if isinstance(idx, np.ndarray) else 1, where)
        _range(idx, 0, len(buf), where)
    extra = set(plan.input_param_keys) - set(plan.param_map)
    if extra:
        raise VerifyError(f"input_param_keys names keys without offsets: {sorted(extra)}")


def _check_values(plan: KernelPlan) -> None:
    """Weights finite and >= 0 (the zero tile zero), input parameters in their domains."""
    from pccc.ir import dists

    if not dists.finite_nonnegative(plan.params):
        raise VerifyError("sum weights must be finite and >= 0")
    if np.any(plan.params[: plan.reserved_params] != 0):
        raise VerifyError("the reserved padding tile must hold zeros")
    for i, ly in enumerate(plan.input_layers):
        if not ly.param_size or not ly.n:
            continue
        attrs = dict(ly.attrs)
        idx = ly.param_start[:, None] + np.arange(ly.param_size)[None, :]
        shape = dists.get(ly.dist).param_shape(ly.n, attrs)
        vals = plan.input_params[idx].reshape(shape)
        msg = dists.get(ly.dist).check_params(vals, attrs)
        if msg:
            raise VerifyError(f"input layer {i} ({ly.dist}): {msg}")


def verify_plan(plan: KernelPlan, *, values: bool = True, groups: bool = True) -> None:
    """Check a plan's sizes, index ranges, reads and writes, roots and parameters.

    Args:
        plan: the plan.
        values: also check the parameter values (finite, in their domains).
        groups: also check the normalization groups (``param_group``, ``group_size``).

    Raises:
        VerifyError: naming the layer and partition, or the field, at fault.
    """
    _check_sizes(plan)
    written = np.zeros(plan.num_node_slots, bool)
    written[0] = True
    _check_inputs(plan, written)
    _check_layers(plan, written)
    _check_roots(plan, written)
    _check_param_map(plan)
    if groups:
        _check_groups(plan)
    if values:
        _check_values(plan)


#: what :func:`check_once` checked of each live plan, by ``id`` (an entry leaves with its
#: plan); the plans themselves are never marked
_CHECKED: dict[int, str] = {}
#: live plans whose normalization groups pccc's own passes made, by ``id``
_OWN_GROUPS: set[int] = set()


def trust_groups(plan: KernelPlan) -> None:
    """Note that pccc's own passes made ``plan`` (``compile_plan`` calls this): its
    normalization groups are correct by construction, and :func:`check_once` does not read
    them again (a bincount over every weight)."""
    key = id(plan)
    if key not in _OWN_GROUPS:
        _OWN_GROUPS.add(key)
        weakref.finalize(plan, _OWN_GROUPS.discard, key)


def check_once(plan: KernelPlan, *, values: bool = False) -> None:
    """:func:`verify_plan` once per plan object (later calls return at once): what a backend
    runs before it reads a table (``values=False``: the structure), and what a loader runs
    before it hands a plan read from a file to a backend (``values=True``). The groups of a
    plan noted by :func:`trust_groups` are checked only with ``values``."""
    key = id(plan)
    done = _CHECKED.get(key)
    if done == "values" or (done == "structure" and not values):
        return
    verify_plan(plan, values=values, groups=values or key not in _OWN_GROUPS)
    if done is None:
        weakref.finalize(plan, _CHECKED.pop, key, None)
    _CHECKED[key] = "values" if values else "structure"
