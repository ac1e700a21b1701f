"""``categorical`` on the torch backend: raw ``log p`` normalized by a per-row softmax; EM
statistics ``c_k``, the expected count of value ``k``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from pccc.backends.torch.families.base import TorchFamily, observed
from pccc.ir import dists


def take(table: Tensor, xd: Tensor) -> Tensor:
    """``table[i, xd[i, b]]``; ``xd`` may be a ``[runs, units, batch]`` broadcast view."""
    if xd.dim() == 3:
        return table.view(xd.shape[0], xd.shape[1], -1).gather(2, xd).view(-1, xd.shape[2])
    return table.gather(1, xd)


@dists.implements("torch", "categorical")
class Categorical(TorchFamily):
    """The log-normalizer keeps an unnormalized table exactly as written (the reference
    evaluator does not renormalize); it is 0 for normalized tables."""

    counts = True
    grouped_rows = True

    @classmethod
    def to_raw(cls, native):
        with np.errstate(divide="ignore", invalid="ignore"):
            # an all-zero row keeps raw 0 and a -inf normalizer: log-probabilities -inf, no NaN
            tot = native.sum(axis=1, keepdims=True)
            raw = np.log(native)
            if not (tot > 0).all():
                raw = np.where(tot > 0, raw, 0.0)
            shift = np.where(tot > 0, np.log(np.where(tot > 0, tot, 1.0)), -np.inf)
        return raw, shift

    @classmethod
    def to_raw_tensor(cls, native):
        tot = native.sum(dim=1, keepdim=True)
        ok = tot > 0
        raw = torch.where(ok, torch.log(native), 0.0)
        shift = torch.where(ok, torch.log(torch.where(ok, tot, 1.0)), -torch.inf)
        return raw, shift

    @classmethod
    def to_native(cls, raw, shift):
        return torch.exp(torch.log_softmax(raw, dim=1) + shift[:, :1])

    @classmethod
    def table(cls, attrs: dict[str, Any], raw: Tensor) -> Tensor:
        """``log p`` of every value, ``[n, card]`` (before the log-normalizer)."""
        return torch.log_softmax(raw, dim=1)

    @classmethod
    def probs(cls, attrs: dict[str, Any], raw: Tensor) -> Tensor:
        """``p`` of every value, ``[n, card]`` (before the normalizer)."""
        return torch.softmax(raw, dim=1)

    @classmethod
    def log_prob(cls, attrs, raw, shift, values, xd, xc, saved=None, key=0):
        table = cls.table(attrs, raw)
        if saved is not None and not torch.is_grad_enabled():
            saved[key] = table
        lp = take(table, xd)
        return lp + shift[:, :1] if bool((shift != 0).any()) else lp

    @classmethod
    def accumulate_stats(cls, attrs, flow, xd, xc, miss):
        obs = observed(flow, miss)
        counts = torch.zeros((flow.shape[0], int(attrs["card"])), dtype=flow.dtype,
                             device=flow.device)
        if miss is None:
            if xd.dim() == 3:  # [runs, units, batch] broadcast rows (see Batch.rows)
                counts.view(xd.shape[0], xd.shape[1], -1).scatter_add_(2, xd, obs.view(xd.shape))
            else:
                counts.scatter_add_(1, xd, obs)
            return counts, flow.new_zeros(flow.shape[0])
        total_flow = flow.sum(dim=1)
        fm = total_flow - obs.sum(dim=1)
        counts.scatter_add_(1, xd, obs)
        return counts, fm

    @classmethod
    def complete_stats(cls, attrs, native, stats, fm):
        return stats + fm[:, None] * native

    @classmethod
    def em_update(cls, attrs, native, stats, eta, alpha, min_std):
        k = native.shape[1]
        tot = stats.sum(1, keepdim=True)
        ok = (tot + alpha) > 0
        target = (stats + alpha / k) / torch.where(ok, tot + alpha, torch.ones_like(tot))
        return torch.where(ok, (1 - eta) * native + eta * target, native)

    @classmethod
    def raw_grad(cls, attrs, raw, flow, g, gstats, xd, xc, miss, log_table):
        probs = torch.exp(log_table) if log_table is not None else cls.probs(attrs, raw)
        return torch.addcmul(gstats, probs, gstats.sum(dim=1, keepdim=True), value=-1.0)
