"""``TritonCircuit``: the plan's generated kernels behind a ``torch.nn.Module``.

Parameters are the plan's flat buffers in linear space: ``params`` (sum weights, float32) and
``input_params`` (input-node parameters). ``forward`` returns ``log p(x)`` per example through
a custom autograd function whose backward runs the flow kernels: gradients with respect to
both parameter buffers (``d loss / d w``), and EM statistics for :mod:`.em`. Each backward pass
records its example weights so EM sees flows with a root flow of one per example
(PyJuice's convention: the weights are normalized to average one).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from pccc.backends.triton.codegen import load_module
from pccc.backends.triton.inputs import input_grads
from pccc.backends.triton.runtime import DevicePlan
from pccc.ir.plan import KernelPlan


class _Eval(torch.autograd.Function):
    @staticmethod
    def forward(ctx, model: TritonCircuit, x: Tensor, missing: Tensor | None,  # type: ignore
                params: Tensor, input_params: Tensor) -> Tensor:
        batch = x.shape[0]
        dp = model.dp
        xt, mt, stride = dp.prepare_inputs(x, missing)
        node = model._buffer("node", dp.rows, stride)
        dp.forward(xt, mt, batch, params.detach(), input_params.detach(), node)
        ctx.model, ctx.batch = model, batch
        ctx.save_for_backward(xt, mt)
        return node[dp.plan.root_slot, :batch].clone()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        model: TritonCircuit = ctx.model
        xt, mt = ctx.saved_tensors
        model.run_backward(xt, mt, ctx.batch, grad.contiguous().float())
        return None, None, None, model.last_param_grad, model.last_input_grad


class TritonCircuit(nn.Module):
    """A compiled circuit whose layers run generated Triton kernels.

    Args:
        plan: the L3 plan.
        device: where parameters and buffers live ("cuda", or "cpu" under
            ``TRITON_INTERPRET=1``).
        precision: ``"tf32"`` (default: float32 buffers, tf32 tensor-core tiles), ``"fp32"``
            (full float32 tiles) or ``"bf16"`` (bfloat16 tile operands, float32 accumulation).
    """

    def __init__(self, plan: KernelPlan, *, device: str | torch.device = "cuda",
                 precision: str = "tf32"):
        super().__init__()
        self.plan = plan
        self.precision = precision
        self.device_ = torch.device(device)
        self.kernels, self.source, self.source_path = load_module(plan, precision)
        self.dp = DevicePlan(plan, self.kernels, self.device_)
        self.params = nn.Parameter(torch.tensor(plan.params, dtype=torch.float32,
                                                device=self.device_))
        self.input_params = nn.Parameter(torch.tensor(plan.input_params, dtype=torch.float32,
                                                      device=self.device_))
        self._bufs: dict[str, Tensor] = {}
        self.last_param_grad: Tensor | None = None
        self.last_input_grad: Tensor | None = None
        self.last_counts: Tensor | None = None
        self.last_nstats: list[Tensor] = []
        self.last_norm: Tensor | None = None

    @property
    def artifacts(self) -> dict[str, str]:
        """Text of each stage: the plan summary and the generated kernel source."""
        return {"plan": self.plan.summary() + f"\n  precision: {self.precision}",
                "kernels": self.source, "kernels_path": str(self.source_path)}

    def _buffer(self, name: str, rows: int, stride: int) -> Tensor:
        """A reused ``[rows, stride]`` float32 buffer (reallocated when the batch grows)."""
        buf = self._bufs.get(name)
        if buf is None or buf.shape != (rows, stride):
            buf = torch.empty((rows, stride), dtype=torch.float32, device=self.device_)
            self._bufs[name] = buf
        return buf

    def forward(self, x: Tensor, missing: Tensor | None = None) -> Tensor:
        """``log p(x)`` per example, ``[batch]`` float32 (missing: ``-1``/NaN or the mask)."""
        return _Eval.apply(self, x, missing, self.params, self.input_params)

    def run_backward(self, xt: Tensor, mt: Tensor, batch: int, weight: Tensor) -> None:
        """Flows for the last forward pass; ``weight [batch]`` weighs each example."""
        dp = self.dp
        node = self._bufs["node"]
        stride = node.shape[1]
        flow = self._buffer("flow", dp.rows, stride)
        scale = torch.zeros(stride, dtype=torch.float32, device=self.device_)
        scale[:batch] = weight
        pgrad = torch.zeros_like(self.params)
        counts = torch.zeros_like(self.input_params)
        nstats = [torch.zeros((ly.n, 4), dtype=torch.float32, device=self.device_)
                  for ly in self.plan.input_layers]
        dp.backward(node, flow, scale, batch, self.params.detach(), pgrad, xt, mt, counts,
                    nstats)
        self.last_param_grad = pgrad
        self.last_counts, self.last_nstats = counts, nstats
        self.last_input_grad = input_grads(self.plan, dp, self.input_params.detach(), counts,
                                           nstats)
        # EM reads flows with root flow 1 per example: undo the weights' common scale
        self.last_norm = (batch / weight.sum()).reshape(1)

    def node_flows(self, batch: int) -> np.ndarray:
        """Node flows ``[num_node_slots, batch]`` of the last backward pass (for tests)."""
        return self._bufs["flow"][: self.plan.num_node_slots, :batch].cpu().numpy()

    def node_values(self, batch: int) -> np.ndarray:
        """Node log-values ``[num_node_slots, batch]`` of the last forward pass."""
        return self._bufs["node"][: self.plan.num_node_slots, :batch].cpu().numpy()
