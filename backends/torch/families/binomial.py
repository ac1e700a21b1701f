"""``binomial`` on the torch backend: raw ``logit p``; EM statistics ``S`` = E[sum X] and
``T`` = E[total * #examples]."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pccc.backends.torch.families.bernoulli import Bernoulli
from pccc.ir import dists


def binom_logc(total: int, xd: Tensor, dtype: torch.dtype) -> Tensor:
    """``log C(total, x)`` for the values ``xd`` themselves (in float64; no table of
    ``total + 1`` entries)."""
    k = xd.to(torch.float64)
    return (math.lgamma(total + 1) - torch.lgamma(k + 1) - torch.lgamma(total - k + 1)
            ).to(dtype)


@dists.implements("torch", "binomial")
class Binomial(Bernoulli):
    """``total`` trials of one success probability."""

    @classmethod
    def trials(cls, attrs):
        return int(attrs["total"])

    @classmethod
    def log_prob(cls, attrs, raw, shift, values, xd, xc, saved=None, key=0):
        total = int(attrs["total"])
        r = raw[:, :1]
        k = xd.to(raw.dtype)
        a = torch.where(k > 0, k * torch.nn.functional.logsigmoid(r), torch.zeros_like(k))
        b = torch.where(total - k > 0, (total - k) * torch.nn.functional.logsigmoid(-r),
                        torch.zeros_like(k))
        return binom_logc(total, xd, raw.dtype) + a + b
