"""The torch backend's executor: index tables and batched tensor ops; runs on CPU and GPU.

:class:`TorchExecutor` computes a :class:`~pccc.backends.module.CompiledCircuit`'s passes with
the torch layers (:mod:`pccc.backends.torch.layers`), whose index tables it registers on the
module (``product_layers``, ``sum_layers`` and a few buffers: ``model.to(device)`` moves
them). The forward pass (input layers included) runs under one
:class:`torch.autograd.Function` with no autograd graph over the nodes; its backward pass
computes flows and returns the exact gradients: ``d log p / d log w`` is an edge's flow, and
the input parameters' gradients follow analytically from the input nodes' flows
(:func:`pccc.backends.torch.inputs.grad_and_stats`). The sum weights are normalized per group
by one ``log_softmax`` over a dense ``[groups, Kmax]`` layout.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from pccc.backends.executor import Executor
from pccc.backends.module import _CircuitFunction
from pccc.backends.reference.evaluate import Semiring
from pccc.backends.torch import families  # noqa: F401  (registers the families)
from pccc.backends.torch import inputs as fam
from pccc.backends.torch.layers import TorchProductLayer, TorchSumPartition
from pccc.ir.plan import KernelPlan, ProductLayer, SumLayer

if TYPE_CHECKING:
    from pccc.backends.module import CompiledCircuit


def _t(a: np.ndarray) -> Tensor:
    return torch.from_numpy(np.array(a, copy=True))


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


class TorchExecutor(Executor):
    """The torch backend's executor (see the module docstring)."""

    name = "torch"
    torch_layers = True

    # ---------------------------------------------------------------- making
    def init_params(self, m: CompiledCircuit, plan: KernelPlan) -> None:
        """The torch layers' tables, then ``sum_logits``, ``input_raw`` and the buffers from
        the plan's values (float64, on the host)."""
        m.product_layers = nn.ModuleList()
        m.sum_layers = nn.ModuleList()
        for ly in plan.layers:
            if isinstance(ly, ProductLayer):
                m.product_layers.append(TorchProductLayer(ly))
            else:
                assert isinstance(ly, SumLayer)
                m.sum_layers.append(nn.ModuleList(
                    TorchSumPartition(p, plan.param_group) for p in ly.partitions))
        m.register_buffer("dead_nodes", torch.from_numpy(_dead_slots(plan)), persistent=False)
        m.register_buffer("flow_zero_rows", torch.from_numpy(self._plan_flow_writes(m)),
                          persistent=False)
        num_groups = len(plan.group_size)
        group = np.where(plan.param_group >= 0, plan.param_group, num_groups)
        w = np.where(plan.param_group >= 0, plan.params, 0.0)
        z = np.zeros(num_groups + 1)
        np.add.at(z, group, w)
        with np.errstate(divide="ignore"):
            # an all-zero group keeps raw 0 and a -inf normalizer (weights 0, never NaN)
            raw = np.where((plan.param_group >= 0) & (z[group] > 0), np.log(w), 0.0)
            lognorm = np.where(z > 0, np.log(np.where(z > 0, z, 1.0)), -np.inf)
        m.sum_logits = nn.Parameter(_t(raw))
        self._init_dense_groups(m, plan.param_group, num_groups)
        m.register_buffer("sum_group", _t(group.astype(np.int64)), persistent=False)
        m.register_buffer("sum_norm", _t(lognorm))
        m.register_buffer("group_size", _t(np.append(plan.group_size, 1).astype(np.float64)),
                          persistent=False)
        m.register_buffer("sum_flows", torch.zeros(len(plan.params), dtype=torch.float64),
                          persistent=False)
        m.init_inputs(plan)

    def _init_dense_groups(self, m: CompiledCircuit, param_group: np.ndarray,
                           num_groups: int) -> None:
        """Index tables between the flat weights and a dense ``[groups, Kmax]`` layout, where
        one ``log_softmax`` normalizes every group (padding: an extra ``-inf`` entry)."""
        num = len(param_group)
        real = np.flatnonzero(param_group >= 0)
        order = real[np.argsort(param_group[real], kind="stable")]
        g = param_group[order].astype(np.int64)
        counts = np.bincount(g, minlength=num_groups)
        kmax = max(int(counts.max(initial=1)), 1)
        first = np.concatenate([[0], np.cumsum(counts)[:-1]]) if num_groups else np.zeros(0, int)
        rank = np.arange(len(order)) - first[g]
        dense = np.full((num_groups, kmax), num, np.int64)
        dense[g, rank] = order
        pos = np.full(num, num_groups * kmax, np.int64)
        pos[order] = g * kmax + rank
        m.register_buffer("dense_idx", _t(dense.reshape(-1)), persistent=False)
        m.register_buffer("dense_pos", _t(pos), persistent=False)
        self._dense_shape = (num_groups, kmax)

    def input_values(self, m: CompiledCircuit, plan: KernelPlan) -> tuple[Tensor, Tensor]:
        """``input_raw`` and ``input_shift`` from the plan's native input parameters: float64,
        on the host."""
        q = len(plan.input_params)
        raw = np.zeros(q)
        shift = np.zeros(max(sum(ly.n for ly in plan.input_layers), 1))
        for i, ly in enumerate(plan.input_layers):
            if not ly.param_size:
                continue
            size, span = m._in_size[i], m._in_span[i]
            if span is not None:  # slices, not fancy indexing (51M parameters for PD-256)
                a, b = span[0], span[0] + span[1]
                r, s = fam.to_raw(ly.dist, plan.input_params[a:b].reshape(ly.n, size))
                raw[a:b] = r.reshape(-1)
            else:
                pidx = np.asarray(ly.param_start, np.int64)[:, None] + np.arange(size)
                r, s = fam.to_raw(ly.dist, plan.input_params[pidx])
                raw[pidx] = r
            n0 = m._in_node0[i]
            shift[n0: n0 + ly.n] = s[:, 0]
        # raw and shift are this function's own arrays: shared with torch, not copied
        return torch.from_numpy(raw if q else np.zeros(1)), torch.from_numpy(shift)

    def _plan_flow_writes(self, m: CompiledCircuit) -> np.ndarray:
        """Decide which backward writes may assign instead of add (a slot with exactly one
        writer), so that only the other slots need zeroing; returns the node rows to zero."""
        plan = m.plan
        count = np.zeros(plan.num_node_slots, np.int64)
        prods = plan.product_layers()
        for ly in prods:
            for p in ly.partitions:
                for j in range(p.children.shape[1]):
                    np.add.at(count, p.children[:, j], 1)
        count[0] = 1  # padding target: never read, may take any value
        zero = count != 1
        pairs = self.layer_pairs(m)
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


    def layer_pairs(self, m: CompiledCircuit
                    ) -> list[tuple[TorchProductLayer, list[TorchSumPartition]]]:
        """(product layer, its sum partitions) in evaluation order."""
        return [(prod, list(parts))  # type: ignore[misc, call-overload]
                for prod, parts in zip(m.product_layers, m.sum_layers)]

    # --------------------------------------------------------------- passes
    def forward(self, m: CompiledCircuit, x: Tensor, missing: Tensor | None) -> Tensor:
        data = m.prepare(x, missing)
        return _CircuitFunction.apply(m, data, True, m.log_weights(), m.input_raw)

    def run_forward(self, m: CompiledCircuit, logw: Tensor, in_vals: list[Tensor],
                    keep: list[Tensor] | None = None, semiring: Semiring = "sum") -> Tensor:
        """The node buffer ``[num_node_slots, batch]`` (no autograd).

        ``keep``: a list that receives each product layer's element buffer, so the backward
        pass need not recompute them (``keep_elements``; memory for time). ``semiring``:
        ``"sum"`` (log-likelihoods) or ``"max"`` (max-product, for MPE: sums take their
        largest weighted child; the input values are the caller's, see :mod:`pccc.query`).
        """
        batch = in_vals[0].shape[1] if in_vals else 1
        node = logw.new_empty((m.plan.num_node_slots, batch))
        node.index_fill_(0, m.dead_nodes, -math.inf)
        node[0] = 0.0
        for ly, v in zip(m.plan.input_layers, in_vals):
            node[ly.node_start: ly.node_start + ly.n] = v
        w = torch.exp(logw) if semiring == "sum" else logw
        for prod, parts in self.layer_pairs(m):
            elem = prod(node)
            for part in parts:
                part(elem, w, node, semiring)
            if keep is not None:
                keep.append(elem)
        return node

    def run_backward(self, m: CompiledCircuit, node: Tensor, logw: Tensor, grad: Tensor, *,
                     track_em: bool, elems: list[Tensor] | None = None,
                     root_flow: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        """Node flows ``[slots, batch]`` (root flow 1) and parameter flows.

        ``elems``: the element buffers kept by :meth:`run_forward` (else recomputed).
        ``grad``: ``[batch]`` weights of the examples in the gradient. ``root_flow``: the
        roots' flows ``[num_roots, batch]`` (default: 1 each; the EM flows follow them too).

        Returns ``(node_flow, [grad w.r.t. log-weights, EM flows])`` (the second only when
        ``track_em``).
        """
        rows = slice(m.root_slot, m.root_slot + m.num_roots)
        node_flow = torch.empty_like(node)
        node_flow.index_fill_(0, m.flow_zero_rows, 0.0)
        live = torch.isfinite(node[rows]).to(node.dtype)
        node_flow[rows] = live if root_flow is None else live * root_flow.to(node.dtype)
        # a uniform upstream gradient (ll.sum(), ll.mean()) scales the EM flows: one reduction
        uniform = track_em and bool((grad == grad[:1]).all())
        gws: list[Tensor | None] = [None] if uniform else [grad]
        if track_em and not uniform:
            gws.append(None)
        pflows = [torch.zeros_like(logw) for _ in gws]
        w = torch.exp(logw)
        pairs = self.layer_pairs(m)
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

    # ----------------------------------------------------------- parameters
    def log_weights(self, m: CompiledCircuit) -> Tensor:
        raw = m.sum_logits
        neg = raw.new_full((1,), -math.inf)
        dense = torch.cat([raw, neg]).index_select(0, m.dense_idx).view(self._dense_shape)
        logw = torch.log_softmax(dense, dim=1) + m.sum_norm[:-1, None]
        return torch.cat([logw.reshape(-1), neg]).index_select(0, m.dense_pos)

    def group_sums(self, m: CompiledCircuit, x: Tensor) -> Tensor:
        return torch.zeros_like(m.sum_norm).index_add(0, m.sum_group, x.to(m.sum_norm))

    @torch.no_grad()
    def set_weights(self, m: CompiledCircuit, w: Tensor) -> None:
        real = m.sum_group < m.sum_norm.shape[0] - 1
        w = torch.where(real, w.to(m.sum_logits.dtype), torch.zeros_like(w))
        z = self.group_sums(m, w)
        live = real & (z[m.sum_group] > 0)
        m.sum_logits.copy_(torch.where(live, torch.log(w), torch.zeros_like(w)))
        m.sum_norm.copy_(torch.where(z > 0, torch.log(torch.where(z > 0, z, 1.0)),
                                     torch.full_like(z, -math.inf)))

    @torch.no_grad()
    def current_weights(self, m: CompiledCircuit) -> np.ndarray:
        return torch.exp(m.log_weights()).detach().cpu().double().numpy()

    # ------------------------------------------------------------------- EM
    @torch.no_grad()
    def em_step(self, m: CompiledCircuit, step_size: float, pseudocount: float) -> None:
        eta, alpha = step_size, pseudocount
        group = m.sum_group
        w = torch.exp(m.log_weights())
        f = m.sum_flows.to(w.dtype)
        den = self.group_sums(m, f)[group] + alpha
        ok = den > 0
        target = (f + alpha / m.group_size.to(w.dtype)[group]) / torch.where(
            ok, den, torch.ones_like(den))
        self.set_weights(m, torch.where(ok, (1 - eta) * w + eta * target, w))
        self._em_inputs(m, eta, alpha)
        self.zero_flows(m)

    def _em_inputs(self, m: CompiledCircuit, eta: float, alpha: float) -> None:
        updates = []
        stats = m.input_stats.to(m.input_raw.dtype)
        for i, ly in enumerate(m.plan.input_layers):
            if not ly.param_size:
                continue
            pidx = getattr(m, f"in_pidx{i}")
            native = fam.to_native(ly.dist, *m.layer_raw(i))
            counts = m.input_counts.to(native.dtype)
            st = counts[pidx] if fam.stats_are_counts(ly.dist) else stats[pidx[:, 0]]
            fm = m.input_missflow.to(native.dtype)[pidx[:, 0]]
            st = fam.complete_stats(ly.dist, dict(ly.attrs), native, st, fm)
            new = fam.em_update(ly.dist, native, st, eta, alpha, attrs=dict(ly.attrs))
            updates.append((i, ly.dist, pidx, new))
        for i, dist, pidx, new in updates:  # write after reading: tied nodes update once
            r, s = fam.to_raw_tensor(dist, new.detach())
            flat = pidx.reshape(-1)
            m.input_raw.index_copy_(0, flat, r.to(m.input_raw).reshape(-1))
            m.layer_shift(i).copy_(s[:, 0])

    def em_statistics(self, m: CompiledCircuit) -> list[Tensor]:
        return [m.sum_flows, m.input_stats, m.input_counts, m.input_missflow]

    def zero_flows(self, m: CompiledCircuit) -> None:
        m.sum_flows.zero_()
        m.input_stats.zero_()
        m.input_counts.zero_()
        m.input_missflow.zero_()

