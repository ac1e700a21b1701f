"""``masked_categorical`` on the Triton backend: ``input_fwd`` reads the native table (0 at
the values the mask leaves out); value counts as statistics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import triton
import triton.language as tl
from torch import Tensor

from pccc.backends.triton.families.base import TritonFamily, add_rows
from pccc.ir import dists
from pccc.ir.dists.masked_categorical import mask_rows

if TYPE_CHECKING:
    from pccc.backends.triton.inputs import InputTables


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

    @classmethod
    def keep(cls, attrs: dict[str, Any], n: int) -> np.ndarray | None:
        return mask_rows(attrs, n)

    @classmethod
    def add_raw_grad(cls, tb: InputTables, ns: Tensor, raw: Tensor, counts: Tensor,
                     grad: Tensor) -> None:
        """As categorical, 0 at the masked-out values."""
        obs = ns[:, 0] - ns[:, 1]
        assert tb.keep is not None
        g = torch.where(tb.keep, masked_probs(tb.rows(raw), tb.keep) * -obs[:, None], 0.0)
        cnt = torch.where(tb.ukeep, tb.urows(counts), 0.0)
        if tb.span is not None:
            tb.rows(grad).copy_(cnt + g)
            return
        grad.index_add_(0, tb.uidx.reshape(-1), cnt.reshape(-1))
        add_rows(tb, grad, g)

    @classmethod
    def em_stats(cls, tb: InputTables, ns: Tensor, fm: Tensor, theta: Tensor, raw: Tensor,
                 shift: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
        """``theta``: the masked native table; a missing value adds f * theta."""
        native = tb.urows(theta)
        return native, tb.urows(counts) + fm[:, None] * native

    @classmethod
    def em_new(cls, tb: InputTables, native: Tensor, stats: Tensor, step: float,
               pseudocount: float) -> Tensor:
        return masked_em(tb.ukeep, native, stats, step, pseudocount)

    @classmethod
    def em_write(cls, tb: InputTables, r: Tensor, s: Tensor, new: Tensor, theta: Tensor,
                 c: Tensor, shift: Tensor) -> None:
        tb.put(theta, new)
        tb.nodes(shift).copy_(tb.per_node(s[:, 0]))  # (a table EM normalizes: shift 0)

    @classmethod
    def refresh(cls, tb: InputTables, raw: Tensor, shift: Tensor, theta: Tensor, c: Tensor
                ) -> None:
        tb.put(theta, masked_probs(tb.urows(raw), tb.ukeep) * torch.exp(tb.ushift(shift)))


def masked_probs(raw: Tensor, keep: Tensor) -> Tensor:
    """``softmax`` of each row of ``raw`` over the values ``keep`` allows (0 elsewhere)."""
    return torch.softmax(raw.masked_fill(~keep, -torch.inf), dim=1)


def masked_em(keep: Tensor, native: Tensor, stats: Tensor, step: float, pseudocount: float
              ) -> Tensor:
    """The torch family's masked categorical EM step (pseudocount over the allowed values
    only, 0 at the others) with the mask ``keep [u, size]`` already on the device: no
    host-to-device copy, so that the step can be captured in a CUDA graph."""
    k = keep.sum(dim=1, keepdim=True).to(native.dtype)
    stats = torch.where(keep, stats, 0.0)
    tot = stats.sum(1, keepdim=True)
    ok = (tot + pseudocount) > 0
    target = (stats + pseudocount / k) / torch.where(ok, tot + pseudocount, 1.0)
    new = torch.where(ok, (1 - step) * native + step * target, native)
    return torch.where(keep, new, 0.0)
