"""``categorical`` on the Triton backend: ``input_fwd`` reads the raw coordinates and
the per-node constants ``c`` of ``log theta = raw + c``; value counts as statistics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import triton
import triton.language as tl
from torch import Tensor

from pccc.backends.torch import inputs as fam
from pccc.backends.triton.families.base import TritonFamily, add_rows
from pccc.backends.triton.lazyjit import kernel
from pccc.ir import dists

if TYPE_CHECKING:
    from pccc.backends.triton.inputs import InputTables
    from pccc.ir.plan import InputLayer

#: categorical nodes per program of the ``cat_em`` kernel
CAT_BN = 8


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


@kernel(do_not_specialize=["n", "step", "pseudocount"])
def cat_em(raw, shift, cnorm, counts, nstats, start, n, step, pseudocount, K: tl.constexpr,
           KP: tl.constexpr, BN: tl.constexpr):
    """One EM step of n categorical nodes whose K parameters are the rows raw[start + i K:],
    theta = exp(raw + c) (c = cnorm[i]): statistics (value counts plus the missing values'
    flow times theta), the update (1 - step) theta + step (stats + a / K) / (total + a), then
    the raw coordinates written back (log theta; shift[i] = log of the row sum, c = 0, or raw
    0, shift and c -inf for an all-zero row) and the statistics zeroed."""
    i = tl.program_id(0) * BN + tl.arange(0, BN)
    im = i < n
    k = tl.arange(0, KP)
    m = im[:, None] & (k[None, :] < K)
    off = start + i.to(tl.int64)[:, None] * K + k[None, :]
    c = tl.load(cnorm + i, mask=im, other=0.0)
    th = tl.exp(tl.load(raw + off, mask=m, other=float("-inf")) + c[:, None])
    fm = tl.load(nstats + i * 4 + 1, mask=im, other=0.0)
    st = tl.load(counts + off, mask=m, other=0.0) + fm[:, None] * th
    den = tl.sum(st, axis=1) + pseudocount
    ok = den > 0.0
    tgt = (st + pseudocount / K) / tl.where(ok, den, 1.0)[:, None]
    new = tl.where(ok[:, None], (1.0 - step) * th + step * tgt, th)
    tot = tl.sum(tl.where(m, new, 0.0), axis=1)
    live = tot > 0.0
    lz = tl.where(live, tl.log(tl.where(live, tot, 1.0)), float("-inf"))
    tl.store(raw + off, tl.where(live[:, None], tl.log(new), 0.0), mask=m)
    tl.store(shift + i, lz, mask=im)
    tl.store(cnorm + i, tl.where(live, 0.0, float("-inf")), mask=im)
    tl.store(counts + off, tl.zeros([BN, KP], tl.float32), mask=m)
    for j in tl.static_range(4):
        tl.store(nstats + i * 4 + j, tl.zeros([BN], tl.float32), mask=im)


@dists.implements("triton", "categorical")
class Categorical(TritonFamily):
    logprob = "logprob_categorical"
    counted = True
    kernels = ("cat_em",)

    @classmethod
    def kernel_tables(cls, ly: InputLayer, raw: Tensor, theta: Tensor, cnorm: Tensor,
                      logc: Tensor) -> tuple[Tensor, Tensor]:
        """``input_raw`` and the per-node constants ``c`` of ``log theta = raw + c``."""
        return raw, cnorm

    @classmethod
    def add_raw_grad(cls, tb: InputTables, ns: Tensor, raw: Tensor, counts: Tensor,
                     grad: Tensor) -> None:
        """Counts - softmax(raw) * observed flow, per node."""
        obs = ns[:, 0] - ns[:, 1]
        g = torch.softmax(tb.rows(raw), dim=1) * -obs[:, None]
        if tb.span is not None:
            tb.rows(grad).copy_(tb.rows(counts) + g)
            return
        grad.index_add_(0, tb.uidx.reshape(-1), counts[tb.uidx.reshape(-1)])
        add_rows(tb, grad, g)

    @classmethod
    def em_kernel(cls, kernels: Any, tb: InputTables, raw: Tensor, shift: Tensor, c: Tensor,
                  counts: Tensor, ns: Tensor, step: float, pseudocount: float) -> bool:
        """Contiguous layers: the generated ``cat_em`` kernel (one pass, which also zeroes
        their statistics)."""
        if kernels is None or tb.span is None:
            return False
        ly = tb.layer
        K = ly.param_size
        kernels.cat_em[(-(-ly.n // CAT_BN),)](
            raw, tb.nodes(shift), c, counts, ns, tb.span[0], ly.n, float(step),
            float(pseudocount), K=K, KP=1 << max(0, (K - 1).bit_length()), BN=CAT_BN)
        return True

    @classmethod
    def em_stats(cls, tb: InputTables, ns: Tensor, fm: Tensor, theta: Tensor, raw: Tensor,
                 shift: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
        """A missing value adds its posterior: f * theta."""
        native = fam.to_native(tb.layer.dist, tb.urows(raw), tb.ushift(shift))
        return native, tb.urows(counts) + fm[:, None] * native

    @classmethod
    def em_write(cls, tb: InputTables, r: Tensor, s: Tensor, new: Tensor, theta: Tensor,
                 c: Tensor, shift: Tensor) -> None:
        """No native copy: the constants ``c`` and the per-node ``shift``."""
        categorical_norm(tb, r, s[:, 0], c, shift)

    @classmethod
    def refresh(cls, tb: InputTables, raw: Tensor, shift: Tensor, theta: Tensor, c: Tensor
                ) -> None:
        categorical_norm(tb, tb.urows(raw), tb.ushift(shift)[:, 0], c)


def categorical_norm(tb: InputTables, r: Tensor, s: Tensor, c: Tensor,
                     shift: Tensor | None = None) -> None:
    """Per-node ``c = shift - logsumexp(raw row)`` from the distinct rows' raw coordinates
    ``r [u, size]`` and log-normalizers ``s [u]``; also the per-node ``shift`` when given
    (after an EM update; a refresh leaves it as it is)."""
    lse = torch.logsumexp(r, dim=1)
    cu = torch.where(torch.isfinite(lse) & (s > -torch.inf), s - lse, -torch.inf)
    per_node = (lambda v: v) if tb.span is not None else (lambda v: v[tb.inv])
    if shift is not None:
        tb.nodes(shift).copy_(per_node(s))
    c.copy_(per_node(cu))
