"""``gaussian`` on the torch backend: raw ``(mean, log std)``; EM statistics ``S0, S1, S2`` =
E[1], E[X], E[X^2] (over observed values; the missing values' flow joins at the EM step)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from pccc.backends.torch.families.base import TorchFamily, observed
from pccc.ir import dists


@dists.implements("torch", "gaussian")
class Gaussian(TorchFamily):
    """A normal density over a continuous variable (read from ``xc``)."""

    @classmethod
    def to_raw(cls, native):
        with np.errstate(divide="ignore", invalid="ignore"):
            raw = np.stack([native[:, 0], np.log(native[:, 1])], axis=1)
        return raw, np.zeros((len(native), 1))

    @classmethod
    def to_raw_tensor(cls, native):
        return (torch.stack([native[:, 0], torch.log(native[:, 1])], dim=1),
                native.new_zeros((native.shape[0], 1)))

    @classmethod
    def to_native(cls, raw, shift):
        return torch.stack([raw[:, 0], torch.exp(raw[:, 1])], dim=1)

    @classmethod
    def log_prob(cls, attrs, raw, shift, values, xd, xc, saved=None, key=0):
        return gaussian_log_density(xc, raw[:, :1], raw[:, 1:2])

    @classmethod
    def accumulate_stats(cls, attrs, flow, xd, xc, miss):
        # (a value the dtype cannot hold, inf, counts only with flow)
        obs = observed(flow, miss)
        total_flow = flow.sum(dim=1)
        fm = total_flow - obs.sum(dim=1) if miss is not None else torch.zeros_like(total_flow)
        out = torch.zeros((flow.shape[0], 3), dtype=flow.dtype, device=flow.device)
        zero = torch.zeros_like(obs)
        out[:, 0] = total_flow
        out[:, 1] = torch.where(obs != 0, obs * xc, zero).sum(1)
        out[:, 2] = torch.where(obs != 0, obs * xc * xc, zero).sum(1)
        return out, fm

    @classmethod
    def complete_stats(cls, attrs, native, stats, fm):
        # the share is added inside gaussian_em, where it cannot overflow
        return torch.cat([stats, fm[:, None]], dim=1)

    @classmethod
    def em_update(cls, attrs, native, stats, eta, alpha, min_std):
        return gaussian_em(native, stats, eta, alpha, min_std)

    @classmethod
    def raw_grad(cls, attrs, raw, flow, g, gstats, xd, xc, miss, log_table):
        if isinstance(g, float):
            return gaussian_grad(raw, flow, xc, miss) * g
        return gaussian_grad(raw, flow * g[None, :], xc, miss)


def gaussian_log_density(x: Tensor, mu: Tensor, log_sd: Tensor) -> Tensor:
    """``log N(x; mu, exp(log_sd))`` without NaN: ``z^2 = exp(2 (log|x - mu| - log_sd))`` is
    computed in log space, so neither a tiny std (``exp(-log_sd)`` overflowing) at ``x = mu``
    nor a huge one gives ``0 * inf``. Where the dtype cannot hold ``x - mu`` (both overflowed
    to inf), the density is ``-inf``."""
    d = x - mu
    z2 = torch.exp(2 * (torch.log(torch.abs(d)) - log_sd))
    lp = -0.5 * z2 - log_sd - 0.5 * math.log(2 * math.pi)
    return torch.where(torch.isnan(lp), -math.inf, lp)


def signed_sum(logmag: Tensor, sign: Tensor, dim: int) -> Tensor:
    """``sum(sign * exp(logmag))`` along ``dim`` without NaN: the positive and the negative
    terms are summed in log space and subtracted once (infinite on both sides: 0)."""
    ninf = torch.full_like(logmag, -math.inf)
    pos = torch.logsumexp(torch.where(sign > 0, logmag, ninf), dim)
    neg = torch.logsumexp(torch.where(sign < 0, logmag, ninf), dim)
    top = torch.maximum(pos, neg)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    r = torch.exp(pos - top) - torch.exp(neg - top)
    out = torch.where(r == 0, torch.zeros_like(r), r * torch.exp(top))
    return torch.where(pos == neg, torch.zeros_like(out), out)


def gaussian_em(native: Tensor, stats: Tensor, eta: float, alpha: float, min_std: float
                ) -> Tensor:
    """The EM step of gaussians from ``stats [n, 4]``: total flow ``S0``, ``S1 = sum f x`` and
    ``S2 = sum f x^2`` over observed values, and the flow ``fm`` of missing ones.

    The target is the moment match of a mixture: the observed values (weight ``o = S0 - fm``)
    and the node's current distribution (weight ``q = alpha + fm``: the pseudocount and the
    missing values' posterior). Its mean is a convex combination of the observed mean and
    ``mu``, and its std the root of a weighted sum of squares of four spreads, scaled by the
    largest of them; computed in float64, so extreme means (1e308) or stds (1e30, 1e-320) give
    finite values or ``inf`` in the module's dtype, never NaN.
    """
    dt = native.dtype
    nat, st = native.double(), stats.double()
    mu, sd = nat[:, 0], nat[:, 1]
    fm = st[:, 3]
    o = torch.clamp(st[:, 0] - fm, min=0.0)
    q = alpha + fm
    den = o + q
    ok = den > 0
    den = torch.where(ok, den, torch.ones_like(den))
    seen = o > 0
    o_safe = torch.where(seen, o, torch.ones_like(o))
    m_obs = torch.where(seen, st[:, 1] / o_safe, mu)
    wo, wq = o / den, q / den
    mean = torch.where(wq == 0, m_obs, torch.where(wo == 0, mu, wo * m_obs + wq * mu))
    spread_obs = torch.sqrt(torch.clamp(st[:, 2] / o_safe - m_obs * m_obs, min=0.0))
    parts = torch.stack([spread_obs, (m_obs - mean).abs(), sd, (mu - mean).abs()], dim=1)
    weights = torch.stack([wo, wo, wq, wq], dim=1)
    scale = parts.max(dim=1).values
    finite = torch.isfinite(scale) & (scale > 0)
    unit = torch.where(finite[:, None], parts / torch.where(finite, scale, 1.0)[:, None],
                       torch.zeros_like(parts))
    std = torch.where(finite, scale * torch.sqrt((weights * unit * unit).sum(dim=1)), scale)
    std = torch.where(torch.isnan(std), torch.full_like(std, math.inf), std)
    std = torch.clamp(std, min=min_std)
    new = torch.stack([blend(mu, mean, eta), blend(sd, std, eta)], dim=1)
    return torch.where(ok[:, None], new, nat).to(dt)


def blend(old: Tensor, target: Tensor, eta: float) -> Tensor:
    """``(1 - eta) old + eta target``, exactly ``old`` or ``target`` at the ends (an infinite
    value times 0 would be NaN)."""
    if eta == 0:
        return old
    if eta == 1:
        return target
    return (1 - eta) * old + eta * target


def gaussian_grad(raw: Tensor, gflow: Tensor, xc: Tensor, miss: Tensor | None) -> Tensor:
    """``sum_b f_b (d/d mu, d/d log_sd) log N(x_b)`` = ``(sum f d / sd^2, sum f d^2 / sd^2 -
    sum f)`` with ``d = x - mu``, each term in log space (:func:`signed_sum`): a tiny std or
    a huge mean gives large or infinite gradients, never NaN."""
    obs = gflow if miss is None else torch.where(miss, torch.zeros_like(gflow), gflow)
    mu, log_sd = raw[:, :1], raw[:, 1:2]
    d = xc - mu
    log_d = torch.log(torch.abs(d))
    log_f = torch.log(torch.abs(obs))
    live = obs != 0  # (a zero flow contributes nothing, whatever d is)
    ninf = torch.full_like(log_f, -math.inf)
    d_mu = signed_sum(torch.where(live, log_f + log_d - 2 * log_sd, ninf),
                       torch.sign(obs) * torch.sign(d), 1)
    d_z2 = signed_sum(torch.where(live, log_f + 2 * (log_d - log_sd), ninf),
                       torch.sign(obs), 1)
    return torch.stack([d_mu, d_z2 - obs.sum(dim=1)], dim=1)
