"""``bernoulli`` on the torch backend: raw ``logit p``; EM statistics ``S`` = E[#X=1] and
``T`` = E[#examples]."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from pccc.backends.torch.families.base import TorchFamily, observed
from pccc.ir import dists


@dists.implements("torch", "bernoulli")
class Bernoulli(TorchFamily):
    """Also the base of :class:`~pccc.backends.torch.families.binomial.Binomial`, whose
    ``trials`` are ``total`` instead of 1."""

    @classmethod
    def trials(cls, attrs: dict[str, Any]) -> int:
        """Trials per example: ``N`` in ``S / (N T)``."""
        return 1

    @classmethod
    def to_raw(cls, native):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(native) - np.log1p(-native), np.zeros((len(native), 1))

    @classmethod
    def to_raw_tensor(cls, native):
        return torch.log(native) - torch.log1p(-native), native.new_zeros((native.shape[0], 1))

    @classmethod
    def to_native(cls, raw, shift):
        return torch.sigmoid(raw)

    @classmethod
    def log_prob(cls, attrs, raw, shift, values, xd, xc, saved=None, key=0):
        r = raw[:, :1]
        return torch.where(xd == 1, torch.nn.functional.logsigmoid(r),
                           torch.nn.functional.logsigmoid(-r))

    @classmethod
    def accumulate_stats(cls, attrs, flow, xd, xc, miss):
        obs = observed(flow, miss)
        total_flow = flow.sum(dim=1)
        fm = total_flow - obs.sum(dim=1) if miss is not None else torch.zeros_like(total_flow)
        out = torch.zeros((flow.shape[0], 3), dtype=flow.dtype, device=flow.device)
        out[:, 0] = (obs * xd.to(flow.dtype)).sum(1)
        out[:, 1] = total_flow * cls.trials(attrs)
        return out, fm

    @classmethod
    def complete_stats(cls, attrs, native, stats, fm):
        out = stats.clone()
        out[:, 0] += fm * cls.trials(attrs) * native[:, 0]
        return out

    @classmethod
    def em_update(cls, attrs, native, stats, eta, alpha, min_std):
        s, t = stats[:, 0:1], stats[:, 1:2]
        ok = (t + alpha) > 0
        target = (s + alpha / 2) / torch.where(ok, t + alpha, torch.ones_like(t))
        return torch.where(ok, (1 - eta) * native + eta * target, native)

    @classmethod
    def raw_grad(cls, attrs, raw, flow, g, gstats, xd, xc, miss, log_table):
        # d/dr [k logsig(r) + (N - k) logsig(-r)] = k - N sigmoid(r); stats[:, 1] = N sum f
        gflow = flow if isinstance(g, float) else flow * g[None, :]
        return (gstats[:, 0] - torch.sigmoid(raw[:, 0]) * cls._observed_total(
            attrs, gflow, miss, g))[:, None]

    @classmethod
    def _observed_total(cls, attrs: dict[str, Any], flow: Tensor, miss: Tensor | None,
                        g: Tensor | float) -> Tensor:
        """``N * sum_b f_b`` over observed values (times ``g`` when it is a float)."""
        out = observed(flow, miss).sum(dim=1) * cls.trials(attrs)
        return out * g if isinstance(g, float) else out
