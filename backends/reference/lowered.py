"""Reference evaluation of the lowered levels: L1 (tile by tile) and L2 (layer by layer).

Both read the source weight arrays directly (no flat buffers), so they check the blocking and
the layering on their own; L3 plans are evaluated by :mod:`.plan_eval`. :func:`evaluate_any`
evaluates a value of any level.

Example::

    ll = evaluate_any(run_pipeline(circuit, "canonicalize,group-blocks"), x)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pccc.backends.reference.evaluate import _logsumexp, circuit_missing, root_values
from pccc.ir import dists
from pccc.ir.blocked import BlockedCircuit, ceil_div
from pccc.ir.circuit import Circuit, InputVector, ProductVector, SumVector
from pccc.ir.layered import LayeredCircuit, factors


def _input(c: Circuit, nd: InputVector, x: np.ndarray, miss: np.ndarray) -> np.ndarray:
    col = np.where(miss[:, nd.var], 0, x[:, nd.var])
    lp = dists.get(nd.dist).log_prob(c.params.get(nd.param or ""), nd.attr_dict(), col, nd.n)
    return np.where(miss[:, nd.var][:, None], 0.0, lp)


def tiled_sum(w: np.ndarray, kids: np.ndarray, B: int, C: int) -> np.ndarray:
    """``log(W @ exp(kids))`` computed as ``B x C`` tiles: per block, the chunks' partial
    log-sum-exps combined. ``kids``: ``[N, m]``; returns ``[N, n]``."""
    n, m = w.shape
    nb, nc = ceil_div(n, B), ceil_div(m, C)
    pad_w = np.zeros((nb * B, nc * C))
    pad_w[:n, :m] = w
    pad_k = np.full((kids.shape[0], nc * C), -np.inf)
    pad_k[:, :m] = kids
    with np.errstate(divide="ignore"):
        logw = np.log(pad_w)
    out = np.empty((kids.shape[0], nb * B))
    for b in range(nb):
        parts = []
        for k in range(nc):
            tile = logw[b * B: (b + 1) * B, k * C: (k + 1) * C]  # [B, C]
            chunk = pad_k[:, k * C: (k + 1) * C]  # [N, C]
            parts.append(_logsumexp(tile[None, :, :] + chunk[:, None, :], axis=2))  # [N, B]
        out[:, b * B: (b + 1) * B] = _logsumexp(np.stack(parts, axis=2), axis=2)
    return out[:, :n]


def blocked_log_likelihood(bc: BlockedCircuit, x: np.ndarray,
                           missing: np.ndarray | None = None) -> np.ndarray:
    """``log p(x)`` of an L1 value, every sum computed tile by tile: float64 ``[N]`` (``[N, n]``
    for a root vector of ``n > 1`` nodes)."""
    c = bc.circuit
    x = np.asarray(x)
    miss = circuit_missing(c, x) if missing is None else missing
    vals: list[np.ndarray] = []
    for i, nd in enumerate(c.nodes):
        if isinstance(nd, InputVector):
            vals.append(_input(c, nd, x, miss))
        elif isinstance(nd, ProductVector):
            table = nd.edge_table([c.nodes[ch].n for ch in nd.children])
            vals.append(sum((vals[ch][:, table[:, j]] for j, ch in enumerate(nd.children)),
                            np.zeros((x.shape[0], nd.n))))
        else:
            assert isinstance(nd, SumVector)
            kids = np.concatenate([vals[ch] for ch in nd.children], axis=1)
            B, C = bc.blocks[i]
            vals.append(tiled_sum(c.params[nd.param], kids, B, C))
    return root_values(vals[c.root])


def layered_log_likelihood(lc: LayeredCircuit, x: np.ndarray,
                           missing: np.ndarray | None = None) -> np.ndarray:
    """``log p(x)`` of an L2 value, layer by layer: each layer's element runs are built by its
    product partitions (fan-in padded with log 1), then its sum partitions read them in
    chunks (padded with zero weights). Float64 ``[N]`` (``[N, n]`` for ``n > 1`` roots)."""
    c = lc.circuit
    x = np.asarray(x)
    miss = circuit_missing(c, x) if missing is None else missing
    vals: dict[int, np.ndarray] = {}
    for i, nd in enumerate(c.nodes):
        if isinstance(nd, InputVector):
            vals[i] = _input(c, nd, x, miss)
    for layer in lc.layers:
        runs = [(s, ch) for s in layer.sum_order() for ch in c.nodes[s].children]
        elems: dict[tuple[int, int], np.ndarray] = {}
        pos = 0
        for pg in layer.products:
            for s, ch in runs[pos: pos + pg.runs]:
                facs = factors(c, ch)
                assert len(facs) <= pg.fanin, "product partition fan-in too small"
                cols = [vals[f][:, idx] for f, idx in facs]
                cols += [np.zeros_like(cols[0])] * (pg.fanin - len(facs))  # log 1 padding
                elems[(s, ch)] = np.sum(np.stack(cols, axis=2), axis=2)
            pos += pg.runs
        for g in layer.sums:
            for s in g.sums:
                nd = c.nodes[s]
                assert isinstance(nd, SumVector)
                kids = np.concatenate([elems[(s, ch)] for ch in nd.children], axis=1)
                vals[s] = tiled_sum(c.params[nd.param], kids, g.block, g.chunk)
    return root_values(vals[c.root])


def evaluate_any(ir: Any, x: np.ndarray, missing: np.ndarray | None = None) -> np.ndarray:
    """``log p(x)`` of an IR value of any level (L0 to L3): float64 ``[N]``, or ``[N, n]``
    for a root vector of ``n > 1`` nodes."""
    level = getattr(ir, "level", None)
    if level == "L0":
        from pccc.backends.reference.evaluate import log_likelihood

        return log_likelihood(ir, x, missing)
    if level == "L1":
        return blocked_log_likelihood(ir, x, missing)
    if level == "L2":
        return layered_log_likelihood(ir, x, missing)
    if level == "L3":
        from pccc.backends.reference.plan_eval import plan_log_likelihood

        return plan_log_likelihood(ir, x, missing)
    raise TypeError(f"not an IR value: {type(ir).__name__}")
