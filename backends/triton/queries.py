"""Sampling and MPE on a Triton module: the max-product forward and the top-down decoding
pass in the kernels of :mod:`.kernels_query`.

- :func:`max_forward`: the node buffer of a max-product pass (``sum_layer`` with ``SEMIRING =
  "max"``, one launch per sum partition, layer by layer), over the input values of
  :func:`pccc.backends.torch.queries.forward_inputs` (an input node over a missing variable
  takes its mode's value). Sampling reads the sum-product values of the module's own forward
  kernels instead.
- :func:`decode`: from the root down, per sum layer and partition, the reached ``(node,
  sample)`` pairs are listed (one ``nonzero`` per partition) and ``sum_pick`` lets each pick
  one element (Gumbel-max with counter-based Philox draws when sampling, the first largest
  ``log w_c + value_c`` for MPE) and mark that element's children reached: the product layer
  passes the reach to every child in the same kernel.
- :func:`complete`: the reached input nodes of each layer give their missing variables a
  value (``leaf_pick``: a draw from the node's distribution, or its mode).

The draws of sample ``i`` of a call depend on the seed and ``i`` only (see
:mod:`.kernels_query`), not on the batching. Every function runs under ``torch.no_grad``.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pccc.backends.module import Batch, CompiledCircuit
from pccc.backends.torch import inputs as fam
from pccc.backends.torch import queries as tq
from pccc.backends.triton import kernels_query as kq
from pccc.backends.triton.runtime import index_tensor
from pccc.ir.plan import KernelPlan, SumLayer
from pccc.passes.schedule_parts import layer_tables

#: pairs per program of the decoding kernels on a GPU (on the CPU, under the interpreter,
#: up to ``CPU_PAIRS``: fewer, larger programs)
PAIRS = 32
CPU_PAIRS = 4096
#: columns per program of the max-product forward
COLS = 32
#: seeds are taken modulo this (Philox keys are 64-bit)
SEED_MOD = 1 << 63


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


@dataclass
class _Part:
    """A sum partition's tables on the device and its kernels' constants."""

    node_start: Tensor
    chunk_start: Tensor
    param_start: Tensor
    num_chunks: Tensor
    rows: Tensor
    """int64 ``[nb * B]``: the node slot of each row (its reached flags are gathered)"""
    B: int
    C: int
    NC: int


@dataclass
class _Layer:
    children: Tensor
    """the children table of the product layer it reads (``[elements, row]`` int32)"""
    row: int
    parts: list[_Part]


class QueryTables:
    """A plan's sum layers as the query kernels read them (made once per module and
    device)."""

    def __init__(self, plan: KernelPlan, device: torch.device):
        self.neg = plan.num_node_slots
        self.layers: list[_Layer] = []
        sums = [ly for ly in plan.layers if isinstance(ly, SumLayer)]
        for ly, table in zip(sums, layer_tables(plan)):
            parts = []
            for p in ly.partitions:
                rows = (p.node_start[:, None] + np.arange(p.block_size)).reshape(-1)
                ns, cs, ps, nc = (index_tensor(a, device) for a in
                                  (p.node_start, p.chunk_start, p.param_start, p.num_chunks))
                parts.append(_Part(ns, cs, ps, nc, torch.from_numpy(rows).to(device),
                                   p.block_size, p.chunk_size, p.max_chunks))
            self.layers.append(_Layer(index_tensor(table, device), int(table.shape[1]), parts))


_TABLES: weakref.WeakKeyDictionary[Any, QueryTables] = weakref.WeakKeyDictionary()


def tables(model: CompiledCircuit) -> QueryTables:
    """The query tables of ``model``'s plan on its device (made at the first query)."""
    out = _TABLES.get(model)
    if out is None or (out.layers and out.layers[0].children.device != model.device):
        out = QueryTables(model.plan, model.device)
        _TABLES[model] = out
    return out


def _pairs(n: int, device: torch.device) -> int:
    """Pairs per program for ``n`` pairs on ``device``."""
    return PAIRS if device.type == "cuda" else min(CPU_PAIRS, max(PAIRS, _pow2(n)))


