"""The input layers' backward pass of a :class:`~pccc.backends.module.CompiledCircuit` run by
torch: gradients of ``input_raw`` from the input nodes' flows and the input layers' EM
statistics (see :mod:`pccc.backends.module`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from pccc.backends.batch import Batch
from pccc.backends.torch import inputs as fam
from pccc.ir.plan import KernelPlan


class InputFlowsMixin:
    """:meth:`input_backward` of :class:`CompiledCircuit`."""

    plan: KernelPlan
    track_flows: bool
    input_raw: nn.Parameter
    input_stats: Tensor
    input_counts: Tensor
    input_missflow: Tensor
    _in_span: dict[int, tuple[int, int] | None]
    data_rows: Any
    layer_raw: Any

    def input_backward(self, node_flow: Tensor, data: Batch, grad: Tensor, *,
                       stats: bool | None = None) -> Tensor:
        """Gradient w.r.t. ``input_raw`` from the input nodes' flows; also adds the EM
        statistics of the input layers when ``stats`` (default: ``track_flows``)."""
        stats = self.track_flows if stats is None else stats
        uniform = bool((grad == grad[:1]).all()) if grad.numel() else True
        g: Tensor | float = float(grad[0]) if uniform and grad.numel() else grad
        layers = [i for i, ly in enumerate(self.plan.input_layers) if ly.param_size]
        whole = (len(layers) == 1 and self._in_span.get(layers[0]) == (0, self.input_raw.numel()))
        out = None if whole else torch.zeros_like(self.input_raw)
        with torch.no_grad():
            for i, ly in enumerate(self.plan.input_layers):
                if ly.param_size == 0:
                    continue
                xd, xc, m = self.data_rows(data, i)
                flow = node_flow[ly.node_start: ly.node_start + ly.n]
                raw, _ = self.layer_raw(i)
                gr, st, fm = fam.grad_and_stats(ly.dist, dict(ly.attrs), raw, flow, g, xd, xc, m,
                                                log_table=data.saved.get(i))
                pidx = getattr(self, f"in_pidx{i}")
                span = self._in_span.get(i)
                if out is None:  # one untied layer owns all of input_raw
                    out = gr.reshape(-1)
                elif span is not None:
                    out[span[0]: span[0] + span[1]] += gr.reshape(-1)
                else:
                    out.index_add_(0, pidx.reshape(-1), gr.reshape(-1))
                if stats:
                    self._add_input_stats(ly.dist, pidx, span, st, fm)
        return torch.zeros_like(self.input_raw) if out is None else out

    def _add_input_stats(self, dist: str, pidx: Tensor, span: tuple[int, int] | None,
                         st: Tensor, fm: Tensor | None) -> None:
        if fam.stats_are_counts(dist):
            if span is not None:
                self.input_counts[span[0]: span[0] + span[1]] += st.reshape(-1)
            else:
                self.input_counts.index_add_(0, pidx.reshape(-1), st.reshape(-1))
        else:
            flat = pidx[:, :1] * 3 + torch.arange(3, device=pidx.device)
            self.input_stats.view(-1).index_add_(0, flat.reshape(-1), st.reshape(-1))
        if fm is not None:
            self.input_missflow.index_add_(0, pidx[:, 0], fm)
