"""``indicator`` on the Triton backend: no parameters, log-value 0 or ``-inf``."""

from __future__ import annotations

import triton
import triton.language as tl

from pccc.backends.triton.families.base import TritonFamily
from pccc.ir import dists


@triton.jit
def logprob_indicator(theta, logc, values, ps, i, imask, xv, xi, ms, mask,
                      TOTAL: tl.constexpr):
    """0 where x is the node's value, -inf elsewhere."""
    val = tl.load(values + i, mask=imask, other=0)
    lp = tl.where(xi == val[:, None], 0.0, float("-inf"))
    return lp


@dists.implements("triton", "indicator")
class Indicator(TritonFamily):
    logprob = "logprob_indicator"
    learns = False
