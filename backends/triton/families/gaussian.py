"""``gaussian`` on the Triton backend: ``input_fwd`` reads the raw coordinates
(mean, log sd)."""

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
    from pccc.ir.plan import InputLayer


@triton.jit
def logprob_gaussian(theta, logc, values, ps, i, imask, xv, xi, ms, mask,
                     TOTAL: tl.constexpr):
    """log N(x; mu, sd) with theta[ps:] the raw coordinates (mu, log sd); z^2 in log space,
    so that a tiny or huge sd gives no 0 * inf, and NaN (x - mu of two infinities) reads
    -inf."""
    mu = tl.load(theta + ps, mask=imask, other=0.0)[:, None]
    lsd = tl.load(theta + ps + 1, mask=imask, other=0.0)[:, None]
    z2 = tl.exp(2.0 * (tl.log(tl.abs(xv - mu)) - lsd))
    lp = -0.5 * z2 - lsd - 0.9189385332046727
    lp = tl.where(lp == lp, lp, float("-inf"))
    return lp


@dists.implements("triton", "gaussian")
class Gaussian(TritonFamily):
    logprob = "logprob_gaussian"

    @classmethod
    def kernel_tables(cls, ly: InputLayer, raw: Tensor, theta: Tensor, cnorm: Tensor,
                      logc: Tensor) -> tuple[Tensor, Tensor]:
        """``input_raw`` and nothing."""
        return raw, logc

    @classmethod
    def add_raw_grad(cls, tb: InputTables, ns: Tensor, raw: Tensor, counts: Tensor,
                     grad: Tensor) -> None:
        add_rows(tb, grad, gaussian_raw_grad(tb.rows(raw), ns[:, 0] - ns[:, 1], ns[:, 2],
                                             ns[:, 3]))

    @classmethod
    def em_stats(cls, tb: InputTables, ns: Tensor, fm: Tensor, theta: Tensor, raw: Tensor,
                 shift: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
        """(S0, observed S1, S2, missing flow): see the torch side's ``gaussian_em``."""
        st = ns[:, [0, 2, 3, 1]].to(theta.dtype)
        return tb.urows(theta), moment_em_stats(tb, st, theta)


def gaussian_raw_grad(raw: Tensor, obs: Tensor, sx: Tensor, sxx: Tensor) -> Tensor:
    """``(d/d mu, d/d log_sd)`` of ``sum_b f_b log N(x_b)`` from the observed statistics
    ``obs = sum f``, ``sx = sum f x``, ``sxx = sum f x^2``: ``(sx - mu obs) / sd^2`` and
    ``sum f (x - mu)^2 / sd^2 - obs``, in float64 with the divisions by ``sd^2`` done in log
    space and ``sum f (x - mu)^2`` as the spread about the data's mean plus ``obs (m - mu)^2``
    (no ``mu^2`` to overflow): infinite where the dtype cannot hold them, never NaN."""
    mu, lsd = raw[:, 0].double(), raw[:, 1].double()
    o, sx, sxx = obs.double(), sx.double(), sxx.double()

    def times(u: Tensor, v: Tensor) -> Tensor:  # u v, 0 where either is 0 (even with inf)
        return torch.where((u == 0) | (v == 0), torch.zeros_like(u), u * v)

    a = sx - times(mu, o)
    some = o != 0
    m = sx / torch.where(some, o, torch.ones_like(o))
    dev2 = torch.where(some, (sxx - o * m * m) + times(o, (m - mu) ** 2),
                       sxx - 2 * times(mu, sx))

    def over_var(t: Tensor) -> Tensor:
        return torch.sign(t) * torch.exp(torch.log(torch.abs(t)) - 2 * lsd)

    return torch.stack([over_var(a), over_var(dev2) - o], dim=1).to(raw.dtype)
