"""``categorical`` on the Triton backend: ``input_fwd`` reads the raw coordinates and
the per-node constants ``c`` of ``log theta = raw + c``; value counts as statistics."""

from __future__ import annotations

import triton
import triton.language as tl

from pccc.backends.triton.families.base import TritonFamily
from pccc.ir import dists


@triton.jit
def logprob_categorical(theta, logc, values, ps, i, imask, xv, xi, ms, mask,
                        TOTAL: tl.constexpr):
    """log theta[x] of nodes i [BN] at values x [BN, BT]: ``theta`` holds the raw
    coordinates and ``logc`` the per-node constant c of log theta = raw + c (no native copy
    of the table is kept); ``ps`` the nodes' first parameters, ``xi`` the values as int32,
    ``ms`` the missing flags, ``values`` the indicator values, ``TOTAL`` the binomial total."""
    lp = tl.load(theta + ps[:, None] + xi, mask=mask & (ms == 0), other=0.0)
    lp += tl.load(logc + i, mask=imask, other=0.0)[:, None]
    return lp


@dists.implements("triton", "categorical")
class Categorical(TritonFamily):
    logprob = "logprob_categorical"
    counted = True