def _warps(tile: int) -> int:
    """Warps of a program whose tile holds ``tile`` values (8 from 8192 on)."""
    return 8 if tile >= 8192 else 4


def _stride(batch: int) -> int:
    return max(16, -(-batch // 16) * 16)


@torch.no_grad()
def layer_forward(model: CompiledCircuit, node: Tensor, logw: Tensor, batch: int,
                  semiring: str) -> None:
    """The sum layers of ``node`` (``[slots, stride]`` whose input rows and slot 0 are
    filled) in ``semiring`` (``"sum"`` or ``"max"``)."""
    qt = tables(model)
    stride = node.stride(0)
    bt = min(COLS, _pow2(batch))
    for ly in qt.layers:
        for p in ly.parts:
            kq.sum_layer[(p.node_start.numel(), -(-batch // bt))](
                node, logw, ly.children, ly.row, qt.neg, p.node_start, p.chunk_start,
                p.param_start, p.num_chunks, batch, stride, B=p.B, C=p.C, F=ly.row, NC=p.NC,
                BP=_pow2(p.B), BT=bt, SEMIRING=semiring, num_warps=_warps(_pow2(p.B) * bt))


@torch.no_grad()
def max_forward(model: CompiledCircuit, x: Tensor) -> tuple[Batch, Tensor, Tensor]:
    """``(batch, log-weights, node buffer)`` of a max-product pass over ``x``: the buffer is
    ``[slots, stride]``, its first ``len(x)`` columns the examples."""
    data, logw, vals = tq.forward_inputs(model, x, "max")
    batch = x.shape[0]
    node = torch.full((model.plan.num_node_slots, _stride(batch)), -math.inf,
                      dtype=torch.float32, device=model.device)
    node[0] = 0.0
    for ly, v in zip(model.plan.input_layers, vals):
        node[ly.node_start: ly.node_start + ly.n, :batch] = v
    logw = logw.float().contiguous()
    layer_forward(model, node, logw, batch, "max")
    return data, logw, node


@torch.no_grad()
def decode(model: CompiledCircuit, node: Tensor, logw: Tensor, batch: int,
           seed: int | None, col0: int = 0) -> Tensor:
    """The reached nodes (int8 ``[slots, stride]``, 1 or 0) of the top-down pass over
    ``node`` (a view ``[slots, >= batch]`` with unit column stride): sum-product values
    with the evidence (``seed`` given: sampling, column ``b`` being sample ``col0 + b``) or
    max-product values (``seed`` None: MPE). Rows whose root value is ``-inf`` reach
    nothing."""
    qt = tables(model)
    stride = node.stride(0)
    assert node.stride(1) == 1, "the node buffer's columns must be contiguous"
    sel = torch.zeros((model.plan.num_node_slots, stride), dtype=torch.int8,
                      device=node.device)
    root = model.root_slot
    sel[root, :batch] = torch.isfinite(node[root, :batch]).to(torch.int8)
    for ly in reversed(qt.layers):
        for p in ly.parts:
            i, b = torch.nonzero(sel.index_select(0, p.rows)[:, :batch], as_tuple=True)
            n = i.numel()
            if not n:
                continue
            bq = _pairs(n, node.device)
            kq.sum_pick[(-(-n // bq),)](
                node, sel, logw, ly.children, ly.row, qt.neg, p.node_start, p.chunk_start,
                p.param_start, p.num_chunks, i.to(torch.int32), b.to(torch.int32), n, stride,
                seed or 0, col0, B=p.B, C=p.C, F=ly.row, NC=p.NC, CP=_pow2(p.C), BQ=bq,
                SAMPLE=seed is not None, num_warps=_warps(bq * _pow2(p.C)))
    return sel


def leaf_tables(model: CompiledCircuit) -> list[tuple[Tensor, int, bool]]:
    """Per input layer, what ``leaf_pick`` reads: ``(table, K, gaussian)``, the ``[n, K]``
    log-probabilities of a discrete layer (the family's own, :func:`~pccc.backends.torch.
    queries.leaf_table`) or the ``[n, 2]`` means and standard deviations of a Gaussian one.
    Made once per query call, for all its batches."""
    out = []
    for i, ly in enumerate(model.plan.input_layers):
        card = tq.layer_card(model, i)
        if card is None:
            native = fam.to_native(ly.dist, *model.layer_raw(i)).detach()[:, :2]
            out.append((native.float().contiguous(), 2, True))
        else:
            out.append((tq.leaf_table(model, i).detach().float().contiguous(), card, False))
    return out


@torch.no_grad()
def complete(model: CompiledCircuit, x: Tensor, data: Batch, sel: Tensor,
             leaves: list[tuple[Tensor, int, bool]], seed: int | None, col0: int = 0
             ) -> Tensor:
    """``x`` with each missing value set by the input node its row reached (``sel``): a draw
    (``seed`` given) or the mode. int64, or float64 where the circuit has a continuous
    variable (missing: NaN). Values no row reached stay missing."""
    continuous = any(g for _, _, g in leaves)
    out = x.to(torch.float64 if continuous else torch.int64, copy=True)
    if data.miss is None:
        return out
    batch, stride = x.shape[0], sel.stride(0)
    if continuous:
        out[data.miss.t()] = math.nan
    miss = torch.zeros((model.num_vars, stride), dtype=torch.int8, device=sel.device)
    miss[:, :batch] = data.miss.to(torch.int8)
    vals = torch.full((model.num_vars, stride), math.nan, dtype=torch.float32,
                      device=sel.device)
    for i, (ly, (table, k, gauss)) in enumerate(zip(model.plan.input_layers, leaves)):
        nd, b = torch.nonzero(sel[ly.node_start: ly.node_start + ly.n, :batch], as_tuple=True)
        n = nd.numel()
        if not n:
            continue
        bq = _pairs(n, sel.device)
        kq.leaf_pick[(-(-n // bq),)](
            table, getattr(model, f"in_vars{i}"), miss, vals, ly.node_start,
            nd.to(torch.int32), b.to(torch.int32), n, stride, seed or 0, col0, K=k,
            KP=_pow2(k), GAUSS=gauss, SAMPLE=seed is not None, BQ=bq,
            num_warps=_warps(bq * _pow2(k)))
    got = vals[:, :batch].t()
    put = ~torch.isnan(got)
    out[put] = got[put].to(out.dtype)
    return out


def seed_of(seed: int | None) -> int:
    """A Philox seed: ``seed`` modulo 2**63, or a fresh one from torch's default generator."""
    if seed is None:
        return int(torch.randint(1, 2**62, (1,)).item())
    return int(seed) % SEED_MOD


@torch.no_grad()
def sample(model: CompiledCircuit, evidence: Tensor, seed: int, col0: int,
           leaves: list[tuple[Tensor, int, bool]]) -> tuple[Tensor, Tensor]:
    """One exact draw from ``p(x | e)`` per row of ``evidence`` (rows ``col0 ..`` of the
    call's samples), and ``log p(e)`` per row: the module's own forward pass (its input and
    sum kernels, into its node buffer: no input values held apart) gives the sum-product
    values that the top-down pass decodes."""
    data = model.prepare(evidence)
    logw = model.log_weights().detach()
    model(evidence)
    batch = evidence.shape[0]
    node = model.executor.node_values(batch)
    ll = node[model.root_slot].clone()
    sel = decode(model, node, logw.float().contiguous(), batch, seed, col0)
    return complete(model, evidence, data, sel, leaves, seed, col0), ll


@torch.no_grad()
def mpe(model: CompiledCircuit, x: Tensor, leaves: list[tuple[Tensor, int, bool]]
        ) -> tuple[Tensor, Tensor]:
    """The max-product completion of each row and its ``log p`` (the module's own forward
    pass)."""
    data, logw, node = max_forward(model, x)
    out = complete(model, x, data, decode(model, node, logw, x.shape[0], None), leaves, None)
    return out, model(out)
