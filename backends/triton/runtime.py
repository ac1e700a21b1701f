"""Device-side tables of a plan and the launches of the generated kernels.

:class:`DevicePlan` turns a :class:`~pccc.ir.plan.KernelPlan` into int32 index tensors once
(numpy, per partition, never per edge) and runs the forward pass (input layers, then each sum
layer with its product layer fused in) and the backward pass (sum layers in reverse order:
element flows scattered straight into the product children's node flows, weight gradients;
then input-layer statistics). Buffers are ``[slots + 1, stride]``: row ``NEG = num_node_slots``
holds ``-inf`` and is where element rows that no partition writes (reserved slots) point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import torch
from torch import Tensor

from pccc.backends.triton.codegen import (
    SumShape,
    children_table,
    input_kernel_name,
    split_by_fanin,
)
from pccc.ir.plan import InputLayer, KernelPlan, ProductLayer, SumLayer, SumPartition

#: batch columns per program (backward: fewer, its tiles hold more live values), and the
#: column padding of every buffer (a multiple of both)
BT = 32
BT_FWD = 64
BN = 16


def _i32(a: np.ndarray, device: torch.device) -> Tensor:
    a = np.asarray(a)
    if a.size and (a.max() >= 2**31 or a.min() < -(2**31)):
        raise ValueError("index table exceeds int32")
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int32)).to(device)


@dataclass
class _SumPart:
    shape: SumShape
    nb: int
    ncmax: int
    node_start: Tensor
    chunk_start: Tensor
    param_start: Tensor
    num_chunks: Tensor


@dataclass
class _SumStep:
    children: Tensor
    row: int
    parts: list[_SumPart]


@dataclass
class _Input:
    layer: InputLayer
    fwd: str
    bwd: str
    vars: Tensor
    pstart: Tensor
    values: Tensor
    logc: Tensor


def _logc(total: int) -> np.ndarray:
    return np.array([math.lgamma(total + 1) - math.lgamma(k + 1) - math.lgamma(total - k + 1)
                     for k in range(total + 1)])


class DevicePlan:
    """A plan's index tables on one device, and the launches of its kernels."""

    def __init__(self, plan: KernelPlan, kernels: ModuleType, device: torch.device):
        self.plan = plan
        self.k = kernels
        self.device = device
        self.neg = plan.num_node_slots
        self.rows = plan.num_node_slots + 1
        self.steps: list[_SumStep] = []
        prod: ProductLayer | None = None
        for ly in plan.layers:
            if isinstance(ly, ProductLayer):
                prod = ly
            else:
                assert isinstance(ly, SumLayer) and prod is not None
                self.steps.append(self._step(prod, ly))
        self.inputs = [self._input(ly) for ly in plan.input_layers]
        self.group = torch.from_numpy(plan.param_group.astype(np.int32)).to(device)
        self.group_size = torch.from_numpy(plan.group_size.astype(np.int32)).to(device)

    def _step(self, prod: ProductLayer, ly: SumLayer) -> _SumStep:
        table = children_table(prod, self.neg)
        parts = [self._part(shape, p, blocks) for p in ly.partitions
                 for shape, blocks in split_by_fanin(p, table)]
        return _SumStep(_i32(table, self.device), table.shape[1], parts)

    def _part(self, shape: SumShape, p: SumPartition, blocks: np.ndarray) -> _SumPart:
        d = self.device
        return _SumPart(shape, len(blocks), p.max_chunks, _i32(p.node_start[blocks], d),
                        _i32(p.chunk_start[blocks], d), _i32(p.param_start[blocks], d),
                        _i32(p.num_chunks[blocks], d))

    def _input(self, ly: InputLayer) -> _Input:
        d = self.device
        total = int(dict(ly.attrs).get("total", 0)) if ly.dist == "binomial" else 0
        values = ly.values if ly.values is not None else np.zeros(1, np.int64)
        logc = _logc(total) if ly.dist == "binomial" else np.zeros(1)
        return _Input(ly, input_kernel_name(ly.dist, total, "fwd"),
                      input_kernel_name(ly.dist, total, "bwd"), _i32(ly.vars, d),
                      _i32(ly.param_start, d), _i32(values, d),
                      torch.tensor(logc, dtype=torch.float32, device=d))

    @staticmethod
    def stride_for(batch: int) -> int:
        return max(BT_FWD, -(-batch // BT_FWD) * BT_FWD)

    def prepare_inputs(self, x: Tensor, missing: Tensor | None) -> tuple[Tensor, Tensor, int]:
        """``x [batch, vars]`` -> transposed float32 values and int8 missing flags
        ``[vars, stride]`` (missing: ``-1`` or NaN unless ``missing`` is given)."""
        batch = x.shape[0]
        stride = self.stride_for(batch)
        xf = x.to(self.device, torch.float32)
        if missing is None:
            miss = torch.isnan(xf) | (xf == -1)
        else:
            miss = missing.to(self.device, torch.bool)
        xt = torch.zeros((x.shape[1], stride), dtype=torch.float32, device=self.device)
        mt = torch.ones((x.shape[1], stride), dtype=torch.int8, device=self.device)
        xt[:, :batch] = torch.where(miss, 0.0, xf).T
        mt[:, :batch] = miss.T.to(torch.int8)
        return xt, mt, stride

    def forward(self, xt: Tensor, mt: Tensor, batch: int, params: Tensor, input_params: Tensor,
                node: Tensor) -> None:
        """Fill ``node [rows, stride]`` (log-values)."""
        stride = node.shape[1]
        node.fill_(float("-inf"))
        node[0].zero_()
        tiles = triton_cdiv(batch, BT)
        for inp in self.inputs:
            ly = inp.layer
            getattr(self.k, inp.fwd)[(triton_cdiv(ly.n, BN), tiles)](
                node, xt, mt, inp.vars, inp.pstart, inp.values, input_params, inp.logc,
                ly.node_start, ly.n, batch, stride, BN=BN, BT=BT)
        self.sum_forward(node, batch, params)

    def sum_forward(self, node: Tensor, batch: int, params: Tensor) -> None:
        """The sum layers (products fused in) over a node buffer whose inputs are filled."""
        stride = node.shape[1]
        tiles = triton_cdiv(batch, BT_FWD)
        for step in self.steps:
            for p in step.parts:
                getattr(self.k, f"sum_fwd_{p.shape.tag}")[(p.nb, tiles)](
                    node, params, step.children, step.row, p.node_start, p.chunk_start,
                    p.param_start, p.num_chunks, batch, stride, BT=BT_FWD)

    def sum_backward(self, node: Tensor, flow: Tensor, scale: Tensor, batch: int,
                     params: Tensor, pgrad: Tensor, pflow: Tensor | None = None) -> None:
        """Node flows (root flow 1 per example) into ``flow``; ``sum_b scale_b * ...``
        weight gradients into ``pgrad``; EM parameter flows into ``pflow`` when given."""
        stride = node.shape[1]
        tiles = triton_cdiv(batch, BT)
        flow.zero_()
        flow[self.plan.root_slot, :batch] = 1.0
        em = pflow is not None
        for step in reversed(self.steps):
            for p in step.parts:
                getattr(self.k, f"sum_bwd_{p.shape.tag}")[(p.nb, tiles)](
                    node, flow, params, pgrad, pflow if em else pgrad, scale, step.children,
                    step.row, p.node_start, p.chunk_start, p.param_start, p.num_chunks, batch,
                    stride, BT=BT, EM=em)

    def backward(self, node: Tensor, flow: Tensor, scale: Tensor, batch: int, params: Tensor,
                 pgrad: Tensor, xt: Tensor, mt: Tensor, counts: Tensor,
                 nstats: list[Tensor]) -> None:
        """:meth:`sum_backward`, then input statistics into ``counts`` and ``nstats``."""
        stride = node.shape[1]
        tiles = triton_cdiv(batch, BT)
        self.sum_backward(node, flow, scale, batch, params, pgrad)
        for inp, ns in zip(self.inputs, nstats):
            ly = inp.layer
            getattr(self.k, inp.bwd)[(triton_cdiv(ly.n, BN), tiles)](
                flow, xt, mt, inp.vars, inp.pstart, counts, ns, scale, ly.node_start, ly.n,
                batch, stride, BN=BN, BT=BT)

    def em_sums(self, params: Tensor, pgrad: Tensor, norm: Tensor, step: float,
                pseudocount: float) -> None:
        """One EM update of the sum weights from the gradients of the last backward pass."""
        total = params.numel()
        gsum = torch.zeros(len(self.group_size), dtype=torch.float32, device=self.device)
        grid = (triton_cdiv(total, 1024),)
        self.k.em_group_sums[grid](params, pgrad, self.group, gsum, norm, total, BLOCK=1024)
        self.k.em_update[grid](params, pgrad, self.group, gsum, self.group_size, norm, total,
                               float(step), float(pseudocount), BLOCK=1024)


def triton_cdiv(a: int, b: int) -> int:
    return max(1, -(-a // b))
