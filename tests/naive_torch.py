"""A naive torch evaluator of L0 circuits: node vector by node vector, plain autograd.

An oracle for the torch backend's flows-based backward: it builds an autograd graph over every
node and shares nothing with ``pccc.backends.torch`` except the parametrization it mirrors
(sum weights ``softmax(logits) * Z`` per row, categorical ``log p``, bernoulli/binomial
``logit p``, gaussian ``(mean, log std)``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pccc.ir.circuit import Circuit, InputVector, ProductVector, SumVector


def raw_leaves(c: Circuit) -> dict[str, torch.Tensor]:
    """Leaf tensors (float64, requires_grad) for every parameter key, in raw coordinates."""
    out = {}
    kinds = {}
    for nd in c.nodes:
        key = getattr(nd, "param", None)
        if key is not None:
            kinds[key] = nd.dist if isinstance(nd, InputVector) else "sum"
    for key, kind in kinds.items():
        a = np.asarray(c.params[key], dtype=np.float64)
        with np.errstate(divide="ignore"):
            if kind in ("sum", "categorical"):
                raw = np.log(a)
            elif kind in ("bernoulli", "binomial"):
                raw = np.log(a) - np.log1p(-a)
            else:
                raw = np.stack([a[:, 0], np.log(a[:, 1])], axis=1)
        out[key] = torch.tensor(raw, dtype=torch.float64, requires_grad=True)
    return out


def _row_norm(c: Circuit, key: str) -> torch.Tensor:
    s = np.asarray(c.params[key]).sum(axis=1, keepdims=True)
    return torch.tensor(np.log(s), dtype=torch.float64)


def _input(c: Circuit, nd: InputVector, raw: dict[str, torch.Tensor], x: np.ndarray,
           miss: np.ndarray) -> torch.Tensor:
    col = np.where(miss[:, nd.var], 0, x[:, nd.var])
    a = nd.attr_dict()
    if nd.dist == "indicator":
        hit = col.astype(np.int64)[:, None] == np.asarray(a["values"])[None, :]
        return torch.tensor(np.where(hit, 0.0, -np.inf), dtype=torch.float64)
    r = raw[nd.param or ""]
    xi = torch.tensor(col.astype(np.int64))
    if nd.dist == "categorical":
        table = torch.log_softmax(r, dim=1) + _row_norm(c, nd.param or "")
        return table[:, xi].t()
    if nd.dist == "bernoulli":
        ls1, ls0 = torch.nn.functional.logsigmoid(r), torch.nn.functional.logsigmoid(-r)
        return torch.where(xi[:, None] == 1, ls1[None, :], ls0[None, :])
    if nd.dist == "binomial":
        n = int(a["total"])
        k = xi[:, None].double()
        logc = torch.tensor([math.lgamma(n + 1) - math.lgamma(v + 1) - math.lgamma(n - v + 1)
                             for v in range(n + 1)], dtype=torch.float64)[xi][:, None]
        ls1, ls0 = torch.nn.functional.logsigmoid(r), torch.nn.functional.logsigmoid(-r)
        return logc + torch.where(k > 0, k * ls1, 0.0) + torch.where(n - k > 0, (n - k) * ls0,
                                                                       0.0)
    mu, lsd = r[:, 0], r[:, 1]
    z = (torch.tensor(col, dtype=torch.float64)[:, None] - mu) / torch.exp(lsd)
    return -0.5 * z * z - lsd - 0.5 * math.log(2 * math.pi)


def _logsumexp(a: torch.Tensor, dim: int) -> torch.Tensor:
    """``torch.logsumexp`` whose gradient stays 0 (not NaN) where every term is ``-inf``."""
    m = a.detach().amax(dim=dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, 0.0)
    s = torch.exp(a - m).sum(dim=dim, keepdim=True)
    out = torch.where(s > 0, torch.log(torch.where(s > 0, s, 1.0)), -math.inf) + m
    return out.squeeze(dim)


def evaluate(c: Circuit, x: np.ndarray, raw: dict[str, torch.Tensor],
             bias: dict[int, torch.Tensor] | None = None, direct: bool = False) -> torch.Tensor:
    """``log p(x)`` ``[N]`` with autograd to ``raw`` (and to ``bias[input id]``, ``[N, n]``
    tensors added to the input nodes' log-values: their gradients are the node flows).

    With ``direct``, ``raw[key]`` of a sum vector is its log-weight array itself, so that its
    gradient is the parameter flow (expected edge count)."""
    x = np.asarray(x)
    miss = (x == -1) | (np.isnan(x) if x.dtype.kind == "f" else False)
    vals: list[torch.Tensor] = []
    for i, nd in enumerate(c.nodes):
        if isinstance(nd, InputVector):
            lp = _input(c, nd, raw, x, miss)
            v = torch.where(torch.tensor(miss[:, nd.var])[:, None], 0.0, lp)
            if bias is not None and i in bias:
                v = v + bias[i]
        elif isinstance(nd, ProductVector):
            table = nd.edge_table([c.nodes[ch].n for ch in nd.children])
            v = sum(vals[ch][:, torch.tensor(table[:, j])] for j, ch in enumerate(nd.children))
        else:
            assert isinstance(nd, SumVector)
            kids = torch.cat([vals[ch] for ch in nd.children], dim=1)
            logw = raw[nd.param] if direct else (torch.log_softmax(raw[nd.param], dim=1)
                                                 + _row_norm(c, nd.param))
            v = _logsumexp(kids[:, None, :] + logw[None], dim=2)
        vals.append(v)
    return vals[c.root][:, 0]
