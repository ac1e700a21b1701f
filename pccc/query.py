"""Queries: per-variable conditionals, exact samples and MPE completions.

``model`` is an L0 :class:`~pccc.ir.Circuit`, answered node by node by the float64 reference
backend, or a compiled module (:func:`pccc.compile`, :func:`pccc.load_module`; torch or Triton
backend, any device). ``x`` is ``[B, V]`` (numpy or torch): integers with ``-1`` for a missing
value, or floats with NaN for one (or ``-1`` on a discrete variable), as everywhere in pccc.
Results are torch tensors on the module's device (on the CPU for a circuit). See
``docs/queries.md``.

- :func:`conditional`: ``log p(X_v = k | e)`` ``[B, V, K]``, from one forward pass with the
  evidence and one backward pass of flows.
- :func:`sample`: exact ancestral samples, unconditional or given evidence.
- :func:`mpe`: the max-product (Viterbi) completion of each row and its exact ``log p``.

A circuit whose root vector holds ``n > 1`` nodes is refused (:class:`QueryError` naming
``n``): each root is a distribution of its own, and a query needs one. What runs where:

- a circuit: the float64 reference backend, node by node;
- a torch module: its torch layers (forward, flows, the top-down pass of
  :mod:`pccc.backends.torch.queries`);
- a Triton module: its own kernels throughout: conditionals from its forward and flows
  kernels, samples from its forward kernels and the top-down pass of
  :mod:`pccc.backends.triton.queries` (Gumbel-max choices with counter-based Philox draws),
  MPE completions from the max-product forward and the argmax top-down pass there;
- a module of another backend without the torch layers: samples and MPE through a torch
  module of the same plan holding its state (:func:`pccc.backends.torch.queries.twin`).

Example::

    import pccc
    model = pccc.compile(circuit, backend="torch")
    post = pccc.query.conditional(model, x)            # [B, V, K] log-probabilities
    draws = pccc.query.sample(model, 1000, seed=0)     # [1000, V]
    rows, ll = pccc.query.mpe(model, x)                # completions, log p of each
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pccc.ir.circuit import Circuit, InputVector
from pccc.ir.errors import PcccError

if TYPE_CHECKING:
    import torch

__all__ = ["QueryError", "conditional", "mpe", "sample"]

#: node-buffer values per forward pass of a module (rows per batch: this over its slots)
BATCH_VALUES = 1 << 26


class QueryError(PcccError):
    """A query the model cannot answer, or arguments that do not fit it."""


@dataclass(frozen=True)
class _Model:
    """What a query needs to know of its model."""

    model: Any
    """the circuit or the module"""
    num_vars: int
    cards: dict[int, int | None]
    """cardinality of each variable the circuit uses (None: continuous)"""
    dists: dict[int, str]
    """a distribution of each continuous variable (for messages)"""

    @property
    def reference(self) -> bool:
        return isinstance(self.model, Circuit)

    @property
    def continuous(self) -> bool:
        return any(k is None for k in self.cards.values())

    @property
    def num_values(self) -> int:
        return max((k for k in self.cards.values() if k is not None), default=1)


def _model(model: Any, what: str) -> _Model:
    """Check that ``model`` can be queried (one root) and describe its variables."""
    from pccc.ir import dists

    cards: dict[int, int | None] = {}
    names: dict[int, str] = {}
    if isinstance(model, Circuit):
        from pccc.ir import verify

        verify(model)  # (smooth and decomposable: what every query's method relies on)
        roots, nv = model.nodes[model.root].n, model.num_vars
        layers = [(nd.dist, dict(nd.attrs), [nd.var]) for nd in model.nodes
                  if isinstance(nd, InputVector)]
    elif hasattr(model, "plan") and hasattr(model, "run_forward"):
        roots, nv = model.plan.num_roots, model.plan.num_vars
        layers = [(ly.dist, dict(ly.attrs), np.unique(ly.vars).tolist())
                  for ly in model.plan.input_layers]
    else:
        raise QueryError(f"{what}: expected a Circuit or a compiled module, got "
                         f"{type(model).__name__}")
    if roots != 1:
        raise QueryError(f"{what}: the circuit has {roots} roots (a root vector of {roots} "
                         "nodes); queries need a circuit of one root")
    for dist, attrs, vars_ in layers:
        k = dists.get(dist).cardinality(attrs)
        for v in vars_:
            prev = cards.get(int(v), k)
            cards[int(v)] = None if k is None or prev is None else max(prev, k)
            if k is None:
                names[int(v)] = dist
    return _Model(model, nv, cards, names)


def _rows(m: _Model, x: Any, what: str, name: str = "x") -> np.ndarray:
    """``x`` as ``[B, V]`` numpy rows, checked against the model's variables: int64 with
    ``-1`` = missing, or float64 with NaN = missing when a variable is continuous (on a
    continuous variable ``-1.0`` is a value)."""
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x)
    if a.ndim != 2 or a.shape[1] != m.num_vars:
        raise QueryError(f"{what}: {name} must have shape [rows, {m.num_vars}], got "
                         f"{list(a.shape)}")
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer) or
                               np.issubdtype(a.dtype, np.floating)):
        raise QueryError(f"{what}: {name} must hold numbers, not {a.dtype}")
    disc = [v for v in range(m.num_vars) if m.cards.get(v, 0) is not None]
    miss = np.zeros(a.shape, dtype=bool)
    miss[:, disc] = a[:, disc] == -1
    if np.issubdtype(a.dtype, np.floating):
        miss |= np.isnan(a)
    vals = np.where(miss, 0, a)[:, disc]
    high = np.array([m.cards.get(v) or m.num_values for v in disc])
    bad = (vals != np.round(vals)) | (vals < 0) | (vals >= high) if len(disc) else vals < 0
    if np.any(bad):
        r, j = np.argwhere(bad)[0]
        v = disc[j]
        raise QueryError(f"{what}: {name} row {r}, variable {v}: value {a[r, v]} is not in "
                         f"0..{high[j] - 1} (-1 = missing)")
    if m.continuous:
        return np.where(miss, np.nan, a).astype(np.float64)
    return np.where(miss, -1, a).astype(np.int64)


def _batches(m: _Model, n: int, batch_size: int | None) -> list[slice]:
    if batch_size is None:
        slots = 1 if m.reference else max(m.model.plan.num_node_slots, 1)
        batch_size = max(1, min(4096, BATCH_VALUES // slots))
    if batch_size < 1:
        raise QueryError(f"batch_size must be >= 1, got {batch_size}")
    return [slice(a, min(a + batch_size, n)) for a in range(0, n, batch_size)]


def _torch(a: np.ndarray, m: _Model) -> torch.Tensor:
    import torch

    t = torch.from_numpy(a)
    return t if m.reference else t.to(m.model.device)


def conditional(model: Any, x: Any, *, batch_size: int | None = None) -> torch.Tensor:
    """``log p(X_v = k | e)`` for every variable ``v`` and value ``k``: ``[B, V, K]``.

    ``e`` is the observed part of each row of ``x`` and ``K`` the largest cardinality. Values
    ``k >= card(v)`` are ``-inf``; an observed variable gets 0 at its value and ``-inf``
    elsewhere; a row of impossible evidence is ``-inf`` everywhere (never NaN).

    Args:
        model: a one-root circuit or compiled module with discrete variables only.
        x: ``[B, V]`` evidence rows (``-1`` = missing).
        batch_size: rows per pass (default: as many as fit a fixed budget of node values).

    Raises:
        QueryError: a continuous variable (named), several roots, or rows that do not fit.
    """
    import torch

    m = _model(model, "conditional")
    cont = sorted(v for v, k in m.cards.items() if k is None)
    if cont:
        raise QueryError(f"conditional: variable {cont[0]} is continuous ({m.dists[cont[0]]}); "
                         "conditionals are defined for discrete variables only")
    rows = _rows(m, x, "conditional")
    if m.reference:
        from pccc.backends.reference import queries as ref

        parts = [torch.from_numpy(ref.conditional(model, rows[s], m.num_values))
                 for s in _batches(m, len(rows), batch_size)]
        return torch.cat(parts) if parts else torch.zeros((0, m.num_vars, m.num_values),
                                                          dtype=torch.float64)
    from pccc.backends.torch import queries as tq

    xt = _torch(rows, m)
    parts = [tq.conditional(model, xt[s], m.num_values)
             for s in _batches(m, len(rows), batch_size)]
    return torch.cat(parts) if parts else torch.zeros(
        (0, m.num_vars, m.num_values), dtype=model.dtype, device=model.device)


def _decoder(m: _Model) -> Any:
    """The torch module whose layers decode: the module itself, or for a module without
    the torch layers a torch module of its plan holding its state."""
    from pccc.backends.torch import queries as tq

    return m.model if m.model.torch_layers else tq.twin(m.model)


def _triton(m: _Model) -> bool:
    """Whether sampling and MPE run in the module's own Triton kernels."""
    return not m.reference and m.model.executor.name == "triton"


