"""``discrete_logistic`` on the torch backend: raw ``(mean, log_scale)`` (the native
parameters themselves); EM statistics ``S0, S1, S2`` = E[1], E[m], E[m^2] of the bins'
midpoints ``m``, the moments PyJuice's ``DiscreteLogistic`` matches.

The EM step matches moments: the target mean and second moment are the flow-weighted ones of
the observed midpoints, of the missing values' share and of the pseudocount's, both of which
take the node's own logistic moments (mean, ``(scale pi / sqrt 3)^2 + mean^2``). The step
blends old and target moments with the step size, and the new standard deviation is at least
the layer's ``min_std``. The gradient is autograd's, through :meth:`DiscreteLogistic.log_prob`
(see :mod:`pccc.ir.dists.discrete_logistic` for the bins and the stable log-probability).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pccc.backends.torch.families.base import TorchFamily, observed
from pccc.ir import dists
from pccc.ir.dists.discrete_logistic import bin_width

#: standard deviation of the logistic of scale 1
_STD_PER_SCALE = math.pi / math.sqrt(3.0)


def log1mexp(d: Tensor) -> Tensor:
    """``log(1 - exp(-d))`` for ``d >= 0``, accurate for small and large ``d``."""
    ln2 = math.log(2.0)
    small = torch.log(-torch.expm1(-torch.clamp(d, max=ln2)))
    large = torch.log1p(-torch.exp(-torch.clamp(d, min=ln2)))
    return torch.where(d < ln2, small, large)


@dists.implements("torch", "discrete_logistic")
class DiscreteLogistic(TorchFamily):
    """A logistic binned onto ``0..card-1`` over ``[low, high]``."""

    @classmethod
    def log_prob(cls, attrs, raw, shift, values, xd, xc, saved=None, key=0):
        card, low, w = int(attrs["card"]), float(attrs["low"]), bin_width(attrs)
        mu, inv = raw[:, :1], torch.exp(-raw[:, 1:2])
        edge = low + xd.to(raw.dtype) * w  # each value's lower bin edge
        zero = torch.zeros((), dtype=raw.dtype, device=raw.device)
        # (0 * inf where a scale underflows to 0 at an edge: 0; elsewhere the product itself,
        # whose gradient at an edge is the true one)
        huge = torch.isinf(inv)
        a = torch.where(huge & (edge == mu), zero, (edge - mu) * inv)
        b = torch.where(huge & (edge + w == mu), zero, (edge + w - mu) * inv)
        first, last = xd == 0, xd == card - 1
        logsig = torch.nn.functional.logsigmoid
        return (torch.where(first, zero, logsig(-a)) + torch.where(last, zero, logsig(b))
                + torch.where(first | last, zero, log1mexp(w * inv)))

    @classmethod
    def accumulate_stats(cls, attrs, flow, xd, xc, miss):
        obs = observed(flow, miss)
        total_flow = flow.sum(dim=1)
        fm = total_flow - obs.sum(dim=1) if miss is not None else torch.zeros_like(total_flow)
        w = bin_width(attrs)
        mid = float(attrs["low"]) + (xd.to(flow.dtype) + 0.5) * w
        out = torch.zeros((flow.shape[0], 3), dtype=flow.dtype, device=flow.device)
        out[:, 0] = total_flow
        out[:, 1] = (obs * mid).sum(1)
        out[:, 2] = (obs * mid * mid).sum(1)
        return out, fm

    @classmethod
    def complete_stats(cls, attrs, native, stats, fm):
        mu, m2 = _moments(native)
        out = stats.clone()
        out[:, 1] += fm * mu.to(out)
        out[:, 2] += fm * m2.to(out)
        return out

    @classmethod
    def em_update(cls, attrs, native, stats, eta, alpha, min_std):
        floor = float(dists.get("discrete_logistic").attr(attrs, "min_std"))
        st = stats.double()
        mu, m2 = _moments(native)
        den = st[:, 0] + alpha
        ok = den > 0
        den = torch.where(ok, den, torch.ones_like(den))
        t1 = (st[:, 1] + alpha * mu) / den
        t2 = (st[:, 2] + alpha * m2) / den
        new1 = (1 - eta) * mu + eta * t1
        new2 = (1 - eta) * m2 + eta * t2
        std = torch.sqrt(torch.clamp(new2 - new1 * new1, min=0.0))
        std = torch.clamp(std, min=floor)
        new = torch.stack([new1, torch.log(std / _STD_PER_SCALE)], dim=1)
        return torch.where(ok[:, None], new, native.double()).to(native.dtype)


def _moments(native: Tensor) -> tuple[Tensor, Tensor]:
    """The mean and second moment of each node's logistic, in float64: ``[n]`` each."""
    mu = native[:, 0].double()
    std = torch.exp(native[:, 1].double()) * _STD_PER_SCALE
    return mu, std * std + mu * mu
