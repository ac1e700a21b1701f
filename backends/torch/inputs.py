"""Input layers on the torch backend: each call dispatches to the layer's distribution family.

A family (:class:`~pccc.backends.torch.families.base.TorchFamily`, one module per distribution
under :mod:`pccc.backends.torch.families`) maps its native parameters (what the L0 store
holds) to unconstrained *raw* coordinates that the module keeps as one flat ``nn.Parameter``
(``CompiledCircuit.input_raw``), computes log-probabilities differentiably from them,
accumulates EM sufficient statistics from node flows, and writes back an EM update.

==================  ========================  ==========================================
family              raw coordinates            EM statistics per node (``stats`` columns)
==================  ========================  ==========================================
categorical         log p (per-row softmax)    ``c_k``: expected count of value ``k``
masked_categorical  log p (masked softmax)     ``c_k``: expected count of value ``k``
bernoulli           logit p                    ``S`` = E[#X=1], ``T`` = E[#examples]
binomial            logit p                    ``S`` = E[sum X], ``T`` = E[total * #examples]
gaussian            (mean, log std)            ``S0, S1, S2`` = E[1], E[X], E[X^2]
discrete_logistic   (mean, log scale)          ``S0, S1, S2`` = E[1], E[m], E[m^2], ``m`` the
                                               bin's midpoint
indicator           (none)                     (none)
==================  ========================  ==========================================

Expectations are flows-weighted; a missing value contributes its posterior under the node's
own distribution (exact EM for marginalized variables; the discrete logistic's share uses
the logistic's own moments). A distribution the torch backend has no family for is refused
by name (a ``PcccError``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

from pccc.backends.torch.families import family
from pccc.backends.torch.families.gaussian import gaussian_em, gaussian_log_density

__all__ = ["accumulate_stats", "complete_stats", "em_update", "family", "gaussian_em",
           "gaussian_log_density", "grad_and_stats", "grouped_rows", "log_prob",
           "stats_are_counts", "to_native", "to_raw", "to_raw_tensor"]


def to_raw(dist: str, native: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Native ``[n, size]`` parameters -> (raw ``[n, size]``, log-normalizer ``[n, 1]``).

    The normalizer keeps an unnormalized categorical table exactly as written (the reference
    evaluator does not renormalize); it is 0 for normalized tables.
    """
    return family(dist).to_raw(native)


def to_raw_tensor(dist: str, native: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`to_raw` on a tensor, on its own device (EM updates never leave the device)."""
    return family(dist).to_raw_tensor(native)


def to_native(dist: str, raw: Tensor, shift: Tensor) -> Tensor:
    """Inverse of :func:`to_raw` on ``[n, size]`` tensors (no gradient needed)."""
    return family(dist).to_native(raw, shift)


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
    return family(dist).log_prob(attrs, raw, shift, values, xd, xc, saved, key)


def accumulate_stats(dist: str, attrs: dict[str, Any], flow: Tensor, xd: Tensor, xc: Tensor,
                     miss: Tensor | None) -> tuple[Tensor, Tensor]:
    """EM statistics of one layer from node flows, before the missing values' share.

    Returns ``(stats, missing_flow)``: ``stats`` is ``[n, card]`` (a family with ``counts``)
    or ``[n, 3]``, ``missing_flow`` ``[n]`` the flow of examples whose variable is missing;
    the posterior share of those is added at the EM step by :func:`complete_stats` (the
    parameters do not change between EM steps).

    Args:
        flow: ``[n, batch]`` node flows (root flow 1 per example).
        xd, xc: as in :func:`log_prob`.
        miss: ``[n, batch]`` bool, True where the node's variable is missing (None: none is).
    """
    return family(dist).accumulate_stats(attrs, flow, xd, xc, miss)


def complete_stats(dist: str, attrs: dict[str, Any], native: Tensor, stats: Tensor, fm: Tensor
                   ) -> Tensor:
    """Add the missing values' posterior share (flow ``fm`` times the node's own moments)."""
    return family(dist).complete_stats(attrs, native, stats, fm)


def em_update(dist: str, native: Tensor, stats: Tensor, step_size: float, pseudocount: float,
              min_std: float = 1e-3, attrs: dict[str, Any] | None = None) -> Tensor:
    """New native parameters ``[n, size]`` after one EM step (see the module docstring);
    ``attrs``: the layer's hyperparameters (a masked categorical's mask, a discrete
    logistic's ``min_std``, which replaces ``min_std``)."""
    return family(dist).em_update(attrs or {}, native, stats, step_size, pseudocount, min_std)


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
    fam = family(dist)
    stats, fm = fam.accumulate_stats(attrs, flow, xd, xc, miss)
    if isinstance(g, float):
        gstats = stats if g == 1.0 else stats * g
    else:
        gstats, _ = fam.accumulate_stats(attrs, flow * g[None, :], xd, xc, miss)
    grad = fam.raw_grad(attrs, raw, flow, g, gstats, xd, xc, miss, log_table)
    return grad, stats, None if miss is None else fm


def stats_are_counts(dist: str) -> bool:
    """True when the family keeps one EM count per parameter (``input_counts``), False when
    three columns at each node's first parameter (``input_stats``)."""
    return family(dist).counts


def grouped_rows(dist: str) -> bool:
    """True when the family reads runs of nodes over one variable as a broadcast view."""
    return family(dist).grouped_rows
