"""Hidden Chow-Liu Trees (Liu and Van den Broeck, 2021).

A Chow-Liu tree over the observed variables is learned from data; every variable ``v`` gets a
hidden variable ``z_v`` with ``num_latents`` states, the ``z`` follow the tree, and ``x_v``
depends on ``z_v`` alone. As a circuit (the shape PyJuice 2.6.3 builds for the same arguments):

- every variable has one input vector of ``L = num_latents`` nodes, ``p(x_v | z_v = i)``;
- a variable with children in the tree has an element-wise product vector of ``L`` nodes over
  its children's vectors and its own input vector, and a sum vector of ``L`` nodes over that
  product (dense ``L x L``: ``p(z_c | z_v)``); a leaf variable's input vector is used directly;
- the root's sum has one node.

So a tree with ``I`` inner variables has ``(I - 1) L^2 + L`` sum edges and ``L (V - 1 + I)``
product edges.

Example::

    circuit = HCLT(x_train, num_latents=16)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pccc.ir.builder import CircuitBuilder
from pccc.ir.circuit import Circuit
from pccc.structures.chow_liu import (
    chow_liu_tree,
    mutual_information,
    root_tree,
    tree_centers,
)
from pccc.structures.init import ParamDraw
from pccc.structures.input_layers import InputSpec
from pccc.structures.mutual_info import (
    PYJUICE_NUM_BINS,
    kruskal_tree,
    pyjuice_mutual_information,
)
from pccc.structures.soft_mi import soft_mutual_information


def _children(parent: np.ndarray) -> list[list[int]]:
    kids: list[list[int]] = [[] for _ in range(len(parent))]
    for v, p in enumerate(parent.tolist()):
        if p >= 0:
            kids[p].append(v)
    return kids


def _postorder(parent: np.ndarray, kids: list[list[int]]) -> list[int]:
    root = int(np.flatnonzero(parent < 0)[0])
    order: list[int] = []
    stack = [(root, False)]
    while stack:
        v, done = stack.pop()
        if done:
            order.append(v)
            continue
        stack.append((v, True))
        stack.extend((c, False) for c in reversed(kids[v]))
    return order


def hclt_from_tree(parent: np.ndarray, num_latents: int, spec: InputSpec, *,
                   seed: int | None = 0, num_vars: int = 0,
                   init_spread: tuple[float, float] = (4.0, 4.0)) -> Circuit:
    """The HCLT circuit of a given tree (``parent[v]``, ``-1`` at the root).

    Args:
        parent: the tree over the variables ``0..V-1``.
        num_latents: states of every hidden variable (nodes per vector).
        spec: the input distribution.
        seed: random initial parameters from this seed; None for uniform ones.
        num_vars: number of variables of the circuit (default ``V``).
        init_spread: spreads ``(sums, inputs)`` of the random initial draw
            (:class:`~pccc.structures.init.InitSpread`: PyJuice's 4 and 2).
    """
    parent = np.asarray(parent, dtype=np.int64)
    draw = ParamDraw.from_seed(seed, init_spread)
    b = CircuitBuilder()
    kids = _children(parent)
    lat = num_latents
    vec: dict[int, int] = {}
    order = _postorder(parent, kids)
    root = order[-1]
    for v in order:
        leaf_in = spec.add(b, v, lat, draw)
        if not kids[v]:
            vec[v] = leaf_in
            continue
        prod = b.product([vec[c] for c in kids[v]] + [leaf_in])
        n = 1 if v == root else lat
        vec[v] = b.sum([prod], n=n, weights=draw.sum_weights(n, lat))
    top = vec[root]
    if b.size(top) != 1:  # a single variable: mix its input nodes
        top = b.sum([top], n=1, weights=draw.sum_weights(1, lat))
    return b.build(top, num_vars=num_vars or len(parent))


#: the mutual-information estimators :func:`HCLT` can learn its tree with
MI_ESTIMATORS = ("soft", "binned", "pyjuice")


def HCLT(data: Any, num_latents: int, *, input_dist: str | InputSpec | None = None,
         num_cats: int | None = None, num_bins: int | None = None, seed: int | None = 0,
         mi_estimator: str = "soft", device: Any = None,
         init_spread: tuple[float, float] = (4.0, 4.0)) -> Circuit:
    """Learn a Chow-Liu tree from ``data`` and build its hidden Chow-Liu tree circuit.

    Args:
        data: training data ``[N, V]`` (integers, ``-1`` missing; or floats for Gaussian
            inputs): a numpy array or a torch tensor (on any device).
        num_latents: hidden states per variable.
        input_dist: ``categorical`` (default for integer data), ``bernoulli``, ``binomial``,
            ``gaussian`` (default for non-integer data), or an :class:`InputSpec`.
        num_cats: categories per variable (default ``max(data) + 1``; 256 for MNIST pixels).
        num_bins: ``soft`` and ``pyjuice``: soft bins (default 32); ``binned``: values per
            variable kept (see :func:`pccc.structures.chow_liu.discretize`).
        seed: random initial parameters (None: uniform).
        mi_estimator: ``soft`` (default): PyJuice's soft-binned estimate through 8 principal
            directions per variable, for the pairs among each variable's 32 strongest
            partners (:mod:`pccc.structures.soft_mi`); ``pyjuice``: PyJuice 2.6.3's estimate
            itself (:mod:`pccc.structures.mutual_info`; a dense product 20 times larger);
            ``binned``: exact mutual information on hard bins (the CPU only). ``soft`` and
            ``pyjuice`` take networkx's Kruskal order (the tree ``juice.structures.HCLT``
            builds from the same estimates), ``binned`` Prim's.
        device: where ``soft`` and ``pyjuice`` compute (default: where ``data`` is).
        init_spread: spreads ``(sums, inputs)`` of the random initial draw
            (:class:`~pccc.structures.init.InitSpread`: PyJuice's 4 and 2).

    Returns:
        an L0 :class:`~pccc.ir.Circuit` over ``V`` variables whose root has one node.
    """
    x = data if _is_tensor(data) else np.asarray(data)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"HCLT: data must be [examples, variables], got shape {tuple(x.shape)}")
    if num_latents < 1:
        raise ValueError(f"HCLT: num_latents must be >= 1, got {num_latents}")
    spec = _spec(x, input_dist, num_cats)
    parent = learn_tree(x, num_bins, mi_estimator, device=device)
    return hclt_from_tree(parent, num_latents, spec, seed=seed, init_spread=init_spread)


def learn_tree(x: Any, num_bins: int | None = None, mi_estimator: str = "soft", *,
               device: Any = None) -> np.ndarray:
    """The Chow-Liu tree of ``x`` (``parent[v]``, ``-1`` at the root; see :func:`HCLT`)."""
    if mi_estimator not in MI_ESTIMATORS:
        raise ValueError(f"HCLT: mi_estimator must be one of {', '.join(MI_ESTIMATORS)}, got "
                         f"{mi_estimator!r}")
    if mi_estimator == "binned":
        return chow_liu_tree(mutual_information(_to_numpy(x), num_bins))
    v = x.shape[1]
    if v == 1:
        return np.full(1, -1, dtype=np.int64)
    if mi_estimator == "soft":
        mi = soft_mutual_information(x, num_bins or PYJUICE_NUM_BINS, device=device)
    else:
        mi = pyjuice_mutual_information(x, num_bins or PYJUICE_NUM_BINS, device=device)
    edges = kruskal_tree(mi)
    return root_tree(v, edges, min(tree_centers(v, edges)))


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _to_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if _is_tensor(x) else np.asarray(x)


def _spec(x: Any, input_dist: str | InputSpec | None, num_cats: int | None) -> InputSpec:
    if isinstance(input_dist, InputSpec):
        return input_dist
    if num_cats is not None:
        return InputSpec.parse(input_dist or "categorical", card=num_cats)
    return InputSpec.for_data(_to_numpy(x), input_dist)


def hclt_edge_count(parent: np.ndarray, num_latents: int) -> int:
    """Edges of :func:`hclt_from_tree`'s circuit by formula (sum plus product edges)."""
    parent = np.asarray(parent)
    v = len(parent)
    inner = int(np.count_nonzero(np.bincount(parent[parent >= 0], minlength=v)))
    if inner == 0:  # one variable: a root sum over its inputs, unless there is one input
        return 0 if num_latents == 1 else num_latents
    lat = num_latents
    return (inner - 1) * lat * lat + lat + lat * (v - 1 + inner)
