"""``indicator`` on the torch backend: no parameters, log-value 0 or ``-inf``."""

from __future__ import annotations

import math

import torch

from pccc.backends.torch.families.base import TorchFamily
from pccc.ir import dists


@dists.implements("torch", "indicator")
class Indicator(TorchFamily):
    """``[X == values[i]]``: no raw coordinates, no statistics, no gradient."""

    @classmethod
    def log_prob(cls, attrs, raw, shift, values, xd, xc, saved=None, key=0):
        assert values is not None
        hit = xd == values[:, None]
        zero = torch.zeros((), dtype=raw.dtype, device=raw.device)
        return torch.where(hit, zero, torch.full_like(zero, -math.inf)).expand(xd.shape)

    @classmethod
    def raw_grad(cls, attrs, raw, flow, g, gstats, xd, xc, miss, log_table):
        return torch.zeros_like(raw)
