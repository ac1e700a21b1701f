"""The autograd function of a :class:`~pccc.backends.module.CompiledCircuit` computed from its
input layers' log-values: the torch backend's passes and the input values fed from outside
(``input_logp``), with a flows backward (see :mod:`pccc.backends.module`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from pccc.backends.batch import Batch
    from pccc.backends.module import CompiledCircuit


class _CircuitFunction(torch.autograd.Function):
    """``(sum log-weights, input parameters or input log-values) -> log p(x)``, with a flows
    backward. ``fused``: the one tensor after ``logw`` is ``input_raw`` and the input layers run
    inside (their gradients and EM statistics come from the same flows); otherwise the tensors
    are the input layers' log-values (fed from outside)."""

    @staticmethod
    def forward(ctx: Any, model: CompiledCircuit, data: Batch, fused: bool, logw: Tensor,
                *inputs: Tensor) -> Tensor:
        in_vals = model.input_values(data) if fused else [v.detach() for v in inputs]
        elems: list[Tensor] | None = [] if model.keep_elements else None
        node = model.run_forward(logw.detach(), in_vals, elems)
        ctx.model, ctx.data, ctx.fused, ctx.elems = model, data, fused, elems
        ctx.save_for_backward(logw.detach(), node)
        return model.root_output(node)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        model: CompiledCircuit = ctx.model
        logw, node = ctx.saved_tensors
        pieces = model.root_grad_pieces(grad)
        # root flows of 1: the EM statistics come from the same pass
        em = model.track_flows and pieces[0][1] is None
        dlogw: Tensor | None = None
        dins: list[Tensor] = []
        for scale, root_flow in pieces:
            node_flow, pflows = model.run_backward(node, logw, scale, track_em=em,
                                                   elems=ctx.elems, root_flow=root_flow)
            if ctx.fused:
                din = [model.input_backward(node_flow, ctx.data, scale, stats=em)]
            else:
                din = [scale[None, :] * node_flow[ly.node_start: ly.node_start + ly.n]
                       for ly in model.plan.input_layers]
            if em:
                model.sum_flows += pflows[1] if len(pflows) > 1 else pflows[0]
            dlogw = pflows[0] if dlogw is None else dlogw + pflows[0]
            dins = din if not dins else [a + b for a, b in zip(dins, din)]
        if model.track_flows and not em:  # the EM statistics: root flow 1 each
            ones = torch.ones_like(pieces[0][0])
            em_flow, pf = model.run_backward(node, logw, ones, track_em=True, elems=ctx.elems)
            model.sum_flows += pf[1] if len(pf) > 1 else pf[0]
            if ctx.fused:
                model.input_backward(em_flow, ctx.data, ones, stats=True)
        ctx.elems = None
        return (None, None, None, dlogw, *dins)
