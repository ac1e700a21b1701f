"""The Triton executor's passes over input values fed from outside (``input_logp``, queries):
the sum kernels alone, on the node buffer (see
:class:`~pccc.backends.triton.compiled.TritonExecutor`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from pccc.backends.reference.evaluate import Semiring
from pccc.backends.triton.runtime import DevicePlan

if TYPE_CHECKING:
    from pccc.backends.module import CompiledCircuit


class ExternalInputs:
    """The executor's :meth:`run_forward` and :meth:`run_backward`."""

    dp: DevicePlan
    _ext_w: Tensor
    _stamp: int
    _batch: int
    _static: Any
    _flow: Any

    def run_forward(self, m: CompiledCircuit, logw: Tensor, in_vals: list[Tensor],
                    keep: list[Tensor] | None = None, semiring: Semiring = "sum") -> Tensor:
        """The node buffer view ``[slots, batch]`` for input values fed from outside. The
        kernels compute the sum-product semiring only: :mod:`pccc.query` runs max-product
        (MPE) and sampling of a Triton module through the torch backend on the same plan."""
        if semiring != "sum":
            raise NotImplementedError("the Triton kernels compute sum-product only")
        batch = in_vals[0].shape[1] if in_vals else 1
        b = self._static(m, batch)
        for ly, v in zip(m.plan.input_layers, in_vals):
            b.node[ly.node_start: ly.node_start + ly.n, :batch] = v
        self._ext_w = torch.exp(logw.float())
        self.dp.sum_forward(b.node, batch, self._ext_w)
        self._stamp += 1
        self._batch = batch
        return b.node[: m.plan.num_node_slots, :batch]

    def run_backward(self, m: CompiledCircuit, node: Tensor, logw: Tensor, grad: Tensor, *,
                     track_em: bool, elems: list[Tensor] | None = None,
                     root_flow: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        batch = node.shape[1]
        b = self._static(m, batch)
        w = self._ext_w
        b.scale[:batch] = grad
        uniform = bool((grad == grad[0]).all()) and float(grad[0]) != 0.0
        b.flag.fill_(int(track_em and not uniform))
        em = torch.zeros_like(w)
        pgrad = torch.zeros_like(w)
        flow = self._flow(b)
        self.dp.sum_backward(b.node, flow, b.scale, b.flag, batch, w, pgrad, em,
                             root_flow=None if root_flow is None else root_flow.float())
        dlogw = w * pgrad
        out = [dlogw.to(logw.dtype)]
        if track_em:
            out.append(em if not uniform else dlogw / float(grad[0]))
        return flow[: m.plan.num_node_slots, :batch], out
