"""``binomial`` on the Triton backend: ``input_fwd`` reads the native probability and the
log binomial coefficients, specialized on the total (``TOTAL``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import triton
import triton.language as tl

from pccc.backends.triton.families.bernoulli import Bernoulli
from pccc.ir import dists

if TYPE_CHECKING:
    from pccc.backends.triton.inputs import InputTables


@triton.jit
def logprob_binomial(theta, logc, values, ps, i, imask, xv, xi, ms, mask,
                     TOTAL: tl.constexpr):
    """log p(x) of a binomial node of TOTAL trials and probability theta[ps]; ``logc[k]`` is
    log (TOTAL choose k)."""
    p = tl.load(theta + ps, mask=imask, other=0.5)[:, None]
    lc = tl.load(logc + xi, mask=mask & (ms == 0), other=0.0)
    a = tl.where(xv > 0.0, xv * tl.log(p), 0.0)
    b = tl.where(TOTAL - xv > 0.0, (TOTAL - xv) * tl.log(1.0 - p), 0.0)
    lp = lc + a + b
    return lp


@dists.implements("triton", "binomial")
class Binomial(Bernoulli):
    """Bernoulli's host side with ``total`` trials per example."""

    logprob = "logprob_binomial"

    @classmethod
    def trials(cls, tb: InputTables) -> float:
        return float(dict(tb.layer.attrs)["total"])
