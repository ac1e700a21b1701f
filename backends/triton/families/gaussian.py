"""``gaussian`` on the Triton backend: ``input_fwd`` reads the raw coordinates
(mean, log sd)."""

from __future__ import annotations

import triton
import triton.language as tl

from pccc.backends.triton.families.base import TritonFamily
from pccc.ir import dists


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
