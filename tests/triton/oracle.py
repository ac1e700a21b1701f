"""An independent float64 oracle for the Triton backend's tests: the plan semantics of
:mod:`pccc.ir.plan` written with differentiable torch operations, block by block (like
``plan_eval``), so autograd gives node flows and parameter gradients to compare with."""

from __future__ import annotations

import math

import numpy as np
import torch

from pccc.backends.reference.evaluate import missing_mask
from pccc.ir.plan import KernelPlan, ProductLayer


def _input_lp(ly, theta, x, miss):
    out = []
    for i in range(ly.n):
        v = int(ly.vars[i])
        col = torch.as_tensor(np.where(miss[:, v], 0, x[:, v]), dtype=torch.float64)
        p = theta[int(ly.param_start[i]): int(ly.param_start[i]) + ly.param_size]
        if ly.dist == "indicator":
            lp = torch.where(col == float(ly.values[i]), 0.0, -math.inf).double()
        elif ly.dist == "categorical":
            lp = torch.log(p[col.long()])
        elif ly.dist == "bernoulli":
            lp = torch.where(col == 1, torch.log(p[0]), torch.log1p(-p[0]))
        elif ly.dist == "binomial":
            n = float(dict(ly.attrs)["total"])
            logc = torch.lgamma(torch.tensor(n + 1.0)) - torch.lgamma(col + 1) \
                - torch.lgamma(n - col + 1)
            lp = logc + torch.where(col > 0, col * torch.log(p[0]), 0.0) \
                + torch.where(n - col > 0, (n - col) * torch.log1p(-p[0]), 0.0)
        else:
            z = (col - p[0]) / p[1]
            lp = -0.5 * z * z - torch.log(p[1]) - 0.5 * math.log(2 * math.pi)
        out.append(torch.where(torch.as_tensor(miss[:, v]), 0.0, lp))
    return out


def oracle(plan: KernelPlan, x: np.ndarray, w: torch.Tensor, theta: torch.Tensor):
    """(root log-likelihoods [N], list of every written node row's tensor by slot)."""
    x = np.asarray(x, dtype=np.float64)
    miss = missing_mask(x)
    N = x.shape[0]
    rows: dict[int, torch.Tensor] = {0: torch.zeros(N, dtype=torch.float64)}
    for ly in plan.input_layers:
        for i, lp in enumerate(_input_lp(ly, theta, x, miss)):
            rows[ly.node_start + i] = lp
    neg = torch.full((N,), -math.inf, dtype=torch.float64)
    elems: dict[int, torch.Tensor] = {}
    for layer in plan.layers:
        if isinstance(layer, ProductLayer):
            elems = {}
            for pp in layer.partitions:
                for e in range(pp.num_elems):
                    elems[pp.elem_start + e] = sum(rows.get(int(s), neg) for s in pp.children[e])
            continue
        for sp in layer.partitions:
            B, C = sp.block_size, sp.chunk_size
            for b in range(sp.num_blocks):
                kids = torch.stack([elems.get(int(s) + c, neg) for s in sp.chunk_start[b]
                                    for c in range(C)])  # [nc*C, N]
                lw = torch.cat([w[p: p + B * C].reshape(B, C) for p in sp.param_start[b]],
                               dim=1)
                out = _mix(lw, kids)
                for r in range(B):
                    rows[int(sp.node_start[b]) + r] = out[r]
    return rows[plan.root_slot], rows


def _mix(w: torch.Tensor, kids: torch.Tensor) -> torch.Tensor:
    """``log(w @ exp(kids))`` [B, N] with finite gradients where values are -inf."""
    m = kids.detach().amax(dim=0, keepdim=True)
    m = torch.where(torch.isfinite(m), m, 0.0)
    s = w @ torch.exp(kids - m)
    ok = s > 0
    return torch.where(ok, torch.log(torch.where(ok, s, 1.0)) + m, -math.inf)
