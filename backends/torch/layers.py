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

#: values of the largest temporary of a max-product sum block (see ``_max_product``)
MAX_PRODUCT_TEMP = 1 << 24
#: the largest fan-in of one-node sum blocks computed by ``logaddexp`` (see ``_small_sum``)
SMALL_FANIN = 4


def _buf(a: np.ndarray) -> Tensor:
    return torch.from_numpy(np.array(a, dtype=np.int64, copy=True))


def _span(idx: np.ndarray) -> int | None:
    """The start of ``idx`` when it is ``start, start + 1, ...`` (slices beat gathers)."""
    flat = idx.reshape(-1)
    if flat.size and np.array_equal(flat, flat[0] + np.arange(flat.size)):
        return int(flat[0])
    return None


class TorchProductLayer(nn.Module):
    """``element[elem_start + e] = sum_j node[children[e, j]]`` for each partition."""

    dead: Tensor
    flow_zero_rows: Tensor

    def __init__(self, layer: ProductLayer):
        super().__init__()
        self.num_elem_slots = layer.num_elem_slots
        self.reserved = layer.reserved
        self.starts = [p.elem_start for p in layer.partitions]
        self.sizes = [p.children.shape for p in layer.partitions]
        written = np.zeros(layer.num_elem_slots, bool)
        self.spans: dict[tuple[int, int], int | None] = {}
        #: factors whose node flows may be written, not added (set by the module)
        self.copy_flow: dict[tuple[int, int], bool] = {}
        for i, p in enumerate(layer.partitions):
            for j in range(p.children.shape[1]):  # one index column per factor
                self.register_buffer(f"children{i}_{j}", _buf(p.children[:, j]),
                                     persistent=False)
                self.spans[(i, j)] = _span(p.children[:, j])
            written[p.elem_start: p.elem_start + p.num_elems] = True
        self.register_buffer("dead", _buf(np.flatnonzero(~written)), persistent=False)
        #: element-flow rows to zero before the sum partitions write (set by the module)
        self.register_buffer("flow_zero_rows", _buf(np.arange(layer.num_elem_slots)),
                             persistent=False)

    def children_of(self, i: int, j: int) -> Tensor:
        return getattr(self, f"children{i}_{j}")

    def forward(self, node: Tensor) -> Tensor:
        """The element buffer ``[num_elem_slots, batch]`` (unwritten slots hold ``-inf``)."""
        batch = node.shape[1]
        elem = node.new_empty((self.num_elem_slots, batch))
        elem.index_fill_(0, self.dead, -math.inf)
        for i, (start, (num, fanin)) in enumerate(zip(self.starts, self.sizes)):
            out = elem[start: start + num]
            for j in range(fanin):
                span = self.spans[(i, j)]
                if span is not None:
                    kid = node[span: span + num]
                    out.copy_(kid) if j == 0 else out.add_(kid)
                elif j == 0:
                    torch.index_select(node, 0, self.children_of(i, 0), out=out)
                else:
                    out += node.index_select(0, self.children_of(i, j))
        return elem

    def backward_flows(self, elem_flow: Tensor, node_flow: Tensor) -> None:
        """Add each element's flow to every one of its children (in place)."""
        for i, (start, (num, fanin)) in enumerate(zip(self.starts, self.sizes)):
            ef = elem_flow[start: start + num]
            for j in range(fanin):
                span, copy = self.spans[(i, j)], self.copy_flow.get((i, j), False)
                if span is not None:
                    if copy:
                        node_flow[span: span + num] = ef
                    else:
                        node_flow[span: span + num] += ef
                elif copy:  # every target slot has this one writer (slot 0: padding, unread)
                    node_flow.index_copy_(0, self.children_of(i, j), ef)
                else:
                    node_flow.index_add_(0, self.children_of(i, j), ef)


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
        self.all_real = bool(real.all())
        #: the element flows may be written, not added (set by the module)
        self.copy_elem_flow = False
        self.spans = {name: _span(idx) for name, idx in
                      (("node_idx", node_idx), ("elem_idx", elem_idx), ("param_idx", pidx))}

    def _take(self, buf: Tensor, name: str, rows: int) -> Tensor:
        """Rows of ``buf`` listed by index table ``name``: a view when they are contiguous."""
        span = self.spans[name]
        if span is not None:
            return buf[span: span + rows]
        return buf.index_select(0, getattr(self, name))

    def _add(self, buf: Tensor, name: str, src: Tensor, copy: bool = False) -> None:
        """``buf[rows] += src``; ``copy``: the rows have no other writer, so assign."""
        span = self.spans[name]
        if span is not None:
            if copy:
                buf[span: span + src.shape[0]] = src
            else:
                buf[span: span + src.shape[0]] += src
        elif copy:
            buf.index_copy_(0, getattr(self, name), src)
        else:
            buf.index_add_(0, getattr(self, name), src)

    def weights(self, w_flat: Tensor) -> Tensor:
        """The linear weight tiles ``[nb, B, K]``."""
        return self._take(w_flat, "param_idx", self.nb * self.B * self.K).view(
            self.nb, self.B, self.K)

    def elements(self, elem: Tensor) -> Tensor:
        return self._take(elem, "elem_idx", self.nb * self.K).view(self.nb, self.K, -1)

    def forward(self, elem: Tensor, w_flat: Tensor, node: Tensor, semiring: str = "sum"
                ) -> None:
        """Write the partition's node values into ``node`` (in place). ``semiring``:
        ``"sum"`` with linear weights ``w_flat``, or ``"max"`` (max-product) with log-weights
        (padding ``-inf``)."""
        e = self.elements(elem)
        small = semiring == "sum" and self.B == 1 and self.K <= SMALL_FANIN
        if not (self.all_real or small):  # (small: a padding column's weight 0 is log -inf)
            neg = torch.full_like(e[:1, :1, :1], -math.inf)
            e = torch.where(self.real_col[:, :, None], e, neg)
        if semiring == "max":
            out = self._max_product(self.weights(w_flat), e)
        elif small:
            out = self._small_sum(self.weights(w_flat), e)
        else:
            m = e.amax(dim=1, keepdim=True)
            m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
            out = torch.bmm(self.weights(w_flat), torch.exp(e - m)).log_().add_(m)
        span = self.spans["node_idx"]
        if span is not None:
            node[span: span + self.nb * self.B] = out.view(self.nb * self.B, -1)
        else:
            node.index_copy_(0, self.node_idx, out.view(self.nb * self.B, -1))

    @staticmethod
    def _small_sum(w: Tensor, e: Tensor) -> Tensor:
        """Blocks of one sum node over ``K <= SMALL_FANIN`` columns (the scalar sums of a
        PSDD or ``.jpc``): ``log w_0 + e_0``, folded with ``logaddexp`` over the other
        columns. One fused pass per column instead of the matrix product's max, shift,
        exp, product and log over the whole block."""
        logw = torch.log(w[:, 0, :])  # [nb, K]
        out = e[:, 0, :] + logw[:, 0, None]
        for k in range(1, e.shape[1]):
            out = torch.logaddexp(out, e[:, k, :] + logw[:, k, None])
        return out.view(e.shape[0], 1, -1)

    @staticmethod
    def _max_product(logw: Tensor, e: Tensor) -> Tensor:
        """``max_k (logw[b, r, k] + e[b, k, :])``: ``[nb, B, batch]``, over column chunks that
        keep the ``[nb, B, chunk, batch]`` temporary near ``MAX_PRODUCT_TEMP`` values."""
        nb, rows, cols = logw.shape
        out = torch.full((nb, rows, e.shape[2]), -math.inf, dtype=e.dtype, device=e.device)
        step = max(1, MAX_PRODUCT_TEMP // max(nb * rows * e.shape[2], 1))
        for k in range(0, cols, step):
            t = logw[:, :, k: k + step, None] + e[:, None, k: k + step, :]
            torch.maximum(out, t.amax(dim=2), out=out)
        return out

    def backward_flows(self, elem: Tensor, w_flat: Tensor, node: Tensor, node_flow: Tensor,
                       elem_flow: Tensor, grad_weights: list[Tensor | None],
                       param_flows: list[Tensor]) -> None:
        """Element flows into ``elem_flow``; parameter flows into each of ``param_flows``.

        ``grad_weights[i]`` (``[batch]`` or None for all ones) weighs examples for
        ``param_flows[i]``.
        """
        batch = node.shape[1]
        rows = self.nb * self.B
        s = self._take(node, "node_idx", rows).view(self.nb, self.B, batch)
        f = self._take(node_flow, "node_idx", rows).view(self.nb, self.B, batch)
        # a slot has flow only if its value is finite, so log f - s is NaN only where f = 0
        q = torch.log(f).sub_(s).nan_to_num_(nan=-math.inf, posinf=math.inf,
                                             neginf=-math.inf)
        qmax = q.amax(dim=1, keepdim=True)
        qmax = torch.where(torch.isfinite(qmax), qmax, torch.zeros_like(qmax))
        r = q.sub_(qmax).exp_()  # [nb, B, batch], rows without flow: 0
        w = self.weights(w_flat)
        e = self.elements(elem)
        t = torch.bmm(w.transpose(1, 2), r)  # [nb, K, batch]
        # exp(e + Q) is bounded by 1 / W for the columns that matter; the cap only keeps
        # padding columns (value 0, weight 0) finite, where t = 0.
        cap = math.log(torch.finfo(e.dtype).max) - math.log(batch + 1) - 2.0
        x = (e + qmax).clamp_(max=cap).exp_()  # [nb, K, batch]
        span = self.spans["elem_idx"]
        if span is not None and self.copy_elem_flow:
            torch.mul(x, t, out=elem_flow[span: span + self.nb * self.K].view(x.shape))
        else:
            self._add(elem_flow, "elem_idx", (x * t).view(self.nb * self.K, batch),
                      copy=self.copy_elem_flow)
        x = x.transpose(1, 2)  # [nb, batch, K]
        for gw, acc in zip(grad_weights, param_flows):
            rr = r if gw is None else r * gw
            self._add(acc, "param_idx", (w * torch.bmm(rr, x)).reshape(-1))
