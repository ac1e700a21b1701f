"""``TritonCompiledCircuit``: the torch backend's :class:`CompiledCircuit` with its sum and
product layers replaced by the generated Triton kernels.

Parameters (``sum_logits``, ``input_raw``), the autograd function, input layers, EM statistics,
``MiniBatchEM``/``FullBatchEM`` and saving are the torch backend's; this class overrides
:meth:`run_forward` and :meth:`run_backward` only. The node buffer is ``[slots + 1, stride]``
(``stride``: the batch rounded up to whole column tiles; the extra row holds ``-inf``); the
methods hand the torch backend ``[:slots, :batch]`` views of it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from pccc.backends.torch.module import CompiledCircuit
from pccc.backends.triton.codegen import load_module
from pccc.backends.triton.runtime import DevicePlan
from pccc.ir.plan import KernelPlan


class TritonCompiledCircuit(CompiledCircuit):
    """A compiled circuit whose sum layers (products fused in) run generated Triton kernels.

    Args:
        plan: the L3 plan.
        device: ``"cuda"`` (or ``"cpu"`` under ``TRITON_INTERPRET=1``).
        precision: ``"tf32"`` (default), ``"fp32"`` or ``"bf16"`` tile operands; buffers and
            accumulation are float32 in every mode.
    """

    def __init__(self, plan: KernelPlan, *, device: Any = "cuda", precision: str = "tf32"):
        super().__init__(plan, device=device, dtype=torch.float32)
        self.backend_name = "triton"
        self.precision = precision
        self.kernels, self.source, self.source_path = load_module(plan, precision)
        self.dp = DevicePlan(plan, self.kernels, torch.device(device))
        self._bufs: dict[str, Tensor] = {}
        self.keep_elements = False  # the kernels fuse products: nothing to keep
        self._runs = [torch.from_numpy(a).to(self.device) for a in group_runs(plan.param_group)]

    @property
    def artifacts(self) -> dict[str, str]:
        """Text of each stage: the plan summary (with the precision) and the kernel source."""
        return {"plan": self.plan.summary() + f"\n  precision: {self.precision}",
                "kernels": self.source, "kernels_path": str(self.source_path)}

    def _buffer(self, name: str, stride: int) -> Tensor:
        buf = self._bufs.get(name)
        if buf is None or buf.shape != (self.dp.rows, stride) or buf.device != self.device:
            buf = torch.empty((self.dp.rows, stride), dtype=torch.float32, device=self.device)
            self._bufs[name] = buf
        return buf

    def run_forward(self, logw: Tensor, in_vals: list[Tensor],
                    keep: list[Tensor] | None = None) -> Tensor:
        """The node buffer view ``[slots, batch]``; ``keep`` is ignored (no element buffers:
        the kernels recompute elements from node values)."""
        batch = in_vals[0].shape[1] if in_vals else 1
        stride = DevicePlan.stride_for(batch)
        node = self._buffer("node", stride)
        node.fill_(float("-inf"))
        node[0].zero_()
        for ly, v in zip(self.plan.input_layers, in_vals):
            node[ly.node_start: ly.node_start + ly.n, :batch] = v
        w = torch.exp(logw.float())
        self.dp.sum_forward(node, batch, w)
        return node[: self.plan.num_node_slots, :batch]

    def run_backward(self, node: Tensor, logw: Tensor, grad: Tensor, *, track_em: bool,
                     elems: list[Tensor] | None = None) -> tuple[Tensor, list[Tensor]]:
        batch = node.shape[1]
        full = self._bufs["node"]
        stride = full.shape[1]
        flow = self._buffer("flow", stride)
        scale = torch.zeros(stride, dtype=torch.float32, device=self.device)
        scale[:batch] = grad
        w = torch.exp(logw.float())
        pgrad = torch.zeros_like(w)
        # the usual loss (a mean or sum of log-likelihoods) weighs every example alike: then
        # the EM flows are the weight gradients up to that constant, and one pass gives both
        uniform = track_em and bool((grad == grad[0]).all()) and float(grad[0]) != 0.0
        pflow = torch.zeros_like(w) if track_em and not uniform else None
        self.dp.sum_backward(full, flow, scale, batch, w, pgrad, pflow)
        dlogw = w * pgrad
        out = [dlogw.to(logw.dtype)]  # d loss / d log w
        if track_em:
            out.append(pflow if pflow is not None else dlogw / float(grad[0]))
        return flow[: self.plan.num_node_slots, :batch], out

    def group_sums(self, x: Tensor) -> Tensor:
        """``[num_groups + 1]`` per-group sums of flat weight values (last: padding, 0)."""
        out = torch.zeros_like(self.sum_norm, dtype=torch.float32)
        start, length, group = self._runs
        nruns = start.numel()
        if nruns:
            self.kernels.segment_sums[(-(-nruns // 64),)](
                x.float().contiguous(), start, length, group, out, nruns, RUNS=64,
                MAXLEN=RUN_MAX)
        return out.to(self.sum_norm.dtype)

    def log_weights(self) -> Tensor:
        """``ParamsMixin.log_weights`` with an analytic backward (log-softmax per group by
        :meth:`group_sums`): its autograd backward adds the padding of the dense
        ``[groups, widest group]`` view into one element, millions of atomics on one address
        where group sizes vary (PD)."""
        return _LogWeights.apply(self.sum_logits, self)


class _LogWeights(torch.autograd.Function):
    """``sum_logits -> log w`` per group: ``log_softmax + log Z_g``; backward
    ``g - softmax * (sum of g over the group)``."""

    @staticmethod
    def forward(ctx, raw: Tensor, model: TritonCompiledCircuit) -> Tensor:  # type: ignore
        with torch.no_grad():
            logw = CompiledCircuit.log_weights(model)
        ctx.model = model
        ctx.save_for_backward(logw)
        return logw

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        model = ctx.model
        (logw,) = ctx.saved_tensors
        group = model.sum_group
        real = torch.isfinite(logw)
        g = torch.where(real, g, 0.0)
        p = torch.where(real, torch.exp(logw - model.sum_norm[group]), 0.0)
        return g - p * model.group_sums(g).to(g.dtype)[group], None


#: longest run one program sums (longer runs are split)
RUN_MAX = 64


def group_runs(param_group: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of consecutive weights of one group (padding left out), at most ``RUN_MAX`` long:
    int32 (start, length, group)."""
    g = np.asarray(param_group)
    n = len(g)
    if n == 0:
        return (np.zeros(0, np.int32),) * 3  # type: ignore[return-value]
    cut = np.flatnonzero(np.diff(g) != 0) + 1
    start = np.concatenate([[0], cut])
    end = np.concatenate([cut, [n]])
    keep = g[start] >= 0
    start, end = start[keep], end[keep]
    pieces = -(-(end - start) // RUN_MAX)
    first = np.repeat(start, pieces)
    k = np.arange(pieces.sum()) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    s = first + k * RUN_MAX
    ln = np.minimum(RUN_MAX, np.repeat(end, pieces) - s)
    return s.astype(np.int32), ln.astype(np.int32), g[s].astype(np.int32)
