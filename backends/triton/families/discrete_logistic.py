"""``discrete_logistic`` on the Triton backend: ``input_fwd`` reads the raw coordinates
(mean, log scale) and ``(card, low, bin width)``; its gradients, which no moment gives, are
summed over the examples by a kernel of its own (``logistic_grad``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import triton
import triton.language as tl
from torch import Tensor

from pccc.backends.torch import inputs as fam
from pccc.backends.triton.families.base import TritonFamily
from pccc.backends.triton.kernels_input import _input_tile
from pccc.backends.triton.lazyjit import kernel
from pccc.ir import dists
from pccc.ir.dists.discrete_logistic import bin_width

if TYPE_CHECKING:
    from pccc.backends.triton.inputs import InputTables
    from pccc.ir.plan import InputLayer

#: node rows and batch columns per program of the ``logistic_grad`` kernel
LOGISTIC_TILE = (16, 64)


@triton.jit
def _log1p_unit(t):
    """log(1 + t) for t in [0, 1], accurate where t is tiny."""
    return tl.where(t < 1e-4, t - 0.5 * t * t, tl.log(1.0 + t))


@triton.jit
def _log_sigmoid(z):
    """log(1 / (1 + exp(-z))) without overflow."""
    return tl.minimum(z, 0.0) - _log1p_unit(tl.exp(-tl.abs(z)))


@triton.jit
def _log1mexp(d):
    """log(1 - exp(-d)) for d >= 0: below 0.1 from the series of 1 - exp(-d) (no
    cancellation), above from 1 - exp(-d) itself."""
    s = d * (1.0 - d * 0.5 * (1.0 - d / 3.0 * (1.0 - d * 0.25 * (1.0 - d * 0.2))))
    return tl.log(tl.where(d < 0.1, s, 1.0 - tl.exp(-d)))


@triton.jit
def _logistic_bin(theta, logc, ps, imask, xv):
    """A discrete logistic's bins at values xv: (a, b, inv, width, first, last), a and b the
    bin's edges in standard units, inv = 1 / scale, width = b - a (bin width times inv)."""
    mu = tl.load(theta + ps, mask=imask, other=0.0)[:, None]
    inv = tl.exp(-tl.load(theta + ps + 1, mask=imask, other=0.0))[:, None]
    card = tl.load(logc)
    low = tl.load(logc + 1)
    w = tl.load(logc + 2)
    edge = low + xv * w
    a = tl.where(edge == mu, 0.0, (edge - mu) * inv)
    b = tl.where(edge + w == mu, 0.0, (edge + w - mu) * inv)
    return a, b, inv, w * inv, xv == 0.0, xv == card - 1.0


@triton.jit
def logprob_discrete_logistic(theta, logc, values, ps, i, imask, xv, xi, ms, mask,
                              TOTAL: tl.constexpr):
    """log P(x) of a logistic (mean, log_scale) = theta[ps:] binned onto 0..card-1, with
    ``logc`` = (card, low, bin width): bin x is (low + x w, low + (x + 1) w], the first open
    below and the last above; in standard units a, b its edges, log sigmoid(b) + log
    sigmoid(-a) + log(1 - exp(-(b - a))), each term dropped where its edge is open (see
    :mod:`pccc.ir.dists.discrete_logistic`)."""
    a, b, inv, width, first, last = _logistic_bin(theta, logc, ps, imask, xv)
    lp = tl.where(first, 0.0, _log_sigmoid(-a)) + tl.where(last, 0.0, _log_sigmoid(b))
    lp += tl.where(first | last, 0.0, _log1mexp(width))
    return lp


