"""Input distribution families for the torch backend.

Each family maps its native parameters (what the L0 store holds) to unconstrained *raw*
coordinates that the module keeps as one flat ``nn.Parameter`` (``CompiledCircuit.input_raw``),
computes log-probabilities differentiably from them, accumulates EM sufficient statistics from
node flows, and writes back an EM update.

=============  ========================  ==========================================
family         raw coordinates            EM statistics per node (``stats`` columns)
=============  ========================  ==========================================
categorical    log p (per-row softmax)    ``c_k``: expected count of value ``k``
bernoulli      logit p                    ``S`` = E[#X=1], ``T`` = E[#examples]
binomial       logit p                    ``S`` = E[sum X], ``T`` = E[total * #examples]
gaussian       (mean, log std)            ``S0, S1, S2`` = E[1], E[X], E[X^2]
indicator      (none)                     (none)
=============  ========================  ==========================================

Expectations are flows-weighted; a missing value contributes its posterior under the node's
own distribution (exact EM for marginalized variables).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor


def to_raw(dist: str, native: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Native ``[n, size]`` parameters -> (raw ``[n, size]``, log-normalizer ``[n, 1]``).

    The normalizer keeps an unnormalized categorical table exactly as written (the reference
    evaluator does not renormalize); it is 0 for normalized tables.
    """
    shift = np.zeros((len(native), 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        if dist == "categorical":
            # an all-zero row keeps raw 0 and a -inf normalizer: log-probabilities -inf, no NaN
            tot = native.sum(axis=1, keepdims=True)
            raw = np.log(native)
            if not (tot > 0).all():
                raw = np.where(tot > 0, raw, 0.0)
            shift = np.where(tot > 0, np.log(np.where(tot > 0, tot, 1.0)), -np.inf)
        elif dist in ("bernoulli", "binomial"):
            raw = np.log(native) - np.log1p(-native)
        elif dist == "gaussian":
            raw = np.stack([native[:, 0], np.log(native[:, 1])], axis=1)
        else:
            raw = native.copy()
    return raw, shift


def to_raw_tensor(dist: str, native: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`to_raw` on a tensor, on its own device (EM updates never leave the device)."""
    shift = native.new_zeros((native.shape[0], 1))
    if dist == "categorical":
        tot = native.sum(dim=1, keepdim=True)
        ok = tot > 0
        raw = torch.where(ok, torch.log(native), 0.0)
        shift = torch.where(ok, torch.log(torch.where(ok, tot, 1.0)), -torch.inf)
        return raw, shift
    if dist in ("bernoulli", "binomial"):
        return torch.log(native) - torch.log1p(-native), shift
    if dist == "gaussian":
        return torch.stack([native[:, 0], torch.log(native[:, 1])], dim=1), shift
    return native.clone(), shift


def to_native(dist: str, raw: Tensor, shift: Tensor) -> Tensor:
    """Inverse of :func:`to_raw` on ``[n, size]`` tensors (no gradient needed)."""
    if dist == "categorical":
        return torch.exp(torch.log_softmax(raw, dim=1) + shift[:, :1])
    if dist in ("bernoulli", "binomial"):
        return torch.sigmoid(raw)
    if dist == "gaussian":
        return torch.stack([raw[:, 0], torch.exp(raw[:, 1])], dim=1)
    return raw


def _take(table: Tensor, xd: Tensor) -> Tensor:
    """``table[i, xd[i, b]]``; ``xd`` may be a ``[runs, units, batch]`` broadcast view."""
    if xd.dim() == 3:
        return table.view(xd.shape[0], xd.shape[1], -1).gather(2, xd).view(-1, xd.shape[2])
    return table.gather(1, xd)


def _binom_logc(total: int, xd: Tensor, dtype: torch.dtype) -> Tensor:
    """``log C(total, x)`` for the values ``xd`` themselves (in float64; no table of
    ``total + 1`` entries)."""
    k = xd.to(torch.float64)
    return (math.lgamma(total + 1) - torch.lgamma(k + 1) - torch.lgamma(total - k + 1)
            ).to(dtype)


def log_prob(dist: str, attrs: dict[str, Any], raw: Tensor, shift: Tensor, values: Tensor | None,
             xd: Tensor, xc: Tensor, saved: dict[int, Any] | None = None, key: int = 0
             ) -> Tensor:
    """Log-probabilities ``[n, batch]`` of one input layer.

    Args:
        dist: family name.
        attrs: the layer's hyperparameters.
        raw: ``[n, size]`` raw parameters of the layer's nodes (gathered, differentiable).
        shift: ``[n, 1]`` (or ``[n, size]``) log-normalizers (categorical).
        values: ``[n]`` tested values (indicator only).
        xd: ``[n, batch]`` int64 observed values (missing replaced by 0).
        xc: ``[n, batch]`` float values (for continuous families; missing replaced by 0).
        saved: where a categorical layer leaves its log-probability table for the backward
            pass (under ``key``), when not recording autograd.
    """
    if dist == "indicator":
        assert values is not None
        hit = xd == values[:, None]
        zero = torch.zeros((), dtype=raw.dtype, device=raw.device)
        return torch.where(hit, zero, torch.full_like(zero, -math.inf)).expand(xd.shape)
    if dist == "categorical":
        table = torch.log_softmax(raw, dim=1)
        if saved is not None and not torch.is_grad_enabled():
            saved[key] = table
        lp = _take(table, xd)
        return lp + shift[:, :1] if bool((shift != 0).any()) else lp
    if dist == "bernoulli":
        r = raw[:, :1]
        return torch.where(xd == 1, torch.nn.functional.logsigmoid(r),
                           torch.nn.functional.logsigmoid(-r))
    if dist == "binomial":
        total = int(attrs["total"])
        r = raw[:, :1]
        k = xd.to(raw.dtype)
        a = torch.where(k > 0, k * torch.nn.functional.logsigmoid(r), torch.zeros_like(k))
        b = torch.where(total - k > 0, (total - k) * torch.nn.functional.logsigmoid(-r),
                        torch.zeros_like(k))
        return _binom_logc(total, xd, raw.dtype) + a + b
    if dist == "gaussian":
        return gaussian_log_density(xc, raw[:, :1], raw[:, 1:2])
    raise NotImplementedError(f"torch backend: no input family {dist!r}")


def gaussian_log_density(x: Tensor, mu: Tensor, log_sd: Tensor) -> Tensor:
    """``log N(x; mu, exp(log_sd))`` without NaN: ``z^2 = exp(2 (log|x - mu| - log_sd))`` is
    computed in log space, so neither a tiny std (``exp(-log_sd)`` overflowing) at ``x = mu``
    nor a huge one gives ``0 * inf``. Where the dtype cannot hold ``x - mu`` (both overflowed
    to inf), the density is ``-inf``."""
    d = x - mu
    z2 = torch.exp(2 * (torch.log(torch.abs(d)) - log_sd))
    lp = -0.5 * z2 - log_sd - 0.5 * math.log(2 * math.pi)
    return torch.where(torch.isnan(lp), -math.inf, lp)


def _signed_sum(logmag: Tensor, sign: Tensor, dim: int) -> Tensor:
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


def accumulate_stats(dist: str, attrs: dict[str, Any], flow: Tensor, xd: Tensor, xc: Tensor,
                     miss: Tensor | None) -> tuple[Tensor, Tensor]:
    """EM statistics of one layer from node flows, before the missing values' share.

    Returns ``(stats, missing_flow)``: ``stats`` is ``[n, card]`` (categorical) or ``[n, 3]``,
    ``missing_flow`` ``[n]`` the flow of examples whose variable is missing; the posterior share
    of those is added at the EM step by :func:`complete_stats` (the parameters do not change
    between EM steps).

    Args:
        flow: ``[n, batch]`` node flows (root flow 1 per example).
        xd, xc: as in :func:`log_prob`.
        miss: ``[n, batch]`` bool, True where the node's variable is missing (None: none is).
    """
    obs = flow if miss is None else torch.where(miss, torch.zeros_like(flow), flow)
    if dist == "categorical" and miss is None:
        counts = torch.zeros((flow.shape[0], int(attrs["card"])), dtype=flow.dtype,
                             device=flow.device)
        if xd.dim() == 3:  # [runs, units, batch] broadcast rows (see Batch.rows)
            counts.view(xd.shape[0], xd.shape[1], -1).scatter_add_(2, xd, obs.view(xd.shape))
        else:
            counts.scatter_add_(1, xd, obs)
        return counts, flow.new_zeros(flow.shape[0])
    total_flow = flow.sum(dim=1)
    fm = total_flow - obs.sum(dim=1) if miss is not None else torch.zeros_like(total_flow)
    if dist == "categorical":
        counts = torch.zeros((flow.shape[0], int(attrs["card"])), dtype=flow.dtype,
                             device=flow.device)
        counts.scatter_add_(1, xd, obs)
        return counts, fm
    out = torch.zeros((flow.shape[0], 3), dtype=flow.dtype, device=flow.device)
    if dist in ("bernoulli", "binomial"):
        total = 1 if dist == "bernoulli" else int(attrs["total"])
        out[:, 0] = (obs * xd.to(flow.dtype)).sum(1)
        out[:, 1] = total_flow * total
    elif dist == "gaussian":  # (a value the dtype cannot hold, inf, counts only with flow)
        zero = torch.zeros_like(obs)
        out[:, 0] = total_flow
        out[:, 1] = torch.where(obs != 0, obs * xc, zero).sum(1)
        out[:, 2] = torch.where(obs != 0, obs * xc * xc, zero).sum(1)
    return out, fm


def complete_stats(dist: str, attrs: dict[str, Any], native: Tensor, stats: Tensor, fm: Tensor
                   ) -> Tensor:
    """Add the missing values' posterior share (flow ``fm`` times the node's own moments)."""
    if dist == "categorical":
        return stats + fm[:, None] * native
    if dist == "gaussian":  # the share is added inside gaussian_em, where it cannot overflow
        return torch.cat([stats, fm[:, None]], dim=1)
    out = stats.clone()
    if dist in ("bernoulli", "binomial"):
        total = 1 if dist == "bernoulli" else int(attrs["total"])
        out[:, 0] += fm * total * native[:, 0]
    return out


def em_update(dist: str, native: Tensor, stats: Tensor, step_size: float, pseudocount: float,
              min_std: float = 1e-3) -> Tensor:
    """New native parameters ``[n, size]`` after one EM step (see the module docstring)."""
    eta, alpha = step_size, pseudocount
    if dist == "categorical":
        k = native.shape[1]
        tot = stats.sum(1, keepdim=True)
        ok = (tot + alpha) > 0
        target = (stats + alpha / k) / torch.where(ok, tot + alpha, torch.ones_like(tot))
        return torch.where(ok, (1 - eta) * native + eta * target, native)
    if dist in ("bernoulli", "binomial"):
        s, t = stats[:, 0:1], stats[:, 1:2]
        ok = (t + alpha) > 0
        target = (s + alpha / 2) / torch.where(ok, t + alpha, torch.ones_like(t))
        return torch.where(ok, (1 - eta) * native + eta * target, native)
    if dist == "gaussian":
        return gaussian_em(native, stats, eta, alpha, min_std)
    return native


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
    new = torch.stack([_blend(mu, mean, eta), _blend(sd, std, eta)], dim=1)
    return torch.where(ok[:, None], new, nat).to(dt)


def _blend(old: Tensor, target: Tensor, eta: float) -> Tensor:
    """``(1 - eta) old + eta target``, exactly ``old`` or ``target`` at the ends (an infinite
    value times 0 would be NaN)."""
    if eta == 0:
        return old
    if eta == 1:
        return target
    return (1 - eta) * old + eta * target


def grad_and_stats(dist: str, attrs: dict[str, Any], raw: Tensor, flow: Tensor,
                   g: Tensor | float, xd: Tensor, xc: Tensor, miss: Tensor | None,
                   log_table: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
    """Gradient w.r.t. the raw parameters ``[n, size]`` plus the EM statistics of one layer.

    The gradient of ``sum_b g_b log p(x_b)`` is ``sum_b g_b f_b d log p_node(x_b) / d raw``
    over observed values (a missing value's log-value is the constant 0). ``g`` is the
    upstream gradient per example, or one float when it is uniform (``ll.sum()``), in which
    case the statistics themselves give the gradient.

    Returns:
        ``(grad, stats, missing_flow)`` as in :func:`accumulate_stats` (``missing_flow`` None
        when nothing is missing).
    """
    stats, fm = accumulate_stats(dist, attrs, flow, xd, xc, miss)
    if isinstance(g, float):
        gstats = stats if g == 1.0 else stats * g
    else:
        gflow = flow * g[None, :]
        gstats, _ = accumulate_stats(dist, attrs, gflow, xd, xc, miss)
    fm_out = None if miss is None else fm
    if dist == "categorical":
        probs = torch.exp(log_table) if log_table is not None else torch.softmax(raw, dim=1)
        grad = torch.addcmul(gstats, probs, gstats.sum(dim=1, keepdim=True), value=-1.0)
    elif dist in ("bernoulli", "binomial"):
        # d/dr [k logsig(r) + (N - k) logsig(-r)] = k - N sigmoid(r); stats[:, 1] = N sum f
        grad = (gstats[:, 0] - torch.sigmoid(raw[:, 0]) * _observed_total(
            dist, attrs, flow if isinstance(g, float) else gflow, miss, g))[:, None]
    elif dist == "gaussian":
        grad = _gaussian_grad(raw, flow if isinstance(g, float) else gflow, xc, miss)
        if isinstance(g, float):
            grad = grad * g
    else:
        grad = torch.zeros_like(raw)
    return grad, stats, fm_out


def _observed_total(dist: str, attrs: dict[str, Any], flow: Tensor, miss: Tensor | None,
                    g: Tensor | float) -> Tensor:
    """``N * sum_b f_b`` over observed values (times ``g`` when it is a float)."""
    total = 1 if dist == "bernoulli" else int(attrs["total"])
    obs = flow if miss is None else torch.where(miss, torch.zeros_like(flow), flow)
    out = obs.sum(dim=1) * total
    return out * g if isinstance(g, float) else out


def _gaussian_grad(raw: Tensor, gflow: Tensor, xc: Tensor, miss: Tensor | None) -> Tensor:
    """``sum_b f_b (d/d mu, d/d log_sd) log N(x_b)`` = ``(sum f d / sd^2, sum f d^2 / sd^2 -
    sum f)`` with ``d = x - mu``, each term in log space (:func:`_signed_sum`): a tiny std or
    a huge mean gives large or infinite gradients, never NaN."""
    obs = gflow if miss is None else torch.where(miss, torch.zeros_like(gflow), gflow)
    mu, log_sd = raw[:, :1], raw[:, 1:2]
    d = xc - mu
    log_d = torch.log(torch.abs(d))
    log_f = torch.log(torch.abs(obs))
    live = obs != 0  # (a zero flow contributes nothing, whatever d is)
    ninf = torch.full_like(log_f, -math.inf)
    d_mu = _signed_sum(torch.where(live, log_f + log_d - 2 * log_sd, ninf),
                       torch.sign(obs) * torch.sign(d), 1)
    d_z2 = _signed_sum(torch.where(live, log_f + 2 * (log_d - log_sd), ninf),
                       torch.sign(obs), 1)
    return torch.stack([d_mu, d_z2 - obs.sum(dim=1)], dim=1)
