"""Reference evaluation of an L0 circuit: float64, node vector by node vector, in log space.

Missing values are marginalized: an input node over a missing variable has value 1 (log 0.0),
which is exact for normalized input distributions (every registered one is). A value is
missing when it is NaN (float data), or ``-1`` on a discrete variable; on a continuous
variable ``-1.0`` is a value like any other (every backend follows this rule).
This module is the oracle of every other test; keep it obviously correct.

The semiring is a parameter: ``"sum"`` (sum-product, the log-likelihood) or ``"max"``
(max-product, for MPE): sums take the largest weighted child instead of the total, and an
input node over a missing variable takes its largest value (its mode's probability or density)
instead of 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np

from pccc.ir import dists
from pccc.ir.circuit import Circuit, InputVector, ProductVector, SumVector

#: how sums combine their weighted children: ``"sum"`` (log-sum-exp) or ``"max"``
Semiring = Literal["sum", "max"]


def continuous_vars(var_dists: Iterable[tuple[int, str]], width: int) -> np.ndarray:
    """Bool ``[width]``: True for the variables of continuous inputs among ``(var, dist)``."""
    out = np.zeros(width, dtype=bool)
    for v, dist in var_dists:
        if 0 <= v < width and dists.get(dist).continuous:
            out[v] = True
    return out


def missing_mask(x: np.ndarray, continuous: np.ndarray | None = None) -> np.ndarray:
    """Default missingness: NaN (float data), or ``-1`` on a discrete variable.

    Args:
        x: data ``[N, V]``.
        continuous: bool ``[V]``, True for continuous variables, whose ``-1`` is a value
            (None: every variable is discrete).
    """
    x = np.asarray(x)
    miss = x == -1
    if continuous is not None:
        miss &= ~continuous[None, : x.shape[1]]
    if np.issubdtype(x.dtype, np.floating):
        miss |= np.isnan(x)
    return miss


def circuit_missing(c: Circuit, x: np.ndarray) -> np.ndarray:
    """:func:`missing_mask` of ``x`` for the variables of circuit ``c``."""
    x = np.asarray(x)
    pairs = ((nd.var, nd.dist) for nd in c.nodes if isinstance(nd, InputVector))
    return missing_mask(x, continuous_vars(pairs, x.shape[1]))


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def leaf_table(c: Circuit, nd: InputVector) -> np.ndarray:
    """``log p(X = k)`` of each node of a discrete input vector at every value ``k`` of its
    variable: ``[card, n]``."""
    card = dists.get(nd.dist).cardinality(nd.attr_dict())
    assert card is not None, "a continuous input has no table"
    return dists.get(nd.dist).log_prob(c.params.get(nd.param or ""), nd.attr_dict(),
                                       np.arange(card), nd.n)


def leaf_modes(c: Circuit, nd: InputVector) -> tuple[np.ndarray, np.ndarray]:
    """``(mode, log p(mode))`` of each node of an input vector, ``[n]`` each (the first
    largest value of a discrete one; a Gaussian's mean, with its density there)."""
    if nd.dist == "gaussian":
        mu = np.array(c.params[nd.param or ""][:, 0], dtype=np.float64)
        lp = dists.get(nd.dist).log_prob(c.params[nd.param or ""], nd.attr_dict(), mu, nd.n)
        return mu, np.diagonal(lp).copy()
    table = leaf_table(c, nd)
    return np.argmax(table, axis=0), np.max(table, axis=0)


def node_values(c: Circuit, x: np.ndarray, missing: np.ndarray | None = None,
                semiring: Semiring = "sum") -> list[np.ndarray]:
    """Log-value of every node vector in ``semiring``: a list of ``[N, n]`` float64 arrays."""
    x = np.asarray(x)
    if missing is None:
        missing = circuit_missing(c, x)
    vals: list[np.ndarray] = []
    for nd in c.nodes:
        if isinstance(nd, InputVector):
            col = np.where(missing[:, nd.var], 0, x[:, nd.var])
            lp = dists.get(nd.dist).log_prob(c.params.get(nd.param or ""), nd.attr_dict(), col,
                                             nd.n)
            free = 0.0 if semiring == "sum" else leaf_modes(c, nd)[1][None, :]
            vals.append(np.where(missing[:, nd.var][:, None], free, lp))
        elif isinstance(nd, ProductVector):
            table = nd.edge_table([c.nodes[ch].n for ch in nd.children])
            acc = np.zeros((x.shape[0], nd.n))
            for j, ch in enumerate(nd.children):
                acc = acc + vals[ch][:, table[:, j]]
            vals.append(acc)
        else:
            assert isinstance(nd, SumVector)
            kids = np.concatenate([vals[ch] for ch in nd.children], axis=1)  # [N, m]
            with np.errstate(divide="ignore"):
                logw = np.log(c.params[nd.param])  # [n, m]
            terms = kids[:, None, :] + logw[None, :, :]  # [N, n, m]
            vals.append(_logsumexp(terms, axis=2) if semiring == "sum" else
                        np.max(terms, axis=2, initial=-np.inf))
    return vals


def root_values(vals: np.ndarray) -> np.ndarray:
    """A root vector's log-values ``[N, n]`` as a circuit's output: ``[N]`` for one root
    node, ``[N, n]`` for several."""
    return vals[:, 0] if vals.shape[1] == 1 else vals


def log_likelihood(c: Circuit, x: np.ndarray, missing: np.ndarray | None = None) -> np.ndarray:
    """``log p(x)`` per example (marginals over missing values): float64 ``[N]``, or
    ``[N, n]`` (one column per root node) when the root vector holds ``n > 1`` nodes."""
    return root_values(node_values(c, x, missing)[c.root])
