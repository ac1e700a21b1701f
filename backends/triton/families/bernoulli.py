"""``bernoulli`` on the Triton backend: ``input_fwd`` reads the native probability."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import triton
import triton.language as tl
from torch import Tensor

from pccc.backends.triton.families.base import TritonFamily, add_rows, moment_em_stats
from pccc.ir import dists

if TYPE_CHECKING:
    from pccc.backends.triton.inputs import InputTables


@triton.jit
def logprob_bernoulli(theta, logc, values, ps, i, imask, xv, xi, ms, mask,
                      TOTAL: tl.constexpr):
    """log p(x) of a Bernoulli node of probability theta[ps]."""
    p = tl.load(theta + ps, mask=imask, other=0.5)[:, None]
    lp = tl.where(xi == 1, tl.log(p), tl.log(1.0 - p))
    return lp


@dists.implements("triton", "bernoulli")
class Bernoulli(TritonFamily):
    logprob = "logprob_bernoulli"

    @classmethod
    def trials(cls, tb: InputTables) -> float:
        """Trials per example."""
        return 1.0

    @classmethod
    def add_raw_grad(cls, tb: InputTables, ns: Tensor, raw: Tensor, counts: Tensor,
                     grad: Tensor) -> None:
        """sum f x - sigmoid(raw) N sum f over observed values."""
        obs = ns[:, 0] - ns[:, 1]
        r = tb.rows(raw)
        add_rows(tb, grad, (ns[:, 2] - torch.sigmoid(r[:, 0]) * cls.trials(tb) * obs)[:, None])

    @classmethod
    def em_stats(cls, tb: InputTables, ns: Tensor, fm: Tensor, theta: Tensor, raw: Tensor,
                 shift: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
        """The torch family's (S = E[#successes], N E[#examples])."""
        ly = tb.layer
        native = tb.urows(theta)  # [u, size]
        st = torch.zeros((ly.n, 3), dtype=theta.dtype, device=theta.device)
        nat = tb.rows(theta)
        total = cls.trials(tb)
        st[:, 0] = ns[:, 2] + ns[:, 1] * total * nat[:, 0]
        st[:, 1] = ns[:, 0] * total
        return native, moment_em_stats(tb, st, theta)
