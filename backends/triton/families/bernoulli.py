"""``bernoulli`` on the Triton backend: ``input_fwd`` reads the native probability."""

from __future__ import annotations

import triton
import triton.language as tl

from pccc.backends.triton.families.base import TritonFamily
from pccc.ir import dists


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