def _evidence(m: _Model, num_samples: int, evidence: Any) -> np.ndarray:
    if num_samples < 0:
        raise QueryError(f"sample: num_samples must be >= 0, got {num_samples}")
    if evidence is None:
        dtype = np.float64 if m.continuous else np.int64
        return np.full((num_samples, m.num_vars), np.nan if m.continuous else -1, dtype)
    ev = np.asarray(evidence.detach().cpu() if hasattr(evidence, "detach") else evidence)
    rows = _rows(m, ev[None, :] if ev.ndim == 1 else ev, "sample", "evidence")
    if len(rows) == 1:
        return np.repeat(rows, num_samples, axis=0)
    if len(rows) != num_samples:
        raise QueryError(f"sample: evidence has {len(rows)} rows; expected 1 or "
                         f"num_samples = {num_samples}")
    return rows


def sample(model: Any, num_samples: int, evidence: Any = None, seed: int | None = None, *,
           batch_size: int | None = None) -> torch.Tensor:
    """Exact ancestral samples of ``model``, given ``evidence`` when one is given.

    Args:
        model: a one-root circuit or compiled module.
        num_samples: rows to draw.
        evidence: ``[V]`` (the same for every sample) or ``[num_samples, V]``, ``-1`` = free
            (NaN in float data); the samples keep the observed values.
        seed: makes the draw reproducible (the same seed and model give the same samples).
        batch_size: samples per pass (default: as many as fit a budget of node values).

    Returns:
        int64 ``[num_samples, V]``, or float64 when the circuit has a continuous variable.
        A variable the circuit does not use stays missing (``-1`` or NaN).

    Raises:
        QueryError: evidence of probability 0 (the row is named), several roots, bad shapes.
    """
    import torch

    m = _model(model, "sample")
    ev = _evidence(m, num_samples, evidence)
    spans = _batches(m, len(ev), batch_size)
    if m.reference:
        from pccc.backends.reference import queries as ref

        rng = np.random.default_rng(seed)
        pairs = [ref.sample(model, ev[s], rng) for s in spans]
        out = torch.from_numpy(np.concatenate([p[0] for p in pairs]) if pairs else ev)
        ll = np.concatenate([p[1] for p in pairs]) if pairs else np.zeros(0)
    elif _triton(m):
        from pccc.backends.triton import queries as trq

        key = trq.seed_of(seed)
        leaves = trq.leaf_tables(model)
        xt = _torch(ev, m)
        tpairs = [trq.sample(model, xt[s], key, s.start, leaves) for s in spans]
        out = torch.cat([p[0] for p in tpairs]) if tpairs else xt
        ll = torch.cat([p[1] for p in tpairs]).cpu().numpy() if tpairs else np.zeros(0)
    else:
        from pccc.backends.torch import queries as tq

        dec = _decoder(m)
        gen = torch.Generator(device=dec.device)
        gen.manual_seed(seed) if seed is not None else gen.seed()
        xt = _torch(ev, m)
        tpairs = [tq.sample(dec, xt[s], gen, values=model) for s in spans]
        out = torch.cat([p[0] for p in tpairs]) if tpairs else xt
        ll = torch.cat([p[1] for p in tpairs]).cpu().numpy() if tpairs else np.zeros(0)
    dead = np.flatnonzero(~np.isfinite(ll))
    if len(dead):
        one = evidence is None or np.ndim(evidence) == 1 or len(evidence) == 1
        which = "the evidence" if one else f"evidence row {dead[0]}"
        raise QueryError(f"sample: {which} has probability 0 under the model")
    return out


