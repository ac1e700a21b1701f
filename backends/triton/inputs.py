"""Input-layer gradients and EM statistics from the statistics the backward kernels gather.

The kernels leave, per input layer, ``nstats [n, 4]`` = (sum f, sum f over missing values,
sum f x, sum f x^2 over observed values), weighted by the example weights, and for categorical
layers the value counts in ``counts`` (laid out like ``input_params``). Everything here is a
handful of vectorized torch operations per layer.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from pccc.ir.plan import InputLayer, KernelPlan


def _idx(ly: InputLayer, device: torch.device) -> Tensor:
    """``[n, param_size]`` offsets of each node's parameters."""
    idx = ly.param_start[:, None] + np.arange(ly.param_size)[None, :]
    return torch.from_numpy(idx).to(device)


def input_grads(plan: KernelPlan, dp, theta: Tensor, counts: Tensor,
                nstats: list[Tensor]) -> Tensor:
    """``d loss / d input_params`` (linear, native parameters)."""
    grad = torch.where(counts != 0, counts / torch.where(theta > 0, theta, 1.0), 0.0)
    for ly, ns in zip(plan.input_layers, nstats):
        if ly.dist in ("indicator", "categorical"):
            continue
        idx = _idx(ly, theta.device)
        p = theta[idx]  # [n, size]
        s_obs = ns[:, 0] - ns[:, 1]
        sx, sxx = ns[:, 2], ns[:, 3]
        if ly.dist in ("bernoulli", "binomial"):
            total = 1.0 if ly.dist == "bernoulli" else float(dict(ly.attrs)["total"])
            q = p[:, 0]
            g = (sx / q - (total * s_obs - sx) / (1 - q))[:, None]
        else:  # gaussian
            mu, sd = p[:, 0], p[:, 1]
            dev2 = sxx - 2 * mu * sx + mu * mu * s_obs
            g = torch.stack([(sx - mu * s_obs) / sd**2, -s_obs / sd + dev2 / sd**3], dim=1)
        grad.index_add_(0, idx.reshape(-1), g.reshape(-1))
    return grad


def em_stats(ly: InputLayer, theta: Tensor, counts: Tensor, ns: Tensor
             ) -> tuple[Tensor, Tensor]:
    """(unique parameter offsets ``[u, size]``, EM statistics ``[u, k]``) of one layer, in the
    torch backend's format; tied nodes are summed. A missing value contributes its posterior
    under the node's own distribution."""
    idx = _idx(ly, theta.device)
    uniq, inv = np.unique(ly.param_start, return_inverse=True)
    inv_t = torch.from_numpy(inv).to(theta.device)
    u = len(uniq)
    native = theta[idx]
    fm = ns[:, 1]
    if ly.dist == "categorical":
        per = torch.zeros((u,), dtype=theta.dtype, device=theta.device).index_add_(0, inv_t, fm)
        uidx = torch.from_numpy(uniq[:, None] + np.arange(ly.param_size)).to(theta.device)
        return uidx, counts[uidx] + per[:, None] * theta[uidx]
    st = torch.zeros((ly.n, 3), dtype=theta.dtype, device=theta.device)
    if ly.dist in ("bernoulli", "binomial"):
        total = 1.0 if ly.dist == "bernoulli" else float(dict(ly.attrs)["total"])
        st[:, 0] = ns[:, 2] + fm * total * native[:, 0]
        st[:, 1] = ns[:, 0] * total
    else:
        mu, sd = native[:, 0], native[:, 1]
        st[:, 0] = ns[:, 0]
        st[:, 1] = ns[:, 2] + fm * mu
        st[:, 2] = ns[:, 3] + fm * (sd * sd + mu * mu)
    agg = torch.zeros((u, 3), dtype=theta.dtype, device=theta.device).index_add_(0, inv_t, st)
    uidx = torch.from_numpy(uniq[:, None] + np.arange(ly.param_size)).to(theta.device)
    return uidx, agg
