"""Device-side tables of a plan and the launches of the generated kernels.

:class:`DevicePlan` turns a :class:`~pccc.ir.plan.KernelPlan` into int32 index tensors once
(numpy, per partition, never per edge; the sum layers' tables copied to the device as one
buffer, each input layer's as one more) and runs the
forward pass (input layers, then each sum layer with its product layer fused in) and the
backward pass (sum layers in reverse order: flow ratios once per layer where several programs
read them, element flows scattered straight into the product children's node flows, weight
gradients; then input-layer statistics).
Buffers are ``[slots + 1, stride]``: row ``NEG = num_node_slots`` holds ``-inf`` and is where
element rows that no partition writes (reserved slots) point.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import torch
from torch import Tensor

from pccc.backends.triton.codegen import (
    SumShape,
    fanin_groups,
    fwd_transposed,
    input_kernel_name,
)
from pccc.ir.plan import InputLayer, KernelPlan, SumPartition

#: batch columns per program (backward: fewer, its tiles hold more live values), and the
#: column padding of every buffer (a multiple of both)
BT = 32
BT_FWD = 64
#: batch columns per program of the backward kernels over wide products (``SumShape.wide``:
#: an HCLT root with a hundred children): few blocks, so narrower tiles give the card more
#: programs (their forward: ``TILES["wide"]``)
BT_WIDE = 16
BN = 16
#: batch columns per program and warps of the sum kernels; ``PCCC_TRITON_TILES`` overrides
#: them for tuning, e.g. ``fwd=64,bwd=32,eflow=64,wfwd=4,wbwd=4,weflow=8`` (``bwds``/``wbwds``:
#: the backward of lone blocks, which also scatters their element flows; ``inbn``/``inbt``/
#: ``win``: node rows, columns and warps of the input layers' forward; ``fwdt``: the
#: transposed forward of blocks under 64 rows; ``ratio``: ``flow_ratio``; ``wide``/``wideb``:
#: the forward and backward of wide products). Defaults: step 49's sweep on the H100.
TILES = {"fwd": 32, "bwd": BT, "eflow": 64, "wfwd": 4, "wbwd": 4, "weflow": 8,
         "bwds": BT, "wbwds": 4, "inbn": BN, "inbt": 128, "win": 4, "ratio": 32,
         "wide": 32, "wideb": BT_WIDE, "fwdt": 64}
TILES.update({k: int(v) for k, v in (item.split("=") for item in
                                      os.environ.get("PCCC_TRITON_TILES", "").split(",") if item)})
EFLOW_ALL = os.environ.get("PCCC_TRITON_EFLOW", "") == "all"
#: narrower column tiles for launches too small to fill the card (``PCCC_TRITON_FILL=0``: off)
FILL = os.environ.get("PCCC_TRITON_FILL", "1") != "0"
#: the run-time 0 added to atomic addresses (see ``_scatter`` in the templates)
UNALIGNED = 0
#: parts of at most this many weights (chunks included) run their backward as lone blocks
#: (siblings too), with the flow ratios computed inline where there are at most two chunks:
#: one launch instead of two or three, for the small layers of deep trees where launches, not
#: work, take the time (``PCCC_TRITON_SMALL``)
SMALL = int(os.environ.get("PCCC_TRITON_SMALL", str(1 << 17)))
#: element flows stored, not added, where a child row has one writer (``PCCC_TRITON_STORE=0``:
#: atomics everywhere and the whole flow buffer zeroed per pass, as before)
STORE = os.environ.get("PCCC_TRITON_STORE", "1") != "0"
#: rows and columns per program of ``zero_rows``
ZERO_ROWS = 8
ZERO_COLS = 512
#: the kernels' column bound is the batch rounded up to a multiple of this (see
#: :func:`col_bound`)
COL_ALIGN = 16


def col_bound(batch: int) -> int:
    """The columns the kernels compute for a batch: rounded up to ``COL_ALIGN``. Triton
    specializes integer arguments on divisibility by 16; a bound that always is gives every
    batch size the same compiled kernels, and lets the compiler vectorize the loads and
    stores masked by ``cols < bound`` (4 columns per access: with a run-time bound of unknown
    divisibility every access was scalar, each 32-byte sector fetched 4 times; see
    docs/benchmarks.md, notes log). The padding columns hold missing inputs (forward) and
    root flow 0 (backward): every flow, gradient and statistic they add is 0."""
    return -(-batch // COL_ALIGN) * COL_ALIGN


#: table offsets in the packed upload are multiples of this many int32 (64 bytes: Triton
#: specializes pointer arguments on 16-byte alignment)
ALIGN = 16


def to_device(groups: list[list[np.ndarray]], device: torch.device) -> list[list[Tensor]]:
    """Index tables as int32 tensors on ``device``, grouped as given: packed into one host
    buffer (each table at an ``ALIGN``-ed offset) and copied once, each table a view of it.
    Raises ValueError where a value does not fit int32."""
    flat = [np.asarray(a) for g in groups for a in g]
    sizes = [-(-a.size // ALIGN) * ALIGN for a in flat]
    buf = np.zeros(sum(sizes), np.int32)
    at = 0
    views = []
    for a, size in zip(flat, sizes):
        if a.size and a.dtype != np.int32 and (a.max() >= 2**31 or a.min() < -(2**31)):
            raise ValueError("index table exceeds int32")
        buf[at: at + a.size] = a.ravel()
        views.append((at, a.shape))
        at += size
    dev = torch.from_numpy(buf).to(device)
    tensors = iter([dev[o: o + math.prod(shape)].view(shape) for o, shape in views])
    return [[next(tensors) for _ in g] for g in groups]


@dataclass
class _SumPart:
    shape: SumShape
    nb: int
    ncmax: int
    node_start: Tensor
    chunk_start: Tensor
    param_start: Tensor
    num_chunks: Tensor
    sib: Tensor
    """``[groups, G]`` blocks (local indices, -1 padding) that read the same elements"""
    G: int
    small: bool = False
    """at most ``SMALL`` weights: one backward launch, ratios inline"""
    rbase: Tensor | None = None
    """``[nb]`` each block's first row in the flow-ratio scratch (``arange(nb) * B``)"""
    atomic: bool = True
    """its element flows are added atomically (some child row has another writer); False:
    stored (see :func:`flow_writers`)"""
    store: bool = False
    """its EM flows may be stored after an EM step (see :meth:`DevicePlan.em_zero_tiles`)"""


