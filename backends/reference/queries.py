"""Queries answered node by node on an L0 circuit, in float64: the oracle of the compiled ones.

- :func:`node_log_flows`: the flows pass, top-down in log space. The root has flow 1; a sum
  node passes ``w_c * value_c / value`` of its flow to child ``c``; a product passes its flow to
  every child. The flow of an input node is ``d log p(e) / d log value``.
- :func:`conditional`: ``log p(X_v = k | e)`` from the flows reaching the input nodes: in a
  smooth, decomposable circuit ``p(e)`` is linear in the input nodes of any one variable, so
  ``p(e, X_v = k) / p(e) = sum_i flow_i * p_i(k)`` over the input nodes ``i`` of a missing ``v``.
- :func:`decode`: the top-down pass of sampling and MPE. From the root, a reached sum node
  picks one child, at random in proportion to ``w_c * value_c`` (sampling, values of the
  sum-product pass with the evidence) or the first largest ``w_c * value_c`` (MPE, values of
  the max-product pass); a reached product reaches every child; a reached input node over a
  missing variable gives it a value (a draw from the node's distribution, or its mode). In a
  smooth, decomposable circuit one node of a vector at most is reached per row, and every
  variable of the root's scope is reached exactly once.

Example::

    from pccc.backends.reference.queries import conditional, mpe, sample
    post = conditional(circuit, x)              # [N, V, K] log-probabilities
    rows, ll = mpe(circuit, x)                  # completions and their log p
    draws = sample(circuit, evidence, np.random.default_rng(0))
"""

from __future__ import annotations

import numpy as np

from pccc.backends.reference.evaluate import (
    _logsumexp,
    circuit_missing,
    leaf_modes,
    leaf_table,
    log_likelihood,
    node_values,
)
from pccc.ir import dists
from pccc.ir.circuit import Circuit, InputVector, ProductVector, SumVector