@kernel(do_not_specialize=["n"])
def logistic_grad(flow, x, miss, vars, pstart, theta, logc, scale, grad, node_start, n, batch,
                  stride, BN: tl.constexpr, BT: tl.constexpr):
    """Gradient of sum_b scale_b flow_ib log P_i(x_b) of discrete logistic nodes i with
    respect to their (mean, log_scale) = theta[pstart[i]:], added into grad (same layout; tied
    nodes add into one row): per bin term, d log sigmoid(-a) = sigmoid(a) (inv, a), d log
    sigmoid(b) = -sigmoid(-b) (inv, b), d log(1 - exp(-width)) = (0, -width / expm1(width));
    an example of zero weight (missing value, zero flow) adds nothing."""
    i, imask, cols, cmask, mask, xv, ms = _input_tile(x, miss, vars, n, batch, stride, BN, BT)
    sc = tl.load(scale + cols, mask=cmask, other=0.0)
    foff = (node_start + i).to(tl.int64)[:, None] * stride + cols[None, :]
    f = tl.load(flow + foff, mask=mask, other=0.0) * sc[None, :]
    f = tl.where(ms != 0, 0.0, f)
    ps = tl.load(pstart + i, mask=imask, other=0).to(tl.int64)
    a, b, inv, width, first, last = _logistic_bin(theta, logc, ps, imask, xv)
    sa = tl.where(first, 0.0, 1.0 / (1.0 + tl.exp(-a)))
    sb = tl.where(last, 0.0, 1.0 / (1.0 + tl.exp(b)))
    # width / expm1(width): a series below 0.1, 0 where exp(width) overflows
    dw = width / tl.where(width < 0.1, width * (1.0 + width * 0.5 * (
        1.0 + width / 3.0 * (1.0 + width * 0.25 * (1.0 + width * 0.2)))),
        tl.exp(tl.minimum(width, 80.0)) - 1.0)
    dw = tl.where(first | last | (width > 80.0), 0.0, dw)
    # (a term whose sigmoid is 0 adds 0, even at an infinite edge or inverse scale)
    dmu = tl.where(sa == 0.0, 0.0, sa * inv) - tl.where(sb == 0.0, 0.0, sb * inv)
    dls = tl.where(sa == 0.0, 0.0, sa * a) - tl.where(sb == 0.0, 0.0, sb * b) - dw
    live = f != 0.0
    gm = tl.sum(tl.where(live, f * dmu, 0.0), axis=1)
    gl = tl.sum(tl.where(live, f * dls, 0.0), axis=1)
    tl.atomic_add(grad + ps, gm, mask=imask, sem="relaxed")
    tl.atomic_add(grad + ps + 1, gl, mask=imask, sem="relaxed")


@dists.implements("triton", "discrete_logistic")
class DiscreteLogistic(TritonFamily):
    logprob = "logprob_discrete_logistic"
    kernels = ("logistic_grad",)

    @classmethod
    def kernel_tables(cls, ly: InputLayer, raw: Tensor, theta: Tensor, cnorm: Tensor,
                      logc: Tensor) -> tuple[Tensor, Tensor]:
        """``input_raw`` and ``(card, low, bin width)``."""
        at = dict(ly.attrs)
        return raw, torch.tensor([float(at["card"]), float(at["low"]), bin_width(at)],
                                 dtype=torch.float32, device=raw.device)

    @classmethod
    def grad_kernel(cls, kernels: Any, tb: InputTables, inp: Any, theta: Tensor, aux: Tensor,
                    flow: Tensor, xt: Tensor, mt: Tensor, scale: Tensor, batch: int,
                    grad: Tensor) -> None:
        """The ``logistic_grad`` kernel."""
        ly = tb.layer
        bn, bt = LOGISTIC_TILE
        kernels.logistic_grad[(-(-ly.n // bn), -(-batch // bt))](
            flow, xt, mt, inp.vars, inp.pstart, theta, aux, scale, grad, ly.node_start, ly.n,
            batch, flow.shape[1], BN=bn, BT=bt)

    @classmethod
    def em_stats(cls, tb: InputTables, ns: Tensor, fm: Tensor, theta: Tensor, raw: Tensor,
                 shift: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
        """The bins' midpoint moments (:func:`logistic_stats`), completed as the torch
        family's."""
        native = tb.urows(theta)
        st = logistic_stats(tb, ns)
        if tb.span is None:
            st = torch.zeros((tb.num_rows, 3), dtype=st.dtype, device=st.device).index_add_(
                0, tb.inv, st)
        return native, fam.complete_stats(tb.layer.dist, tb.attrs or {}, native, st,
                                          fm.double())


def logistic_stats(tb: InputTables, ns: Tensor) -> Tensor:
    """``[n, 3]`` float64 EM statistics of a discrete logistic layer, as the torch family's:
    (sum f, sum f m, sum f m^2), ``m = low + (x + 1/2) w`` the observed values' bin midpoints,
    from ``nstats`` (the moments of ``x``)."""
    attrs = dict(tb.layer.attrs)
    w = bin_width(attrs)
    lo = float(attrs["low"]) + 0.5 * w
    d = ns.double()
    obs, sx, sxx = d[:, 0] - d[:, 1], d[:, 2], d[:, 3]
    return torch.stack([d[:, 0], lo * obs + w * sx,
                        lo * lo * obs + 2.0 * lo * w * sx + w * w * sxx], dim=1)