def sibling_table(chunk_start: np.ndarray, num_chunks: np.ndarray, table: np.ndarray,
                  C: int, fanin: int | None = None) -> np.ndarray:
    """Blocks grouped by the elements they read, compared by the elements' children (the row
    blocks of one sum vector read the same products, laid out once per block): ``[groups, G]``
    block indices, ``-1`` padded. Rows are compared through two 64-bit hashes (see
    :func:`block_hashes`); ``fanin``: the table columns that hold the blocks' real children
    (the others are padding, 0), all of them if None."""
    h = block_hashes(chunk_start, num_chunks, table, C, fanin)
    _, inv = np.unique(h, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    order = np.argsort(inv, kind="stable")
    counts = np.bincount(inv)
    rank = np.arange(len(inv)) - np.repeat(np.cumsum(counts) - counts, counts)
    out = np.full((len(counts), int(counts.max(initial=1))), -1, np.int64)
    out[inv[order], rank] = order
    return out


def block_hashes(chunk_start: np.ndarray, num_chunks: np.ndarray, table: np.ndarray, C: int,
                 fanin: int | None = None) -> np.ndarray:
    """``[blocks, 3]`` uint64: two random linear hashes (mod 2**64) of each block's row of
    entries ``[chunks, C, table columns]`` (children + 2; in a padded chunk all 1), and its
    chunk count. Linear, so computed as the children's own hash over the live chunks plus a
    constant per chunk (2 or 1 times its coefficients' sum); the columns from ``fanin`` on
    hold padding children (0) in every live chunk, so only the first ``fanin`` are read."""
    nb, nc = chunk_start.shape
    F = table.shape[1]
    f = F if fanin is None else fanin
    e = np.minimum(chunk_start[:, :, None] + np.arange(C), len(table) - 1)  # [nb, nc, C]
    kids = np.take(table[:, :f], e.reshape(-1), axis=0).reshape(nb, nc, C * f)
    live = np.arange(nc)[None, :] < num_chunks[:, None]
    kids[~live] = 0  # padded chunks: only their constant
    rng = np.random.default_rng(0)
    coef = np.stack([rng.integers(1, 2**63, nc * C * F, dtype=np.uint64) for _ in range(2)])
    coef = coef.reshape(2, nc, C, F)
    rows = kids.astype(np.int64, copy=False).reshape(nb, -1).view(np.uint64)  # no copy
    h = rows @ coef[..., :f].reshape(2, -1).T  # [nb, 2]
    total = coef.reshape(2, nc, -1).sum(axis=2)  # [2, nc]
    h += np.where(live[:, None, :], total * np.uint64(2), total).sum(axis=2)
    return np.column_stack([h, num_chunks.astype(np.uint64)])


@dataclass
class _HostPart:
    """A part's blocks and sibling groups on the host, before its tables go to the device."""

    shape: SumShape
    p: SumPartition
    blocks: np.ndarray
    sib: np.ndarray
    """their sibling groups: indices into ``blocks``, -1 padding"""
    small: bool = False
    atomic: bool = True

    def tables(self) -> list[np.ndarray]:
        """The :class:`_SumPart` tables, in its fields' order."""
        p, b = self.p, self.blocks
        return [p.node_start[b], p.chunk_start[b], p.param_start[b], p.num_chunks[b], self.sib,
                np.arange(len(b)) * self.shape.B]

    def on_device(self, t: list[Tensor]) -> _SumPart:
        """The part, given its :meth:`tables` on the device."""
        node_start, chunk_start, param_start, num_chunks, sib, rbase = t
        return _SumPart(self.shape, len(self.blocks), self.p.max_chunks, node_start,
                        chunk_start, param_start, num_chunks, sib, self.sib.shape[1],
                        self.small, rbase, self.atomic)

    def scatter_units(self) -> np.ndarray:
        """The blocks whose chunks' element flows are scattered by one program each: a
        sibling group's first block (``sum_eflow``), else every block (``sum_bwd`` itself)."""
        return self.sib[:, 0] if (self.sib.shape[1] > 1 or EFLOW_ALL) else \
            np.arange(len(self.blocks))

    def scattered_rows(self, table: np.ndarray, rows: int) -> np.ndarray:
        """The node rows its element flows are scattered to, once per write (padding
        children, slot 0, and ``NEG = rows - 1`` left out)."""
        u = self.blocks[self.scatter_units()]
        cs, nc = self.p.chunk_start[u], self.p.num_chunks[u]
        e = cs[:, :, None] + np.arange(self.shape.C)  # [units, NC, C]
        live = (np.arange(cs.shape[1]) < nc[:, None])[:, :, None] & (e < len(table))
        kids = np.take(table[:, : self.shape.fanin], e[live], axis=0).ravel()
        return kids[(kids != 0) & (kids != rows - 1)]


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
    runs: Tensor | None = None
    """``[runs, NB]`` layer node indices for the one-hot GEMM statistics (``input_cat_dot``;
    ``-1`` padding), or None: the atomics kernel (``bwd``) does them"""
    NB: int = 0
    KT: int = 0
    """value tile of ``input_cat_dot``"""
    BT: int = 0
    """its batch columns per step"""
    warps: int = 0

    @staticmethod
    def run_table(vars: np.ndarray, cap: int) -> np.ndarray:
        """The nodes grouped by variable (stable order), each variable's nodes cut into runs of
        at most NB = max(16, the longest group rounded up to a power of two), NB <= ``cap``:
        ``[runs, NB]`` node indices, ``-1`` padding."""
        order = np.argsort(vars, kind="stable")
        v = np.asarray(vars)[order]
        cut = np.flatnonzero(np.diff(v) != 0) + 1
        start = np.concatenate([[0], cut]).astype(np.int64)
        length = np.diff(np.concatenate([start, [len(v)]]))
        nb = min(cap, max(16, 1 << (int(length.max(initial=1)) - 1).bit_length()))
        first, count = cut_runs(start, length, nb)
        j = first[:, None] + np.arange(nb)[None, :]
        return np.where(j < (first + count)[:, None], order[np.minimum(j, len(v) - 1)], -1)


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
        self._ratio: Tensor | None = None
        self._qbuf: Tensor | None = None
        host = [(table, self._host_parts(table, groups)) for table, groups in fanin_groups(plan)]
        #: flow rows a pass must zero first, as ``(first row, count <= ZERO_ROWS)`` tiles
        #: (None: all of them)
        self.zero_tiles: tuple[Tensor, Tensor] | None = None
        zero = flow_writers(host, self.rows) if STORE else None
        tiles, mixed = group_tiles(plan.param_group)
        parts = [hp for _, hps in host for hp in hps]
        children, *part_tables, zero_tiles, misc = to_device(
            [[table for table, _ in host], *(hp.tables() for hp in parts),
             [*row_tiles(zero, ZERO_ROWS)] if zero is not None else [],
             [plan.group_size, tiles, mixed, *tile_runs(tiles, mixed)]], device)
        on_device = iter([hp.on_device(t) for hp, t in zip(parts, part_tables)])
        self.steps: list[_SumStep] = [
            _SumStep(c, table.shape[1], [next(on_device) for _ in hps])
            for c, (table, hps) in zip(children, host)]
        if zero is not None:
            self.zero_tiles = (zero_tiles[0], zero_tiles[1])
        self.group_size, self.tiles, self.mixed, *runs = misc
        self.runs = tuple(runs)
        self.num_groups = len(plan.group_size)
        self.inputs = [self._input(ly) for ly in plan.input_layers]
        cont = np.zeros(plan.num_vars, dtype=bool)
        for ly in plan.input_layers:
            if ly.dist == "gaussian":
                cont[np.asarray(ly.vars, dtype=np.int64)] = True
        #: the continuous variables (their -1 is a value; None: there are none)
        self.cont_vars = torch.from_numpy(cont).to(device) if cont.any() else None
        #: programs a backward launch aims for (batch splits fill the card on small layers)
        self.programs = 4 * (torch.cuda.get_device_properties(device).multi_processor_count
                             if device.type == "cuda" else 2)
        self._zero_flags: Tensor | None = None

    def _host_parts(self, table: np.ndarray,
                    groups: list[tuple[SumShape, SumPartition, np.ndarray]]) -> list[_HostPart]:
        """A sum layer's parts: its blocks by kernel shape (``groups``, see
        :func:`fanin_groups`), each cut into lone blocks and sibling groups (or kept whole
        where small); ``table``: the children table of the product layer below."""
        parts = []
        for shape, p, blocks in groups:
            if len(blocks) * shape.NC * shape.B * shape.C <= SMALL and not EFLOW_ALL:
                # too few blocks to pay for three launches (siblings) or two (chunks > 1)
                parts.append(_HostPart(shape, p, blocks, np.arange(len(blocks))[:, None],
                                       small=True))
                continue
            sib = sibling_table(p.chunk_start[blocks], p.num_chunks[blocks], table, shape.C,
                                shape.fanin)
            alone = (sib >= 0).sum(axis=1) == 1
            if alone.any():  # no sibling: its element flows come from sum_bwd itself
                lone = blocks[sib[alone, 0]]
                parts.append(_HostPart(shape, p, lone, np.arange(len(lone))[:, None]))
            if not alone.all():  # sibling groups: element flows summed by sum_eflow
                grouped = sib[~alone]
                local = np.full(len(blocks), -1, np.int64)
                members = grouped[grouped >= 0]
                local[members] = np.arange(len(members))
                grouped = np.where(grouped >= 0, local[np.maximum(grouped, 0)], -1)
                parts.append(_HostPart(shape, p, blocks[members], grouped))
        return parts

    def _input(self, ly: InputLayer) -> _Input:
        d = self.device
        total = int(dict(ly.attrs).get("total", 0)) if ly.dist == "binomial" else 0
        values = ly.values if ly.values is not None else np.zeros(1, np.int64)
        logc = _logc(total) if ly.dist == "binomial" else np.zeros(1)
        # categorical statistics by a one-hot GEMM per run of one variable's nodes, where the
        # values fill a tensor-core tile and runs are long enough (>= 4 nodes on average) to
        # beat one atomic per (node, column); PCCC_TRITON_TILES: catnb (longest run, 0: never),
        # catkt (value tile), catbt (batch columns per step), wcat (warps)
        cap = TILES.get("catnb", 64)
        runs = None
        if ly.dist == "categorical" and ly.param_size >= 16 and ly.n and cap >= 16:
            runs = _Input.run_table(ly.vars, cap)
            if ly.n < 4 * len(runs):
                runs = None
        var_t, pstart, vals, *run_t = to_device(
            [[ly.vars, ly.param_start, values] + ([runs] if runs is not None else [])], d)[0]
        inp = _Input(ly, input_kernel_name(ly.dist, total, "fwd"),
                     input_kernel_name(ly.dist, total, "bwd"), var_t, pstart, vals,
                     torch.tensor(logc, dtype=torch.float32, device=d))
        if runs is not None:
            inp.runs, inp.NB = run_t[0], runs.shape[1]
            inp.KT = min(TILES.get("catkt", 256), 1 << (ly.param_size - 1).bit_length())
            inp.BT, inp.warps = TILES.get("catbt", BT), TILES.get("wcat", 8)
        return inp

    @staticmethod
    def stride_for(batch: int) -> int:
        col = max(TILES["fwd"], TILES["bwd"], TILES["eflow"], BT_FWD)
        return max(col, -(-batch // col) * col)

    def new_node_buffer(self, stride: int) -> Tensor:
        """``[rows, stride]`` node log-values: ``-inf`` everywhere but row 0 (log 1). Layers
        write every live row, so this is done once per buffer, not per batch."""
        node = torch.full((self.rows, stride), float("-inf"), dtype=torch.float32,
                          device=self.device)
        node[0].zero_()
        return node

    def prepare_inputs(self, x: Tensor, missing: Tensor | None, xt: Tensor, mt: Tensor) -> None:
        """``x [batch, vars]`` -> ``xt[:, :batch]`` float32 values (0 where missing) and
        ``mt[:, :batch]`` int8 missing flags (NaN, or ``-1`` on a discrete variable, unless
        ``missing`` is given)."""
        batch = x.shape[0]
        xf = x.to(self.device, torch.float32)
        if missing is None:
            minus = xf == -1
            if self.cont_vars is not None:  # on a continuous variable -1 is a value
                minus[:, : len(self.cont_vars)] &= ~self.cont_vars
            miss = torch.isnan(xf) | minus
        else:
            miss = missing.to(self.device, torch.bool)
        xt[:, :batch].copy_(torch.where(miss, 0.0, xf).T)
        mt[:, :batch].copy_(miss.T)
        cols = col_bound(batch)
        if cols > batch:  # padding columns: examples with every value missing
            xt[:, batch:cols] = 0.0
            mt[:, batch:cols] = 1

    def forward(self, xt: Tensor, mt: Tensor, batch: int, w: Tensor,
                params: list[tuple[Tensor, Tensor]], node: Tensor) -> None:
        """Fill ``node [rows, stride]`` (log-values, from :meth:`new_node_buffer`); ``params``:
        per input layer, its kernel's parameter table and auxiliary table (categorical: raw
        coordinates and the per-node constant of ``log theta = raw + c``)."""
        stride = node.shape[1]
        bn, bt = TILES["inbn"], TILES["inbt"]
        cols = col_bound(batch)
        for inp, (theta, aux) in zip(self.inputs, params):
            ly = inp.layer
            getattr(self.k, inp.fwd)[(triton_cdiv(ly.n, bn), triton_cdiv(cols, bt))](
                node, xt, mt, inp.vars, inp.pstart, inp.values, theta, aux,
                ly.node_start, ly.n, cols, stride, BN=bn, BT=bt, num_warps=TILES["win"])
        self.sum_forward(node, batch, w)

    def sum_forward(self, node: Tensor, batch: int, w: Tensor) -> None:
        """The sum layers (products fused in) over a node buffer whose inputs are filled."""
        stride = node.shape[1]
        batch = col_bound(batch)
        for step in self.steps:
            for p in step.parts:
                bt = TILES["wide"] if p.shape.wide else self.fill(
                    TILES["fwdt" if fwd_transposed(p.shape) else "fwd"], p.nb, stride)
                getattr(self.k, f"sum_fwd_{p.shape.tag}")[(p.nb, triton_cdiv(batch, bt))](
                    node, w, step.children, step.row, p.node_start, p.chunk_start,
                    p.param_start, p.num_chunks, batch, stride, BT=bt,
                    num_warps=TILES["wfwd"])

    def sum_backward(self, node: Tensor, flow: Tensor, scale: Tensor, flag: Tensor, batch: int,
                     w: Tensor, pgrad: Tensor, flows: Tensor, em_direct: bool = False,
                     inplace: bool = False, store: bool = False,
                     root_flow: Tensor | None = None) -> None:
        """Node flows (flow 1 per root and example, or ``root_flow``: ``[num_roots, batch]``)
        into ``flow``; ``sum_b scale_b * ...`` weight
        gradients into ``pgrad`` (zeroed here); where ``flag[0] != 0``, EM flows added to
        ``flows``. ``em_direct``: ``pgrad`` is the EM flows accumulator instead (not zeroed;
        ``scale`` must be 1 and ``flag`` 0): ``w`` times the sums are added to it.
        ``inplace``: the flow ratios overwrite the sum rows' values in ``node`` (no later
        kernel reads them; 41 MiB of scratch less on HCLT-256): the buffer no longer holds
        the forward's values afterwards. ``store`` (with ``em_direct``): the EM flows of the
        parts that can (their ``store``) are stored, not added (an EM step with
        :meth:`em_zero_tiles` left old values there)."""
        if store:
            self.em_zero_tiles()  # (each part's ``store``)
        stride = node.shape[1]
        real, batch = batch, col_bound(batch)
        if self.zero_tiles is None:
            flow.zero_()
        elif self.zero_tiles[0].numel():  # the rows that atomics add to; the rest are stored
            start, count = self.zero_tiles
            self.k.zero_rows[(start.numel(), triton_cdiv(batch, ZERO_COLS))](
                flow, start, count, stride, batch, R=ZERO_ROWS, CB=ZERO_COLS)
        roots = slice(self.plan.root_slot, self.plan.root_slot + self.plan.num_roots)
        if root_flow is None:
            flow[roots, :real] = 1.0
        else:
            flow[roots, :real] = root_flow
        if batch > real:  # padding columns (see col_bound): no flow
            flow[roots, real:batch] = 0.0
        if not em_direct:
            pgrad.zero_()
        scratch, qbuf = self.ratio_buffers(stride, rows=not inplace)
        rbuf = node if inplace else scratch
        for step in reversed(self.steps):
            for p in step.parts:
                B = p.shape.B
                # element flows by sum_eflow (sibling groups; every block with
                # PCCC_TRITON_EFLOW=all) or scattered by sum_bwd itself
                eflow = p.G > 1 or EFLOW_ALL
                # the ratios are read more than once: made once (unless the part is small and
                # has at most two chunks: then recomputed, one launch less)
                ratio = eflow or (p.shape.NC > 1 and not (p.small and p.shape.NC <= 2))
                rstart = p.node_start if inplace else p.rbase
                if ratio:
                    br = self.fill(TILES["ratio"], p.nb, stride)
                    self.k.flow_ratio[(p.nb, triton_cdiv(batch, br))](
                        node, flow, p.node_start, rbuf, rstart, qbuf, batch, stride, B=B,
                        BP=1 << max(0, (B - 1).bit_length()), BT=br)
                if eflow:
                    be = TILES["wideb"] if p.shape.wide else \
                        self.fill(TILES["eflow"], p.sib.shape[0] * p.shape.NC, stride)
                    getattr(self.k, f"sum_eflow_{p.shape.tag}")[
                        (p.sib.shape[0], p.shape.NC, triton_cdiv(batch, be))](
                        node, flow, w, step.children, step.row, p.sib, p.node_start,
                        p.chunk_start, p.param_start, p.num_chunks, batch, stride, UNALIGNED,
                        rbuf, rstart, qbuf, G=p.G, BT=be, ATOMIC=p.atomic,
                        num_warps=TILES["weflow"])
                bt = TILES["wideb"] if p.shape.wide else TILES["bwd" if eflow else "bwds"]
                tiles = triton_cdiv(batch, bt)
                splits = min(tiles, triton_cdiv(self.programs, p.nb * p.shape.NC))
                getattr(self.k, f"sum_bwd_{p.shape.tag}")[(p.nb, p.shape.NC, splits)](
                    node, flow, w, pgrad, flows, scale, flag, step.children, step.row,
                    p.node_start, p.chunk_start, p.param_start, p.num_chunks, batch, stride,
                    splits, triton_cdiv(tiles, splits), UNALIGNED, rbuf, rstart, qbuf, BT=bt,
                    SCATTER=not eflow, EMW=em_direct, RATIO=ratio, ATOMIC=p.atomic,
                    STORE=store and em_direct and p.store,
                    num_warps=TILES["wbwd" if eflow else "wbwds"])

    def em_zero_tiles(self) -> Tensor:
        """``[tiles]`` int8: 1 where a 64-weight tile holds a weight whose EM flows the
        backward adds (an EM step zeroes them), 0 where the next EM-direct backward stores
        every weight's flow: the tiles inside the chunks of parts that can store (made on
        first use, with each part's ``store``). A part can store where each of its backward
        programs has whole batches, whatever their size (one split: it has as many programs
        as a launch aims for) and no weight of its chunks is another chunk's too (tied
        parameters, or chunk tails that reach into the next chunk)."""
        if self._zero_flags is None:
            dev = self.device
            parts = [p for step in self.steps for p in step.parts]
            ranges = []
            for i, p in enumerate(parts):
                live = torch.arange(p.param_start.shape[1], device=dev)[None, :] < \
                    p.num_chunks[:, None]
                ps = p.param_start[live].long()  # each chunk: weights ps .. ps + B*C - 1
                ranges.append(torch.stack([ps, ps + p.shape.B * p.shape.C,
                                           torch.full_like(ps, i)]))
            r = torch.cat(ranges, 1) if ranges else torch.zeros(3, 0, dtype=torch.long,
                                                                  device=dev)
            r = r[:, torch.argsort(r[0])]
            start, end, owner = r
            shared = torch.zeros_like(start, dtype=torch.bool)
            if start.numel() > 1:  # sorted by start: overlaps an earlier or the next range
                shared[1:] = start[1:] < torch.cummax(end, 0).values[:-1]
                shared[:-1] |= end[:-1] > start[1:]
            bad = set(owner[shared].tolist())
            for i, p in enumerate(parts):
                p.store = p.nb * p.shape.NC >= self.programs and i not in bad
            keep = torch.tensor([p.store for p in parts] or [False], device=dev)[owner]
            t0 = torch.div(start + 63, 64, rounding_mode="floor")  # the tiles it covers whole
            t1 = torch.div(end, 64, rounding_mode="floor")
            ok = keep & (t1 > t0)
            nt = self.tiles.numel()
            diff = torch.zeros(nt + 1, dtype=torch.int32, device=dev)
            one = torch.ones(int(ok.sum()), dtype=torch.int32, device=dev)
            diff.index_add_(0, t0[ok], one)
            diff.index_add_(0, t1[ok], -one)
            self._zero_flags = (torch.cumsum(diff, 0)[:nt] <= 0).to(torch.int8)
        return self._zero_flags

    def fill(self, cols: int, others: int, width: int) -> int:
        """Batch columns per program: ``cols``, halved (down to 16) while a launch of
        ``others`` programs per column tile would leave the card part idle (the small layers
        of a deep tree: 64 programs for 132 multiprocessors). ``width``: the buffers' column
        stride (the largest batch seen), not the batch: the column tiles (a compile-time
        constant) stay the same when a smaller batch comes (an epoch's last), so it does not
        recompile."""
        if FILL:
            while cols > 16 and others * triton_cdiv(width, cols) < self.programs:
                cols //= 2
        return cols

    def ratio_buffers(self, stride: int, rows: bool = True) -> tuple[Tensor, Tensor]:
        """Scratch for ``flow_ratio``: ``[rows of the largest part, stride]`` ratios (only
        when ``rows``; else a 1-element stand-in) and ``[blocks of the largest part, stride]``
        maxima, kept per stride."""
        parts = [p for st in self.steps for p in st.parts]
        if self._qbuf is None or self._qbuf.shape[1] != stride:
            nb = max([p.nb for p in parts] + [1])
            self._qbuf = None
            self._qbuf = torch.empty((nb, stride), dtype=torch.float32, device=self.device)
        if not rows:
            return self._qbuf[:1, :1], self._qbuf
        if self._ratio is None or self._ratio.shape[1] != stride:
            n = max([p.nb * p.shape.B for p in parts] + [1])
            self._ratio = None
            self._ratio = torch.empty((n, stride), dtype=torch.float32, device=self.device)
        return self._ratio, self._qbuf

    def input_backward(self, flow: Tensor, xt: Tensor, mt: Tensor, scale: Tensor, flag: Tensor,
                       batch: int, counts: Tensor, nstats: list[Tensor], counts_em: Tensor,
                       nstats_em: list[Tensor], zero: bool = True, em: bool = True) -> None:
        """Input statistics weighted by ``scale`` into ``counts``/``nstats`` (zeroed here
        unless ``zero`` is False: then they accumulate); where ``flag[0] != 0`` also
        unweighted into ``counts_em``/``nstats_em`` (added). ``em=False``: the caller's flag
        is 0 (EM statistics are ``counts`` themselves), so no launch is made for them."""
        stride = flow.shape[1]
        batch = col_bound(batch)  # the padding columns' flows are 0
        tiles = triton_cdiv(batch, BT)
        if zero:
            counts.zero_()
        for inp, ns, ns_em in zip(self.inputs, nstats, nstats_em):
            if zero:
                ns.zero_()
            ly = inp.layer
            if inp.runs is not None:  # one-hot GEMM: weighted, then (flag[0] != 0) EM
                kt = triton_cdiv(ly.param_size, inp.KT)
                progs = inp.runs.shape[0] * kt
                ct = triton_cdiv(batch, inp.BT)
                splits = min(ct, triton_cdiv(self.programs, progs))
                for unweighted, c, s in ((False, counts, ns), (True, counts_em, ns_em)):
                    if unweighted and not em:
                        break
                    self.k.input_cat_dot[(progs, splits)](
                        flow, xt, mt, inp.vars, inp.pstart, c, s, scale, flag, inp.runs,
                        ly.node_start, ly.param_size, batch, stride, splits,
                        triton_cdiv(ct, splits), NB=inp.NB, KT=inp.KT, KTILES=kt, BT=inp.BT,
                        EM=unweighted, num_warps=inp.warps)
                continue
            getattr(self.k, inp.bwd)[(triton_cdiv(ly.n, BN), tiles)](
                flow, xt, mt, inp.vars, inp.pstart, counts, ns, counts_em, ns_em, scale, flag,
                ly.node_start, ly.n, batch, stride, BN=BN, BT=BT)

    # ---------------------------------------------------------- flat weights
    def group_reduce(self, mode: int, x: Tensor, out: Tensor, y: Tensor | None = None,
                     aux: Tensor | None = None) -> Tensor:
        """Per-group reductions of flat weight values into ``out [num_groups]`` (see the
        ``segment_reduce`` kernel: 0 sum, 1 sum of x * y, 2 max, 3 sum of exp(x - aux))."""
        start, length, group = self.runs
        nruns = start.numel()
        if nruns:
            self.k.segment_reduce[(triton_cdiv(nruns, RUNS),)](
                x, x if y is None else y, start, length, group, out, out if aux is None else aux,
                nruns, RUNS=RUNS, MAXLEN=RUN_MAX, MODE=mode)
        return out

    def group_ids(self) -> Tensor:
        """``[weights]`` int64 group of each flat weight, ``-1`` for padding: made from the
        runs when an API call needs it (the kernels keep no per-weight group table)."""
        start, length, group = (r.long() for r in self.runs)
        ids = torch.full((len(self.plan.param_group),), -1, dtype=torch.long, device=self.device)
        if start.numel():
            first = torch.repeat_interleave(start - torch.cumsum(length, 0) + length, length)
            pos = first + torch.arange(int(length.sum()), device=self.device)
            ids[pos] = torch.repeat_interleave(group, length)
        return ids

    def weights_from_logits(self, logits: Tensor, norm: Tensor, w: Tensor) -> None:
        """``w`` = per-group softmax of ``logits`` times ``exp(norm)``."""
        g = self.num_groups
        gmax = self.group_reduce(2, logits, torch.full((g,), float("-inf"), device=self.device))
        gsum = self.group_reduce(3, logits, torch.zeros(g, device=self.device), aux=gmax)
        self.k.weights_from_logits[self.tile_grid](logits, self.tiles, self.mixed, gmax, gsum,
                                                   norm, w, self.tiles.numel(), TILES=WTILES)

    def finish_backward(self, w: Tensor, pgrad: Tensor, scale: Tensor, flag: Tensor,
                        flows: Tensor | None, norm: Tensor, out: Tensor | None) -> None:
        """EM flows of a uniform-scale pass into ``flows``; ``d loss / d logits`` into
        ``out`` (either may be None: not wanted; padding in ``out`` is left as it is)."""
        total = w.numel()
        grid = (triton_cdiv(total, BLOCK),)
        if flows is not None:
            self.k.flows_finish[grid](w, pgrad, scale, flag, flows, total, BLOCK=BLOCK)
        if out is not None:
            gs = self.group_reduce(1, w, torch.zeros(self.num_groups, device=self.device),
                                   y=pgrad)
            self.k.logits_grad[self.tile_grid](w, pgrad, self.tiles, self.mixed, gs, norm, out,
                                               self.tiles.numel(), TILES=WTILES)

    def em_weights(self, w: Tensor, flows: Tensor, logits: Tensor, step: float,
                   pseudocount: float, partial: bool = False) -> Tensor:
        """One EM update of ``w`` and ``logits`` from ``flows`` (zeroed; ``partial``: only in
        the tiles of :meth:`em_zero_tiles`); returns the per-group flow sums."""
        gsum = self.group_reduce(0, flows, torch.zeros(self.num_groups, device=self.device))
        zero = self.em_zero_tiles() if partial else gsum
        self.k.em_weights[self.tile_grid](w, flows, self.tiles, self.mixed, gsum,
                                          self.group_size, logits, zero, self.tiles.numel(),
                                          float(step), float(pseudocount), TILES=WTILES,
                                          PARTIAL=partial)
        return gsum

    @property
    def tile_grid(self) -> tuple[int]:
        return (triton_cdiv(self.tiles.numel(), WTILES),)


def flow_writers(steps: list[tuple[np.ndarray, list[_HostPart]]], rows: int
                 ) -> np.ndarray | None:
    """Which scatters may store instead of add: counts, over the whole backward pass, how many
    element flows each node row receives (padding children, slot 0, and ``NEG`` left out), and
    marks a part atomic when one of its children rows receives more than one. ``steps``: per
    sum layer, the children table and the parts. Returns the rows the atomic parts add to,
    sorted (each pass zeroes them first; the stored rows are overwritten, and rows nobody
    writes keep the buffer's initial zeros), or None where that is most rows (then the whole
    buffer is zeroed, one fill)."""
    parts = [p for _, ps in steps for p in ps]
    kids_of = [p.scattered_rows(table, rows) for table, ps in steps for p in ps]
    count = np.bincount(np.concatenate(kids_of), minlength=rows) if kids_of else \
        np.zeros(rows, np.int64)
    shared = count > 1
    zero = np.zeros(rows, bool)
    for p, kids in zip(parts, kids_of):
        p.atomic = bool(shared[kids].any())
        if p.atomic:
            zero[kids] = True
    out = np.flatnonzero(zero)
    if 2 * len(out) > rows:
        for p in parts:
            p.atomic = True  # the buffer is zeroed anyway: keep one kind of kernel
        return None
    return out


def row_tiles(rows: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct ``rows`` as tiles of consecutive rows: ``(first row, count)``, each
    count at most ``size`` (a run of consecutive rows is cut into tiles)."""
    rows = np.asarray(rows, np.int64)
    if not len(rows):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    cut = np.flatnonzero(np.diff(rows) != 1) + 1
    start = np.concatenate([[0], cut])
    first, count = cut_runs(start, np.diff(np.concatenate([start, [len(rows)]])), size)
    return rows[first], count


def cut_runs(start: np.ndarray, length: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Runs ``[start, start + length)`` cut into pieces of at most ``size``, in order:
    ``(first, count)`` per piece."""
    start, length = np.asarray(start, np.int64), np.asarray(length, np.int64)
    pieces = -(-length // size)
    k = np.arange(pieces.sum()) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    first = np.repeat(start, pieces) + k * size
    return first, np.minimum(size, np.repeat(length, pieces) - k * size)


def triton_cdiv(a: int, b: int) -> int:
    return max(1, -(-a // b))


#: longest run one program reduces (longer runs are split), runs per program, elements per
#: program of the elementwise weight kernels
RUN_MAX = 64
RUNS = 64
BLOCK = 1024
#: 64-weight tiles per program of the elementwise weight kernels
WTILES = 16


def group_tiles(param_group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The weights' groups by aligned tiles of 64: ``[tiles]`` the group of a tile whose 64
    weights all belong to it, -1 for a tile of padding only, or ``-2 - r`` for any other tile
    (groups mixed, or with padding), whose weights' groups (-1: padding, or past the end) are
    row ``r`` of ``[mixed, 64]``. One pass over a view of the plan's array (no copy of it:
    155M weights on PD-256; see :func:`row_bounds`)."""
    g = np.asarray(param_group)
    n = len(g)
    tail = np.full((1 if n % 64 else 0, 64), -1, np.int64)
    tail[:, : n % 64] = g[n - n % 64:]
    body = g[: n - n % 64].reshape(-1, 64)
    lo, hi = row_bounds(body)
    lo = np.concatenate([lo, tail.min(axis=1)], dtype=np.int64)
    hi = np.concatenate([hi, tail.max(axis=1)], dtype=np.int64)
    lo, hi = np.maximum(lo, -1), np.maximum(hi, -1)  # any negative id is padding
    mix = lo != hi
    tiles = hi.copy()
    idx = np.flatnonzero(mix)
    tiles[idx] = -2 - np.arange(len(idx))
    if not len(idx):
        return tiles, np.full((1, 64), -1, np.int64)
    rows = body[idx[idx < len(body)]]
    if idx[-1] == len(body):  # the last, partial tile
        rows = np.concatenate([rows, tail])
    return tiles, np.maximum(rows, -1)


def row_bounds(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's minimum and maximum, in one pass by torch's threads (numpy's ``min`` and
    ``max`` are a single-threaded pass each: 0.5 s over PD-256's 155M weight groups)."""
    a = np.ascontiguousarray(a, np.int64)  # (torch views native-order, positive strides)
    with warnings.catch_warnings():  # the plan's arrays are read-only; torch only reads here
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        t = torch.from_numpy(a)
    if not t.numel():
        return a.min(axis=1, initial=0), a.max(axis=1, initial=0)
    lo, hi = torch.aminmax(t, dim=1)
    return lo.numpy(), hi.numpy()


def tile_runs(tiles: np.ndarray, mixed: np.ndarray) -> tuple[np.ndarray, ...]:
    """Runs of consecutive weights of one group (padding left out), none longer than a tile
    (64 = ``RUN_MAX``), from :func:`group_tiles`: a tile of one group is a run, a mixed tile
    is cut where its groups change. int32 (start, length, group), not sorted."""
    uni = np.flatnonzero(tiles >= 0)
    rows = np.flatnonzero(tiles <= -2)
    m = mixed[-2 - tiles[rows]] if len(rows) else np.zeros((0, 64), np.int64)
    new = np.ones(m.shape, bool)
    new[:, 1:] = m[:, 1:] != m[:, :-1]
    r, j = np.nonzero(new)
    end = np.append(j[1:], 64)
    end[np.append(r[1:] != r[:-1], True)] = 64  # a row's last run ends with the tile
    keep = m[r, j] >= 0
    r, j, end = r[keep], j[keep], end[keep]
    if len(tiles) * 64 >= 2**31:
        raise ValueError("weight offsets exceed int32")
    start = np.concatenate([uni * 64, rows[r] * 64 + j], dtype=np.int32)
    length = np.concatenate([np.full(len(uni), 64), end - j], dtype=np.int32)
    group = np.concatenate([tiles[uni], m[r, j]], dtype=np.int32)
    return start, length, group
