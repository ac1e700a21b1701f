"""``CompiledCircuit``: a :class:`~pccc.ir.plan.KernelPlan` as a ``torch.nn.Module``.

Parametrization (what ``torch.optim`` sees; see ``docs/usage.md``):

- ``sum_logits``: flat ``nn.Parameter`` over the plan's weight buffer. The weight of edge ``p``
  in normalization group ``g`` (one source sum node) is
  ``exp(sum_logits[p]) / sum_{q in g} exp(sum_logits[q]) * Z_g`` with ``Z_g`` the buffer
  ``sum_norm`` (1 for normalized circuits; it keeps unnormalized weights exactly as written).
- ``input_raw``: flat ``nn.Parameter`` over the plan's input parameters, in per-family
  unconstrained coordinates (:mod:`pccc.backends.torch.inputs`); the buffer ``input_shift``
  holds one log-normalizer per input node (layer ``i``'s nodes from ``_in_node0[i]``: a
  categorical table's total mass, 0 for normalized tables).

The forward pass (input layers included) runs under one :class:`torch.autograd.Function`
with no autograd graph over the nodes; its backward pass computes flows
(:mod:`pccc.backends.torch.layers`) and returns the exact gradients: ``d log p / d log w`` is
an edge's flow, and the input parameters' gradients follow analytically from the input nodes'
flows (:func:`pccc.backends.torch.inputs.grad_and_stats`). Backward also accumulates the EM
statistics (``sum_flows``, ``input_counts``, ``input_stats``, ``input_missflow``) with a root
flow of 1 per example, until :meth:`CompiledCircuit.zero_flows` or an EM step.

A root vector of ``n > 1`` nodes makes the output ``[batch, n]``. Its EM statistics give every
root flow 1 per example (the sum of the roots' flows); its gradients follow the upstream
gradient of each root. Where that gradient is the same for every root of an example
(``ll.sum()``, ``ll.mean()``) one backward pass computes both; otherwise the gradients take a
pass per sign with the upstream gradients as the roots' flows
(:meth:`CompiledCircuit.root_grad_pieces`) and, when flows are tracked, the EM statistics a
pass of their own.

Subclasses (the Triton backend) override :meth:`CompiledCircuit.run_forward` and
:meth:`CompiledCircuit.run_backward`; parameters, input layers, flows, EM and saving are shared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pccc.backends.reference.evaluate import Semiring
from pccc.backends.torch import inputs as fam
from pccc.backends.torch.layers import TorchProductLayer, TorchSumPartition
from pccc.backends.torch.params import ParamsMixin
from pccc.ir import dists
from pccc.ir.plan import KernelPlan, ProductLayer, SumLayer
from pccc.ir.plan_verify import check_once


@dataclass
class Batch:
    """A batch as the input layers read it: one row per variable, the batch along columns."""

    xd: Tensor
    """int64 ``[V, batch]`` values (missing: 0)"""
    xc: Tensor | None
    """float ``[V, batch]`` values for continuous families (None: the circuit has none)"""
    miss: Tensor | None
    """bool ``[V, batch]`` (None: nothing is missing in this batch)"""

    saved: dict[int, Any] = field(default_factory=dict)
    """per input layer: its rows and forward results, kept from forward to backward"""

    def rows(self, i: int, vars_: Tensor, grouped: Tensor | None = None, units: int = 0
             ) -> tuple[Tensor, Tensor, Tensor | None]:
        """(discrete, continuous, missing) ``[n, batch]`` rows of input layer ``i``'s
        variables (gathered once per batch). ``grouped``: one variable per run of ``units``
        nodes; with nothing missing the discrete rows are then a ``[runs, units, batch]``
        broadcast view, not a copy."""
        key = -1 - i
        if key not in self.saved and grouped is not None and self.miss is None:
            xd = self.xd.index_select(0, grouped)
            self.saved[key] = (xd[:, None, :].expand(xd.shape[0], units, xd.shape[1]), xd, None)
        if key not in self.saved:
            xd = self.xd.index_select(0, vars_)
            xc = xd if self.xc is None else self.xc.index_select(0, vars_)
            self.saved[key] = (xd, xc,
                               None if self.miss is None else self.miss.index_select(0, vars_))
        return self.saved[key]


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


def _dead_slots(plan: KernelPlan) -> np.ndarray:
    """Node slots no layer writes (block padding): they hold ``-inf``."""
    written = np.zeros(plan.num_node_slots, bool)
    written[0] = True
    for inp in plan.input_layers:
        written[inp.node_start: inp.node_start + inp.n] = True
    for ly in plan.sum_layers():
        for p in ly.partitions:
            written[(p.node_start[:, None] + np.arange(p.block_size)).reshape(-1)] = True
    return np.flatnonzero(~written)


class CompiledCircuit(ParamsMixin, nn.Module):
    """A compiled probabilistic circuit: ``model(x) -> log p(x)`` per example.

    Args:
        plan: the L3 plan (kept as ``model.plan``).
        device: where parameters and index tables live.
        dtype: float32 (default) or float64.

    Example::

        model = pccc.compile(circuit, backend="torch")
        ll = model(torch.tensor([[0, 1, -1]]))   # -1: missing, marginalized
        ll.mean().backward()                       # gradients + EM flows
    """

    dead_nodes: Tensor
    flow_zero_rows: Tensor
    #: build the torch layers (index tables on the device) and the dense group tables; a
    #: backend that runs its own kernels and overrides the methods using them turns this off
    torch_layers = True

    def __init__(self, plan: KernelPlan, *, device: Any = None, dtype: Any = torch.float32):
        super().__init__()
        check_once(plan)  # (no table is read before the plan's structure is checked)
        self.plan = plan
        self.root_slot = plan.root_slot
        self.num_roots = plan.num_roots
        self.track_flows = True
        #: keep the product layers' values from forward to backward (else recomputed)
        self.keep_elements = True
        self.source_circuit: Any = None
        self.pipeline: str | None = None
        self.backend_name = "torch"
        self.num_vars = plan.num_vars
        self.product_layers = nn.ModuleList()
        self.sum_layers = nn.ModuleList()
        self._continuous = any(dists.get(ly.dist).continuous for ly in plan.input_layers)
        #: the continuous variables, whose -1 is a value (missing: NaN only)
        self._cont_vars = np.zeros(plan.num_vars, dtype=bool)
        for il in plan.input_layers:
            if dists.get(il.dist).continuous:
                self._cont_vars[np.asarray(il.vars, dtype=np.int64)] = True
        if self.torch_layers:
            for ly in plan.layers:
                if isinstance(ly, ProductLayer):
                    self.product_layers.append(TorchProductLayer(ly))
                else:
                    assert isinstance(ly, SumLayer)
                    self.sum_layers.append(nn.ModuleList(
                        TorchSumPartition(p, plan.param_group) for p in ly.partitions))
            self.register_buffer("dead_nodes", torch.from_numpy(_dead_slots(plan)),
                                 persistent=False)
            self.register_buffer("flow_zero_rows", torch.from_numpy(self._plan_flow_writes()),
                                 persistent=False)
        self.init_params(plan)
        self.to(device=device, dtype=dtype)

    @property
    def artifacts(self) -> dict[str, str]:
        """Text of each stage: the plan summary."""
        return {"plan": self.plan.summary()}

    @property
    def dtype(self) -> torch.dtype:
        return self.sum_logits.dtype

    @property
    def device(self) -> torch.device:
        return self.sum_logits.device

    # ------------------------------------------------------------------ data
    def prepare(self, x: Tensor, missing: Tensor | None = None) -> Batch:
        """The batch as the input layers read it (see :class:`Batch`).

        Missing: NaN (float data), or ``-1`` on a discrete variable (on a continuous one
        ``-1.0`` is a value), unless ``missing`` is given.
        """
        x = torch.as_tensor(x, device=self.device)
        if x.dim() != 2 or x.shape[1] < self.num_vars:
            raise ValueError(f"expected data of shape [batch, {self.num_vars}], got "
                             f"{tuple(x.shape)}")
        if missing is None:
            miss = x == -1
            if self._continuous:
                cont = np.zeros(x.shape[1], dtype=bool)
                cont[: self.num_vars] = self._cont_vars
                miss = miss & ~torch.from_numpy(cont).to(x.device)
            if x.is_floating_point():
                miss = miss | torch.isnan(x)
        else:
            miss = torch.as_tensor(missing, device=self.device, dtype=torch.bool)
        any_missing = bool(miss.any())
        xt = x.t()
        xd = xt.to(torch.int64) if x.is_floating_point() else xt.long()
        xc = xt.to(self.dtype) if self._continuous else None
        if any_missing:
            mt = miss.t()
            xd = torch.where(mt, torch.zeros((), dtype=torch.int64, device=self.device), xd)
            if xc is not None:
                xc = torch.where(mt, torch.zeros((), dtype=self.dtype, device=self.device), xc)
        return Batch(xd.contiguous(), None if xc is None else xc.contiguous(),
                     miss.t().contiguous() if any_missing else None)

    # --------------------------------------------------------------- forward
    def forward(self, x: Tensor, missing: Tensor | None = None, *,
                input_logp: Tensor | None = None) -> Tensor:
        """``log p(x)`` per example, ``[batch]`` (``[batch, n]`` for a root vector of ``n > 1``
        nodes, one column per root); missing values are marginalized.

        Args:
            x: ``[batch, num_vars]`` int64 (``-1`` = missing) or float data (NaN = missing;
                ``-1`` too on a discrete variable, while on a continuous one it is a value).
            missing: optional bool mask overriding that convention.
            input_logp: optional ``[batch, num_input_nodes]`` log-probabilities fed from
                outside (e.g. a neural network), in the order of :meth:`input_nodes`; they
                replace the input distributions and receive gradients.
        """
        data = self.prepare(x, missing)
        logw = self.log_weights()
        if input_logp is None:
            return _CircuitFunction.apply(self, data, True, logw, self.input_raw)
        return _CircuitFunction.apply(self, data, False, logw, *self._split_external(input_logp))

    def _split_external(self, input_logp: Tensor) -> list[Tensor]:
        cols = input_logp.to(self.dtype).t()
        out, start = [], 0
        for ly in self.plan.input_layers:
            out.append(cols[start: start + ly.n])
            start += ly.n
        if start != cols.shape[0]:
            raise ValueError(f"input_logp has {cols.shape[0]} columns; expected {start}")
        return out

    def input_nodes(self) -> list[tuple[str, int]]:
        """``(family, variable)`` of each input node, the column order of ``input_logp``."""
        return [(ly.dist, int(v)) for ly in self.plan.input_layers for v in ly.vars]

    def data_rows(self, data: Batch, i: int) -> tuple[Tensor, Tensor, Tensor | None]:
        group = self._in_group.get(i)
        if group is None:
            return data.rows(i, getattr(self, f"in_vars{i}"))
        return data.rows(i, getattr(self, f"in_vars{i}"), getattr(self, f"in_uvars{i}"),
                         group[1])

    def input_values(self, data: Batch) -> list[Tensor]:
        """Differentiable log-values ``[n, batch]`` of each input layer (0 where missing)."""
        out = []
        for i, ly in enumerate(self.plan.input_layers):
            xd, xc, m = self.data_rows(data, i)
            raw, shift = self.layer_raw(i)
            lp = fam.log_prob(ly.dist, dict(ly.attrs), raw, shift,
                              getattr(self, f"in_values{i}", None), xd, xc, saved=data.saved,
                              key=i)
            out.append(lp if m is None else torch.where(m, torch.zeros_like(lp), lp))
        return out

    def _plan_flow_writes(self) -> np.ndarray:
        """Decide which backward writes may assign instead of add (a slot with exactly one
        writer), so that only the other slots need zeroing; returns the node rows to zero."""
        plan = self.plan
        count = np.zeros(plan.num_node_slots, np.int64)
        prods = plan.product_layers()
        for ly in prods:
            for p in ly.partitions:
                for j in range(p.children.shape[1]):
                    np.add.at(count, p.children[:, j], 1)
        count[0] = 1  # padding target: never read, may take any value
        zero = count != 1
        pairs = self.layer_pairs()
        for ly, (mod, _) in zip(prods, pairs):
            for i, p in enumerate(ly.partitions):
                for j in range(p.children.shape[1]):
                    ok = bool(np.all(count[p.children[:, j]] == 1))
                    mod.copy_flow[(i, j)] = ok
                    if not ok:
                        zero[p.children[:, j]] = True
        zero[0] = True
        for mod, parts in pairs:
            ecount = np.zeros(mod.num_elem_slots, np.int64)
            for part in parts:
                np.add.at(ecount, part.elem_idx.numpy(), 1)
            ezero = ecount != 1
            for part in parts:
                idx = part.elem_idx.numpy()
                part.copy_elem_flow = bool(np.all(ecount[idx] == 1))
                if not part.copy_elem_flow:
                    ezero[idx] = True
            mod.flow_zero_rows = torch.from_numpy(np.flatnonzero(ezero))
        return np.flatnonzero(zero)

    def layer_pairs(self) -> list[tuple[TorchProductLayer, list[TorchSumPartition]]]:
        """(product layer, its sum partitions) in evaluation order."""
        return [(prod, list(parts))  # type: ignore[misc, call-overload]
                for prod, parts in zip(self.product_layers, self.sum_layers)]

    def root_output(self, node: Tensor) -> Tensor:
        """The roots' rows of a node buffer ``[slots, batch]`` as the module's output (a new
        tensor): ``[batch]`` for one root, ``[batch, num_roots]`` for several."""
        if self.num_roots == 1:
            return node[self.root_slot].clone()
        return node[self.root_slot: self.root_slot + self.num_roots].t().contiguous()

    def root_grad_pieces(self, grad: Tensor) -> list[tuple[Tensor, Tensor | None]]:
        """The backward passes that the upstream gradient of :meth:`root_output` takes, as
        ``(scale, root_flow)``: the per-example weight of the flows ``[batch]`` and the roots'
        flows ``[num_roots, batch]`` (None: 1 for every root). The gradients of the passes
        add up. One pass with root flows 1 where the gradient is the same for every root of
        an example (``ll.sum()``, ``ll.mean()``); else one pass per sign (flows are never
        negative): the positive part with ``scale`` 1, the negative one with ``scale`` -1."""
        if grad.dim() == 1:
            return [(grad, None)]
        if bool((grad == grad[:, :1]).all()):  # (the usual case)
            return [(grad[:, 0].contiguous(), None)]
        pieces: list[tuple[Tensor, Tensor | None]] = []
        for sign in (1.0, -1.0):
            part = (grad * sign).clamp_min(0.0)
            if bool((part > 0).any()):
                pieces.append((torch.full_like(grad[:, 0], sign), part.t().contiguous()))
        return pieces

    def run_forward(self, logw: Tensor, in_vals: list[Tensor],
                    keep: list[Tensor] | None = None, semiring: Semiring = "sum") -> Tensor:
        """The node buffer ``[num_node_slots, batch]`` (no autograd). Overridable.

        ``keep``: a list that receives each product layer's element buffer, so the backward
        pass need not recompute them (``keep_elements``; memory for time). ``semiring``:
        ``"sum"`` (log-likelihoods) or ``"max"`` (max-product, for MPE: sums take their
        largest weighted child; the input values are the caller's, see :mod:`pccc.query`).
        """
        batch = in_vals[0].shape[1] if in_vals else 1
        node = logw.new_empty((self.plan.num_node_slots, batch))
        node.index_fill_(0, self.dead_nodes, -math.inf)
        node[0] = 0.0
        for ly, v in zip(self.plan.input_layers, in_vals):
            node[ly.node_start: ly.node_start + ly.n] = v
        w = torch.exp(logw) if semiring == "sum" else logw
        for prod, parts in self.layer_pairs():
            elem = prod(node)
            for part in parts:
                part(elem, w, node, semiring)
            if keep is not None:
                keep.append(elem)
        return node

    def run_backward(self, node: Tensor, logw: Tensor, grad: Tensor, *, track_em: bool,
                     elems: list[Tensor] | None = None, root_flow: Tensor | None = None
                     ) -> tuple[Tensor, list[Tensor]]:
        """Node flows ``[slots, batch]`` (root flow 1) and parameter flows. Overridable.

        ``elems``: the element buffers kept by :meth:`run_forward` (else recomputed).
        ``grad``: ``[batch]`` weights of the examples in the gradient. ``root_flow``: the
        roots' flows ``[num_roots, batch]`` (default: 1 each; the EM flows follow them too).

        Returns ``(node_flow, [grad w.r.t. log-weights, EM flows])`` (the second only when
        ``track_em``).
        """
        rows = slice(self.root_slot, self.root_slot + self.num_roots)
        node_flow = torch.empty_like(node)
        node_flow.index_fill_(0, self.flow_zero_rows, 0.0)
        live = torch.isfinite(node[rows]).to(node.dtype)
        node_flow[rows] = live if root_flow is None else live * root_flow.to(node.dtype)
        # a uniform upstream gradient (ll.sum(), ll.mean()) scales the EM flows: one reduction
        uniform = track_em and bool((grad == grad[:1]).all())
        gws: list[Tensor | None] = [None] if uniform else [grad]
        if track_em and not uniform:
            gws.append(None)
        pflows = [torch.zeros_like(logw) for _ in gws]
        w = torch.exp(logw)
        pairs = self.layer_pairs()
        for k in range(len(pairs) - 1, -1, -1):
            prod, parts = pairs[k]
            elem = elems[k] if elems else prod(node)
            elem_flow = torch.empty_like(elem)
            elem_flow.index_fill_(0, prod.flow_zero_rows, 0.0)
            for part in parts:
                part.backward_flows(elem, w, node, node_flow, elem_flow, gws, pflows)
            prod.backward_flows(elem_flow, node_flow)
        if uniform:
            pflows = [pflows[0] * grad[0], pflows[0]]
        return node_flow, pflows

    # ------------------------------------------------------------------ flows
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

    def em_statistics(self) -> list[Tensor]:
        """The EM statistics accumulated since the last EM step, the tensors :meth:`em_step`
        reads: edits in place (a sum over processes, :mod:`pccc.distributed`) reach it."""
        return [self.sum_flows, self.input_stats, self.input_counts, self.input_missflow]

    def zero_flows(self) -> None:
        """Forget the EM statistics accumulated since the last EM step."""
        self.sum_flows.zero_()
        self.input_stats.zero_()
        self.input_counts.zero_()
        self.input_missflow.zero_()
