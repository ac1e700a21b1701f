"""The torch backend's side of an input distribution: :class:`TorchFamily`.

A family maps its native parameters (what the L0 store holds) to unconstrained *raw*
coordinates that the module keeps in one flat ``nn.Parameter``, computes log-probabilities
differentiably from them, accumulates EM sufficient statistics from node flows, and writes
back an EM update. Each registered distribution the torch backend runs has one subclass,
registered with ``@dists.implements("torch", name)``; :func:`family` finds it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from pccc.ir import dists


def family(name: str) -> type[TorchFamily]:
    """The torch implementation of distribution ``name`` (a ``PcccError`` names one the torch
    backend lacks)."""
    fam: type[TorchFamily] = dists.implementation("torch", name)
    return fam


def observed(flow: Tensor, miss: Tensor | None) -> Tensor:
    """``flow`` with 0 where the node's variable is missing."""
    return flow if miss is None else torch.where(miss, torch.zeros_like(flow), flow)


class TorchFamily:
    """One input distribution on the torch backend. Stateless: everything is passed in.

    The defaults suit a family whose raw coordinates are its native parameters, that keeps
    no EM statistics and whose gradient autograd computes from :meth:`log_prob`.
    """

    #: EM statistics: one count per parameter (``input_counts``, ``[n, size]``) when True,
    #: else three columns at the node's first parameter (``input_stats``, ``[n, 3]``)
    counts: ClassVar[bool] = False
    #: nodes in runs over one variable may read the data as a ``[runs, units, batch]``
    #: broadcast view (see ``Batch.rows``): :meth:`log_prob` and the statistics accept it
    grouped_rows: ClassVar[bool] = False

    @classmethod
    def to_raw(cls, native: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Native ``[n, size]`` -> (raw ``[n, size]``, log-normalizer ``[n, 1]``)."""
        return native.copy(), np.zeros((len(native), 1))

    @classmethod
    def to_raw_tensor(cls, native: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`to_raw` on a tensor, on its own device."""
        return native.clone(), native.new_zeros((native.shape[0], 1))

    @classmethod
    def to_native(cls, raw: Tensor, shift: Tensor) -> Tensor:
        """Inverse of :meth:`to_raw` on ``[n, size]`` tensors (no gradient needed)."""
        return raw

    @classmethod
    def log_prob(cls, attrs: dict[str, Any], raw: Tensor, shift: Tensor, values: Tensor | None,
                 xd: Tensor, xc: Tensor, saved: dict[int, Any] | None = None, key: int = 0
                 ) -> Tensor:
        """Log-probabilities ``[n, batch]`` (see :func:`pccc.backends.torch.inputs.log_prob`)."""
        raise NotImplementedError

    @classmethod
    def accumulate_stats(cls, attrs: dict[str, Any], flow: Tensor, xd: Tensor, xc: Tensor,
                         miss: Tensor | None) -> tuple[Tensor, Tensor]:
        """``(stats, missing_flow)`` of one layer (see
        :func:`pccc.backends.torch.inputs.accumulate_stats`); by default three zero columns."""
        total = flow.sum(dim=1)
        fm = total - observed(flow, miss).sum(dim=1) if miss is not None else torch.zeros_like(
            total)
        return flow.new_zeros((flow.shape[0], 3)), fm

    @classmethod
    def complete_stats(cls, attrs: dict[str, Any], native: Tensor, stats: Tensor, fm: Tensor
                       ) -> Tensor:
        """The statistics with the missing values' posterior share (flow ``fm``) added."""
        return stats

    @classmethod
    def em_update(cls, attrs: dict[str, Any], native: Tensor, stats: Tensor, eta: float,
                  alpha: float, min_std: float) -> Tensor:
        """New native parameters ``[n, size]`` after one EM step (default: unchanged)."""
        return native

    @classmethod
    def raw_grad(cls, attrs: dict[str, Any], raw: Tensor, flow: Tensor, g: Tensor | float,
                 gstats: Tensor, xd: Tensor, xc: Tensor, miss: Tensor | None,
                 log_table: Tensor | None) -> Tensor:
        """``sum_b g_b f_b d log p_node(x_b) / d raw`` over observed values: ``[n, size]``.

        ``gstats`` are the statistics of the flows times ``g``. By default autograd
        differentiates :meth:`log_prob` (terms of zero weight are left out, so an impossible
        value of zero flow gives no NaN).
        """
        w = observed(flow * (g[None, :] if isinstance(g, Tensor) else g), miss)
        with torch.enable_grad():
            r = raw.detach().requires_grad_(True)
            shift = r.new_zeros((r.shape[0], 1))
            lp = cls.log_prob(attrs, r, shift, None, xd, xc)
            lp = torch.where(w != 0, lp, torch.zeros_like(lp))
            (grad,) = torch.autograd.grad((lp * w).sum(), r)
        return grad
