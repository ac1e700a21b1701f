"""The plan's product and sum partitions as small modules holding their index tables.

Index tables are built once from the :class:`~pccc.ir.plan.KernelPlan` and registered as
(non-persistent) buffers, so ``model.to(device)`` moves them. Buffers are ``[slots, batch]``:
one row per node or element slot, the batch along the last dimension.

The forward pass of a sum block computes ``log(W @ exp(e - m)) + m`` with ``m`` the per-example
maximum over the block's real element columns (a batched matrix product, not a ``[rows, cols,
batch]`` tensor). The backward pass computes flows the same way: for block rows ``r`` with
values ``s_r`` and flows ``f_r``, the element flows are
``exp(e_k + Q) * sum_r W[r, k] exp(log f_r - s_r - Q)`` and the parameter flows
``W[r, k] * sum_b exp(log f_rb - s_rb - Q_b) * exp(e_kb + Q_b)``, with ``Q`` the per-example
maximum of ``log f - s``. Slots without flow or with value ``-inf`` contribute exact zeros.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from pccc.ir.plan import ProductLayer, SumPartition


def _buf(a: np.ndarray) -> Tensor:
    return torch.from_numpy(np.array(a, dtype=np.int64, copy=True))


class TorchProductLayer(nn.Module):
    """``element[elem_start + e] = sum_j node[children[e, j]]`` for each partition."""

    def __init__(self, layer: ProductLayer):
        super().__init__()
        self.num_elem_slots = layer.num_elem_slots
        self.reserved = layer.reserved
        self.starts = [p.elem_start for p in layer.partitions]
        self.sizes = [p.children.shape for p in layer.partitions]
        for i, p in enumerate(layer.partitions):
            self.register_buffer(f"children{i}", _buf(p.children.reshape(-1)), persistent=False)

    def children_of(self, i: int) -> Tensor:
        return getattr(self, f"children{i}")

    def forward(self, node: Tensor) -> Tensor:
        """The element buffer ``[num_elem_slots, batch]`` (unwritten slots hold ``-inf``)."""
        batch = node.shape[1]
        elem = node.new_full((self.num_elem_slots, batch), -math.inf)
        for i, (start, (num, fanin)) in enumerate(zip(self.starts, self.sizes)):
            vals = node.index_select(0, self.children_of(i)).view(num, fanin, batch).sum(1)
            elem[start: start + num] = vals
        return elem

    def backward_flows(self, elem_flow: Tensor, node_flow: Tensor) -> None:
        """Add each element's flow to every one of its children (in place)."""
        batch = node_flow.shape[1]
        for i, (start, (num, fanin)) in enumerate(zip(self.starts, self.sizes)):
            ef = elem_flow[start: start + num]
            src = ef.unsqueeze(1).expand(num, fanin, batch).reshape(num * fanin, batch)
            node_flow.index_add_(0, self.children_of(i), src)


class TorchSumPartition(nn.Module):
    """One sum partition: ``nb`` blocks of ``B`` nodes over ``K = nc * C`` element columns."""

    node_idx: Tensor
    elem_idx: Tensor
    param_idx: Tensor
    real_col: Tensor

    def __init__(self, part: SumPartition, param_group: np.ndarray):
        super().__init__()
        B, C, nb, nc = part.block_size, part.chunk_size, part.num_blocks, part.max_chunks
        self.B, self.K, self.nb = B, nc * C, nb
        node_idx = part.node_start[:, None] + np.arange(B)[None, :]
        elem_idx = (part.chunk_start[:, :, None] + np.arange(C)).reshape(nb, nc * C)
        pidx = (part.param_start[:, :, None, None] + np.arange(B)[None, None, :, None] * C
                + np.arange(C)[None, None, None, :])  # [nb, nc, B, C]
        pidx = pidx.transpose(0, 2, 1, 3).reshape(nb, B, nc * C)
        real = (param_group[pidx] >= 0).any(axis=1)  # [nb, K]: columns with an edge
        self.register_buffer("node_idx", _buf(node_idx.reshape(-1)), persistent=False)
        self.register_buffer("elem_idx", _buf(elem_idx.reshape(-1)), persistent=False)
        self.register_buffer("param_idx", _buf(pidx.reshape(-1)), persistent=False)
        self.register_buffer("real_col", torch.from_numpy(real), persistent=False)

    def weights(self, w_flat: Tensor) -> Tensor:
        """The linear weight tiles ``[nb, B, K]``."""
        return w_flat.index_select(0, self.param_idx).view(self.nb, self.B, self.K)

    def elements(self, elem: Tensor) -> Tensor:
        return elem.index_select(0, self.elem_idx).view(self.nb, self.K, elem.shape[1])

    def forward(self, elem: Tensor, w_flat: Tensor, node: Tensor) -> None:
        """Write the partition's node values into ``node`` (in place)."""
        e = self.elements(elem)
        neg = torch.full_like(e[:1, :1, :1], -math.inf)
        e = torch.where(self.real_col[:, :, None], e, neg)
        m = e.amax(dim=1, keepdim=True)
        m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        s = torch.bmm(self.weights(w_flat), torch.exp(e - m))
        out = torch.log(s) + m
        node.index_copy_(0, self.node_idx, out.view(self.nb * self.B, -1))

    def backward_flows(self, elem: Tensor, w_flat: Tensor, node: Tensor, node_flow: Tensor,
                       elem_flow: Tensor, grad_weights: list[Tensor | None],
                       param_flows: list[Tensor]) -> None:
        """Element flows into ``elem_flow``; parameter flows into each of ``param_flows``.

        ``grad_weights[i]`` (``[batch]`` or None for all ones) weighs examples for
        ``param_flows[i]``.
        """
        batch = node.shape[1]
        s = node.index_select(0, self.node_idx).view(self.nb, self.B, batch)
        f = node_flow.index_select(0, self.node_idx).view(self.nb, self.B, batch)
        live = (f > 0) & torch.isfinite(s)
        neg = torch.full_like(s[:1, :1, :1], -math.inf)
        q = torch.where(live, torch.log(torch.where(live, f, torch.ones_like(f))) - s, neg)
        qmax = q.amax(dim=1, keepdim=True)
        qmax = torch.where(torch.isfinite(qmax), qmax, torch.zeros_like(qmax))
        r = torch.exp(q - qmax)  # [nb, B, batch], rows without flow: 0
        w = self.weights(w_flat)
        e = self.elements(elem)
        t = torch.bmm(w.transpose(1, 2), r)  # [nb, K, batch]
        ef = torch.exp(e + qmax + torch.log(t))
        elem_flow.index_add_(0, self.elem_idx, ef.view(self.nb * self.K, batch))
        cap = math.log(torch.finfo(e.dtype).max) - math.log(batch + 1) - 2.0
        x = torch.exp(torch.clamp(e + qmax, max=cap)).transpose(1, 2)  # [nb, batch, K]
        for gw, acc in zip(grad_weights, param_flows):
            rr = r if gw is None else r * gw
            pf = w * torch.bmm(rr, x)
            acc.index_add_(0, self.param_idx, pf.reshape(-1))