def mpe(model: Any, x: Any, *, batch_size: int | None = None
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """The max-product (Viterbi) completion of each row of ``x`` and its exact ``log p``.

    The completion keeps the observed values; a missing variable takes the value of the input
    node that the top-down argmax pass over the max-product values reaches (a Gaussian one its
    mean). For a deterministic circuit (a PSDD) that is the exact MPE; for others the
    standard max-product decoding, whose ``log p`` is at least the max-product value. A row of
    impossible evidence gets ``log p = -inf`` and keeps its missing values.

    Returns:
        ``(rows, log_p)``: int64 ``[B, V]`` (float64 when a variable is continuous) and
        ``[B]`` (float64 for a circuit, the module's dtype otherwise).
    """
    import torch

    m = _model(model, "mpe")
    rows = _rows(m, x, "mpe")
    spans = _batches(m, len(rows), batch_size)
    if m.reference:
        from pccc.backends.reference import queries as ref

        pairs = [ref.mpe(model, rows[s]) for s in spans]
        if not pairs:
            return torch.from_numpy(rows), torch.zeros(0, dtype=torch.float64)
        return (torch.from_numpy(np.concatenate([p[0] for p in pairs])),
                torch.from_numpy(np.concatenate([p[1] for p in pairs])))
    xt = _torch(rows, m)
    if _triton(m):
        from pccc.backends.triton import queries as trq

        leaves = trq.leaf_tables(model)
        tpairs = [trq.mpe(model, xt[s], leaves) for s in spans]
        if not tpairs:
            return xt, torch.zeros(0, dtype=model.dtype, device=model.device)
        return torch.cat([p[0] for p in tpairs]), torch.cat([p[1] for p in tpairs])
    from pccc.backends.torch import queries as tq

    dec = _decoder(m)
    tpairs = [tq.mpe(dec, xt[s]) for s in spans]
    if not tpairs:
        return xt, torch.zeros(0, dtype=dec.dtype, device=dec.device)
    return torch.cat([p[0] for p in tpairs]), torch.cat([p[1] for p in tpairs])