def _ratio(flow: np.ndarray, value: np.ndarray) -> np.ndarray:
    """``log flow - log value``, ``-inf`` where there is no flow (also where the value is)."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(flow), flow - value, -np.inf)


def node_log_flows(c: Circuit, vals: list[np.ndarray]) -> list[np.ndarray]:
    """Log-flow of every node vector, ``[N, n]`` each, from the sum-product values ``vals``
    of :func:`~pccc.backends.reference.evaluate.node_values` (root flow 1 where ``p > 0``)."""
    flows = [np.full_like(v, -np.inf) for v in vals]
    flows[c.root] = np.where(np.isfinite(vals[c.root]), 0.0, -np.inf)
    for i in range(len(c.nodes) - 1, -1, -1):
        nd, f = c.nodes[i], flows[i]
        if isinstance(nd, ProductVector):
            table = nd.edge_table([c.nodes[ch].n for ch in nd.children])
            for j, ch in enumerate(nd.children):
                for r in range(nd.n):
                    t = table[r, j]
                    flows[ch][:, t] = np.logaddexp(flows[ch][:, t], f[:, r])
        elif isinstance(nd, SumVector):
            kids = np.concatenate([vals[ch] for ch in nd.children], axis=1)  # [N, m]
            with np.errstate(divide="ignore"):
                logw = np.log(c.params[nd.param])  # [n, m]
            q = _ratio(f, vals[i])  # [N, n]
            into = _logsumexp(q[:, :, None] + logw[None, :, :], axis=1) + kids  # [N, m]
            start = 0
            for ch in nd.children:
                k = c.nodes[ch].n
                flows[ch] = np.logaddexp(flows[ch], into[:, start: start + k])
                start += k
    return flows


def conditional(c: Circuit, x: np.ndarray, num_values: int) -> np.ndarray:
    """``log p(X_v = k | e)``: float64 ``[N, V, num_values]`` (see :mod:`pccc.query` for the
    conventions: observed variables, values beyond a domain, impossible evidence)."""
    x = np.asarray(x)
    miss = circuit_missing(c, x)
    vals = node_values(c, x, miss)
    flows = node_log_flows(c, vals)
    n_rows = x.shape[0]
    out = np.full((n_rows, c.num_vars, num_values), -np.inf)
    for i, nd in enumerate(c.nodes):
        if isinstance(nd, InputVector):
            table = leaf_table(c, nd)  # [card, n]
            part = _logsumexp(flows[i][:, :, None] + table.T[None, :, :], axis=1)  # [N, card]
            k = table.shape[0]
            out[:, nd.var, :k] = np.logaddexp(out[:, nd.var, :k], part)
    total = _logsumexp(out, axis=2)[:, :, None]
    with np.errstate(invalid="ignore"):
        out = np.where(np.isfinite(total), out - total, -np.inf)
    rows, cols = np.nonzero(~miss)
    out[rows, cols, :] = -np.inf
    out[rows, cols, x[rows, cols].astype(np.int64)] = 0.0
    out[~np.isfinite(vals[c.root][:, 0])] = -np.inf
    return out


def _pick(scores: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """Per row of ``scores`` (log-weights ``[P, m]``): a column drawn in proportion to
    ``exp(score)``, or the first largest one when ``rng`` is None."""
    if rng is None:
        return np.argmax(scores, axis=1)
    p = np.exp(scores - np.max(scores, axis=1, keepdims=True))
    cdf = np.cumsum(p, axis=1)
    u = rng.random(len(p)) * cdf[:, -1]
    return np.minimum(np.sum(cdf <= u[:, None], axis=1), p.shape[1] - 1)


def _reach(sel: list[np.ndarray], child: int, rows: np.ndarray, nodes: np.ndarray) -> None:
    """Mark node ``nodes[j]`` of vector ``child`` reached by row ``rows[j]``."""
    seen = sel[child][rows]
    assert np.all((seen < 0) | (seen == nodes)), "a vector reached twice in one row"
    sel[child][rows] = nodes


def decode(c: Circuit, vals: list[np.ndarray], rng: np.random.Generator | None
           ) -> list[np.ndarray]:
    """The top-down pass: per node vector, the node each row reaches (``[N]``, ``-1``: none).
    ``vals``: sum-product values with the evidence (sampling, ``rng`` given) or max-product
    values (MPE, ``rng`` None). Rows whose root value is ``-inf`` reach nothing."""
    n_rows = vals[c.root].shape[0]
    sel = [np.full(n_rows, -1, np.int64) for _ in c.nodes]
    sel[c.root][np.isfinite(vals[c.root][:, 0])] = 0
    for i in range(len(c.nodes) - 1, -1, -1):
        nd = c.nodes[i]
        rows = np.flatnonzero(sel[i] >= 0)
        if len(rows) == 0 or isinstance(nd, InputVector):
            continue
        at = sel[i][rows]
        if isinstance(nd, ProductVector):
            table = nd.edge_table([c.nodes[ch].n for ch in nd.children])
            for j, ch in enumerate(nd.children):
                _reach(sel, ch, rows, table[at, j])
            continue
        assert isinstance(nd, SumVector)
        kids = np.concatenate([vals[ch][rows] for ch in nd.children], axis=1)  # [P, m]
        with np.errstate(divide="ignore"):
            logw = np.log(c.params[nd.param])[at]  # [P, m]
        col = _pick(logw + kids, rng)
        start = 0
        for ch in nd.children:
            k = c.nodes[ch].n
            hit = (col >= start) & (col < start + k)
            _reach(sel, ch, rows[hit], col[hit] - start)
            start += k
    return sel


def _leaf_values(c: Circuit, nd: InputVector, nodes: np.ndarray,
                 rng: np.random.Generator | None) -> np.ndarray:
    """A value per reached node (``nodes``: node index per row): drawn, or the mode."""
    if rng is None:
        return leaf_modes(c, nd)[0][nodes]
    if nd.dist == "gaussian":
        p = c.params[nd.param or ""]
        return rng.normal(p[nodes, 0], p[nodes, 1])
    return _pick(leaf_table(c, nd).T[nodes], rng)


def complete(c: Circuit, x: np.ndarray, sel: list[np.ndarray],
             rng: np.random.Generator | None) -> np.ndarray:
    """``x`` with each missing value set by the input node the row reached (unreached ones,
    in rows of impossible evidence or variables outside the circuit, stay missing)."""
    miss = circuit_missing(c, x)
    continuous = any(dists.get(nd.dist).cardinality(nd.attr_dict()) is None
                     for nd in c.nodes if isinstance(nd, InputVector))
    out = np.array(x, dtype=np.float64 if continuous else np.int64, copy=True)
    if continuous:
        out[miss] = np.nan
    for i, nd in enumerate(c.nodes):
        if not isinstance(nd, InputVector):
            continue
        rows = np.flatnonzero((sel[i] >= 0) & miss[:, nd.var])
        if len(rows):
            out[rows, nd.var] = _leaf_values(c, nd, sel[i][rows], rng)
    return out


def sample(c: Circuit, evidence: np.ndarray, rng: np.random.Generator
           ) -> tuple[np.ndarray, np.ndarray]:
    """One exact draw from ``p(x | e)`` per row of ``evidence`` (``[N, V]``, missing = free),
    and ``log p(e)`` per row; rows of impossible evidence come back unchanged."""
    vals = node_values(c, evidence)
    return complete(c, evidence, decode(c, vals, rng), rng), vals[c.root][:, 0]


def mpe(c: Circuit, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The max-product completion of each row and its exact ``log p`` (``[N]``)."""
    vals = node_values(c, x, semiring="max")
    out = complete(c, x, decode(c, vals, None), None)
    return out, log_likelihood(c, out)
