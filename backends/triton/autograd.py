"""The Triton executor's autograd functions: ``log p(x)`` through the fused kernels and the
log sum weights (see :class:`~pccc.backends.triton.compiled.TritonExecutor`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from pccc.backends.module import CompiledCircuit
    from pccc.backends.triton.compiled import TritonExecutor


class _Fused(torch.autograd.Function):
    """``(sum_logits, input_raw) -> log p(x)`` through the fused kernels."""

    @staticmethod
    def forward(ctx: Any, m: CompiledCircuit, ex: TritonExecutor,  # type: ignore[override]
                x: Tensor, missing: Tensor | None, logits: Tensor, raw: Tensor) -> Tensor:
        ex.sync_params(m)
        ll = ex.fused_forward(m, x, missing)
        ctx.m, ctx.ex, ctx.x, ctx.missing, ctx.stamp = m, ex, x, missing, ex._stamp
        return ll

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        m: CompiledCircuit = ctx.m
        ex: TritonExecutor = ctx.ex
        if ex._stamp != ctx.stamp:  # another forward ran since: recompute this one
            ex.sync_params(m)
            ex.fused_forward(m, ctx.x, ctx.missing)
        grads = m.param_grads
        want_l, want_r = grads and ctx.needs_input_grad[4], grads and ctx.needs_input_grad[5]
        pieces = m.root_grad_pieces(grad)
        if pieces[0][1] is None:
            dl, dr = ex.fused_backward(m, pieces[0][0].contiguous().float(), want_l, want_r)
            return None, None, None, None, dl, dr
        # the roots weigh differently: the gradients with the upstream gradients as the
        # roots' flows (a pass per sign), then (when tracked) the EM statistics with root
        # flow 1 each; each pass after the first recomputes the forward values it overwrote
        dl = dr = None
        passes = 0
        for scale, root_grad in pieces if want_l or want_r else []:
            if passes:
                ex.sync_params(m)
                ex.fused_forward(m, ctx.x, ctx.missing)
            assert root_grad is not None
            gl, gr = ex.fused_backward(m, scale.float(), want_l, want_r,
                                       root_grad=root_grad.float(), track=False)
            dl = gl if dl is None or gl is None else dl + gl
            dr = gr if dr is None or gr is None else dr + gr
            passes += 1
        if m.track_flows:
            if passes:
                ex.sync_params(m)
                ex.fused_forward(m, ctx.x, ctx.missing)
            ex.fused_backward(m, torch.ones_like(pieces[0][0]).float(), False, False)
        return None, None, None, None, dl, dr


class _LogWeights(torch.autograd.Function):
    """``sum_logits -> log w`` per group: ``log_softmax + log Z_g``; backward
    ``g - softmax * (sum of g over the group)``."""

    @staticmethod
    def forward(ctx: Any, raw: Tensor, m: CompiledCircuit,  # type: ignore[override]
                ex: TritonExecutor) -> Tensor:
        ex.sync_params(m)
        w = ex._w.clone()
        ctx.m, ctx.ex = m, ex
        ctx.save_for_backward(w)
        real = (ex.dp.group_ids() >= 0) & (w > 0)
        return torch.where(real, torch.log(torch.where(real, w, 1.0)), -math.inf)

    @staticmethod
    def backward(ctx: Any, g: Tensor):  # type: ignore[override]
        m, ex = ctx.m, ctx.ex
        (w,) = ctx.saved_tensors
        g = torch.where(w > 0, g.float(), 0.0)
        gs = ex.group_sums(m, g).float()
        group = ex.dp.group_ids().clamp_min(0)
        z = m.sum_norm.float()[group]
        prob = torch.where(w > 0, w * torch.exp(-z), 0.0)
        return (g - prob * gs[group]).to(m.sum_logits.dtype), None, None
