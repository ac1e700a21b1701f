"""``masked_categorical`` on the Triton backend: ``input_fwd`` reads the native table (0 at
the values the mask leaves out); value counts as statistics."""

from __future__ import annotations

import triton
import triton.language as tl

from pccc.backends.triton.families.base import TritonFamily
from pccc.ir import dists


@triton.jit
def logprob_masked_categorical(theta, logc, values, ps, i, imask, xv, xi, ms, mask,
                               TOTAL: tl.constexpr):
    """log theta[x] with ``theta`` the native table (0, so -inf, at the values the node's
    mask leaves out: the host keeps those entries 0)."""
    p = tl.load(theta + ps[:, None] + xi, mask=mask & (ms == 0), other=1.0)
    return tl.log(p)


@dists.implements("triton", "masked_categorical")
class MaskedCategorical(TritonFamily):
    logprob = "logprob_masked_categorical"
    counted = True
