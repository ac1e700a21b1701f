"""Reference evaluation of an L0 circuit: float64, node vector by node vector, in log space.

Missing values are marginalized: an input node over a missing variable has value 1 (log 0.0),
which is exact for normalized input distributions (every registered one is).
This module is the oracle of every other test; keep it obviously correct.
"""

from __future__ import annotations

import numpy as np

from pccc.ir import dists
from pccc.ir.circuit import Circuit, InputVector, ProductVector, SumVector


def missing_mask(x: np.ndarray) -> np.ndarray:
    """Default missingness: ``-1`` in integer data, NaN in float data."""
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.floating):
        return np.isnan(x) | (x == -1)
    return x == -1


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def node_values(c: Circuit, x: np.ndarray, missing: np.ndarray | None = None
                ) -> list[np.ndarray]:
    """Log-value of every node vector: a list of ``[N, n]`` float64 arrays."""
    x = np.asarray(x)
    if missing is None:
        missing = missing_mask(x)
    vals: list[np.ndarray] = []
    for nd in c.nodes:
        if isinstance(nd, InputVector):
            col = np.where(missing[:, nd.var], 0, x[:, nd.var])
            lp = dists.get(nd.dist).log_prob(c.params.get(nd.param or ""), nd.attr_dict(), col,
                                             nd.n)
            vals.append(np.where(missing[:, nd.var][:, None], 0.0, lp))
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
            vals.append(_logsumexp(kids[:, None, :] + logw[None, :, :], axis=2))
    return vals


def root_values(vals: np.ndarray) -> np.ndarray:
    """A root vector's log-values ``[N, n]`` as a circuit's output: ``[N]`` for one root
    node, ``[N, n]`` for several."""
    return vals[:, 0] if vals.shape[1] == 1 else vals


def log_likelihood(c: Circuit, x: np.ndarray, missing: np.ndarray | None = None) -> np.ndarray:
    """``log p(x)`` per example (marginals over missing values): float64 ``[N]``, or
    ``[N, n]`` (one column per root node) when the root vector holds ``n > 1`` nodes."""
    return root_values(node_values(c, x, missing)[c.root])
