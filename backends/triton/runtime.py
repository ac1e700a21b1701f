"""Device-side tables of a plan and the launches of its kernel schedule.

:class:`DevicePlan` carries out an L4 :class:`~pccc.ir.schedule.KernelSchedule` (made by the
``schedule-kernels`` pass from the module's :class:`~pccc.backends.triton.options.
TritonOptions`; every choice of kernel, tile, write mode and launch order is the schedule's).
It turns the plan's index tables into int32 tensors once (numpy, per part, never per edge; the
sum parts' tables copied to the device as one buffer, each input layer's as one more) and runs
the schedule's forward launches (input layers, then each sum part with its product layer fused
in) and backward launches (flow rows zeroed, root flows, per sum part in reverse layer order its
flow ratios, element flows and weight gradients; then the input layers' statistics).
Buffers are ``[slots + 1, stride]``: row ``NEG = num_node_slots`` holds ``-inf`` and is where
element rows that no partition writes (reserved slots), and padding elements, point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pccc.backends.triton import weight_tiles
from pccc.backends.triton.weight_tiles import group_tiles, tile_runs
from pccc.ir.plan import InputLayer, KernelPlan
from pccc.ir.schedule import PART_KINDS, KernelSchedule, Launch, SumPart
from pccc.passes.schedule_kernels import schedule_for
from pccc.passes.schedule_parts import layer_tables, run_table

#: arrays of the schedule's text in ``model.artifacts`` print as their shape above this size
ELIDE_ABOVE = 256
#: the run-time 0 added to atomic addresses (see ``_scatter`` in :mod:`.kernels_sum`)
UNALIGNED = 0
#: the kernels' column bound is the batch rounded up to a multiple of this (see
#: :func:`col_bound`)
COL_ALIGN = 16


def col_bound(batch: int) -> int:
    """The columns the kernels compute for a batch: rounded up to ``COL_ALIGN``. Triton
    specializes integer arguments on divisibility by 16; a bound that always is gives every
    batch size the same compiled kernels, and lets the compiler vectorize the loads and
    stores masked by ``cols < bound``. The padding columns hold missing inputs (forward) and
    root flow 0 (backward): every flow, gradient and statistic they add is 0."""
    return -(-batch // COL_ALIGN) * COL_ALIGN


#: table offsets in the packed upload are multiples of this many int32 (64 bytes: Triton
#: specializes pointer arguments on 16-byte alignment)
ALIGN = 16


def fits_int32(a: np.ndarray) -> bool:
    """Whether every value of an index table is below ``weight_tiles.INDEX_LIMIT`` (2^31) and
    at least its negative."""
    lim = weight_tiles.INDEX_LIMIT
    return not a.size or (lim >= 2**31 and a.dtype == np.int32) or \
        (a.max() < lim and a.min() >= -lim)


def index_tensor(a: np.ndarray, device: torch.device) -> Tensor:
    """An index table on ``device``: int32 where its values fit, else int64 (the weight
    offsets of a plan of 2^31 weights or more). The kernels read either: they widen every
    offset they load to int64."""
    a = np.asarray(a)
    return torch.from_numpy(np.ascontiguousarray(a, np.int32 if fits_int32(a) else np.int64)
                            ).to(device)


def to_device(groups: list[list[np.ndarray]], device: torch.device) -> list[list[Tensor]]:
    """Index tables as int32 tensors on ``device``, grouped as given: packed into one host
    buffer (each table at an ``ALIGN``-ed offset) and copied once, each table a view of it.
    A table with a value beyond int32 is an int64 tensor of its own (:func:`index_tensor`)."""
    flat = [np.asarray(a) for g in groups for a in g]
    narrow = [fits_int32(a) for a in flat]
    sizes = [-(-a.size // ALIGN) * ALIGN if n else 0 for a, n in zip(flat, narrow)]
    buf = np.zeros(sum(sizes), np.int32)
    at = 0
    views: list[tuple[int, tuple[int, ...]] | Tensor] = []
    for a, size, n in zip(flat, sizes, narrow):
        if not n:
            views.append(torch.from_numpy(np.ascontiguousarray(a, np.int64)).to(device))
            continue
        buf[at: at + a.size] = a.ravel()
        views.append((at, a.shape))
        at += size
    dev = torch.from_numpy(buf).to(device)
    tensors = iter([v if isinstance(v, Tensor) else dev[v[0]: v[0] + math.prod(v[1])].view(v[1])
                    for v in views])
    return [[next(tensors) for _ in g] for g in groups]


@dataclass
class _SumPart:
    """A schedule part's tables on the device."""

    spec: SumPart
    children: Tensor
    """the children table of its sum layer's product layer"""
    row: int
    """that table's row length"""
    node_start: Tensor
    chunk_start: Tensor
    param_start: Tensor
    num_chunks: Tensor
    sib: Tensor
    """``[groups, G]`` blocks (local indices, -1 padding) that read the same elements"""
    rbase: Tensor
    """``[nb]`` each block's first row in the flow-ratio scratch (``arange(nb) * B``)"""

    @staticmethod
    def tables(spec: SumPart, plan: KernelPlan) -> list[np.ndarray]:
        """Its tables on the host, in the order of the fields after ``row``."""
        p = plan.sum_layers()[spec.layer].partitions[spec.partition]
        b = spec.blocks
        return [p.node_start[b], p.chunk_start[b], p.param_start[b], p.num_chunks[b], spec.sib,
                np.arange(len(b)) * spec.B]


@dataclass
class _Input:
    layer: InputLayer
    fwd: Launch
    bwd: Launch
    """``input_bwd`` (atomics) or ``input_cat_dot`` (one-hot GEMMs over ``runs``)"""
    vars: Tensor
    pstart: Tensor
    values: Tensor
    logc: Tensor
    runs: Tensor | None = None
    """``[runs, NB]`` layer node indices for ``input_cat_dot`` (``-1`` padding)"""


def _logc(total: int) -> np.ndarray:
    return np.array([math.lgamma(total + 1) - math.lgamma(k + 1) - math.lgamma(total - k + 1)
                     for k in range(total + 1)])


def device_programs(device: torch.device) -> int:
    """Programs a launch aims for on ``device``: 4 per multiprocessor (8 on the CPU)."""
    if device.type == "cuda":
        return 4 * torch.cuda.get_device_properties(device).multi_processor_count
    return 8


class DevicePlan:
    """A plan's index tables on one device, and the launches of its schedule.

    Args:
        plan: the L3 plan.
        kernels: the generated kernel module.
        device: where the tables live and the kernels run.
        options: a ``TritonOptions`` (None: the defaults); the schedule is made from it.
        schedule: the schedule to run instead (from ``schedule-kernels`` on ``plan``).
    """

    def __init__(self, plan: KernelPlan, kernels: ModuleType, device: torch.device,
                 options: Any = None, schedule: KernelSchedule | None = None):
        self.plan = plan
        self.k = kernels
        self.device = device
        self.neg = plan.num_node_slots
        self.rows = plan.num_node_slots + 1
        self._ratio: Tensor | None = None
        self._qbuf: Tensor | None = None
        if schedule is None:
            from pccc.backends.triton.options import TritonOptions

            programs = options.programs if options is not None and options.programs else \
                device_programs(device)
            schedule = schedule_for(plan, options or TritonOptions(), programs)
        #: the L4 schedule this plan runs
        self.schedule = schedule
        #: programs a backward launch aims for (batch splits fill the card on small layers)
        self.programs = schedule.programs
        #: whether :meth:`sum_backward` may keep the flows in the node rows (``flow=None``)
        self.in_nodes = (options is None or options.flows_in_nodes) and \
            schedule.flows_in_nodes()
        self.nin = schedule.first_sum_row
        tables = layer_tables(plan)
        zero = schedule.flow_zero
        tiles, mixed = group_tiles(plan.param_group)
        children, *part_tables, zero_tiles, misc = to_device(
            [tables, *(_SumPart.tables(sp, plan) for sp in schedule.parts),
             [zero[:, 0], zero[:, 1]] if zero is not None else [],
             [plan.group_size, tiles, mixed, *tile_runs(tiles, mixed)]], device)
        #: per schedule part, its device tables
        self.parts = [_SumPart(sp, children[sp.layer], int(tables[sp.layer].shape[1]), *t)
                      for sp, t in zip(schedule.parts, part_tables)]
        #: flow rows a pass zeroes, as ``(first row, count)`` tiles (None: all of them)
        self.zero_tiles = (zero_tiles[0], zero_tiles[1]) if zero is not None else None
        self.group_size, self.tiles, self.mixed, *runs = misc
        self.runs = tuple(runs)
        self.num_groups = len(plan.group_size)
        fwd = {ln.input: ln for ln in schedule.forward if ln.input >= 0}
        bwd = {ln.input: ln for ln in schedule.backward if ln.input >= 0}
        self.inputs = [self._input(ly, fwd[k], bwd[k]) for k, ly in enumerate(plan.input_layers)]
        cont = np.zeros(plan.num_vars, dtype=bool)
        for ly in plan.input_layers:
            if ly.dist == "gaussian":
                cont[np.asarray(ly.vars, dtype=np.int64)] = True
        #: the continuous variables (their -1 is a value; None: there are none)
        self.cont_vars = torch.from_numpy(cont).to(device) if cont.any() else None
        self._zero_flags: Tensor | None = None

    def _input(self, ly: InputLayer, fwd: Launch, bwd: Launch) -> _Input:
        """An input layer's tables on the device, for its schedule launches."""
        d = self.device
        total = int(dict(ly.attrs).get("total", 0)) if ly.dist == "binomial" else 0
        values = ly.values if ly.values is not None else np.zeros(1, np.int64)
        logc = _logc(total) if ly.dist == "binomial" else np.zeros(1)
        runs = run_table(ly.vars, bwd.nb) if bwd.kind == "input_cat_dot" else None
        var_t, pstart, vals, *run_t = to_device(
            [[ly.vars, ly.param_start, values] + ([runs] if runs is not None else [])], d)[0]
        return _Input(ly, fwd, bwd, var_t, pstart, vals,
                      torch.tensor(logc, dtype=torch.float32, device=d),
                      run_t[0] if runs is not None else None)

    def schedule_text(self) -> str:
        """The schedule's ``.pcir`` text, arrays of more than ``ELIDE_ABOVE`` entries as their
        shape only (``model.artifacts["schedule"]``)."""
        from pccc.ir.print_schedule import print_schedule

        return print_schedule(self.schedule, elide_above=ELIDE_ABOVE)

    def stride_for(self, batch: int) -> int:
        """The buffers' column stride for a batch: a multiple of the schedule's stride tile."""
        col = self.schedule.stride_tile
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
        cols = col_bound(batch)
        for inp, (theta, aux) in zip(self.inputs, params):
            ly, ln = inp.layer, inp.fwd
            getattr(self.k, ln.kernel)[(input_programs(ly.n, cols, ln),)](
                node, xt, mt, inp.vars, inp.pstart, inp.values, theta, aux,
                ly.node_start, ly.n, cols, stride, BN=ln.bn, BT=ln.bt, num_warps=ln.warps)
        self.sum_forward(node, batch, w)

    def sum_forward(self, node: Tensor, batch: int, w: Tensor) -> None:
        """The sum parts (products fused in) over a node buffer whose inputs are filled."""
        stride = node.shape[1]
        batch = col_bound(batch)
        for ln in self.schedule.forward:
            if ln.kind != "sum_fwd":
                continue
            p = self.parts[ln.part]
            bt = self.tile(ln, stride)
            getattr(self.k, ln.kernel)[(p.spec.nb, triton_cdiv(batch, bt))](
                node, w, p.children, p.row, p.node_start, p.chunk_start, p.param_start,
                p.num_chunks, batch, stride, BT=bt, num_warps=ln.warps)

    def sum_backward(self, node: Tensor, flow: Tensor | None, scale: Tensor, flag: Tensor,
                     batch: int, w: Tensor, pgrad: Tensor, flows: Tensor, em_direct: bool = False,
                     inplace: bool = False, store: bool = False,
                     root_flow: Tensor | None = None) -> None:
        """Node flows (flow 1 per root and example, or ``root_flow``: ``[num_roots, batch]``)
        into ``flow``; ``sum_b scale_b * ...`` weight gradients into ``pgrad`` (zeroed here);
        where ``flag[0] != 0``, EM flows added to ``flows``. ``em_direct``: ``pgrad`` is the EM
        flows accumulator instead (not zeroed; ``scale`` must be 1 and ``flag`` 0): ``w`` times
        the sums are added to it. ``inplace``: the flow ratios overwrite the sum rows' values
        in ``node`` (no later kernel reads them): the buffer no longer holds the forward's
        values afterwards. ``store`` (with ``em_direct``): the EM flows of the parts that can
        (their ``em_store``) are stored, not added (an EM step with :meth:`em_zero_tiles` left
        old values there). ``flow`` None (with ``inplace``, where :attr:`in_nodes`): the flows
        go into the node rows themselves (an input row's flow, a sum row's ``log f - s``:
        :meth:`~pccc.ir.schedule.KernelSchedule.flows_in_nodes`); the input rows then hold
        the input nodes' flows for :meth:`input_backward`."""
        if flow is None and not (inplace and self.in_nodes):
            raise ValueError("sum_backward: flows in the node rows need inplace=True and a "
                             "schedule whose rows have one writer each")
        if store:
            self.em_zero_tiles()
        stride = node.shape[1]
        real, batch = batch, col_bound(batch)
        ready = False
        for ln in self.schedule.backward:
            if ln.kind == "flow_zero":
                if flow is not None:  # (in the node rows every row is stored)
                    self._zero_flows(ln, flow, stride, batch)
            elif ln.kind == "root_flows":
                if flow is None:
                    self._root_ratios(node, real, batch, root_flow)
                else:
                    self._root_flows(flow, real, batch, root_flow)
            elif ln.kind in PART_KINDS:
                if not ready:
                    scratch, qbuf = self._backward_start(pgrad, em_direct, stride, inplace)
                    rbuf, ready = node if inplace else scratch, True
                p = self.parts[ln.part]
                rstart = p.node_start if inplace else p.rbase
                self._part_backward(ln, p, node, flow, scale, flag, batch, stride, w, pgrad,
                                    flows, (rbuf, rstart, qbuf),
                                    (em_direct, store and em_direct and p.spec.em_store))
        if not ready:
            self._backward_start(pgrad, em_direct, stride, inplace)

    def _zero_flows(self, ln: Launch, flow: Tensor, stride: int, batch: int) -> None:
        if self.zero_tiles is None:
            flow.zero_()
            return
        start, count = self.zero_tiles
        self.k.zero_rows[(start.numel(), triton_cdiv(batch, ln.bt))](
            flow, start, count, stride, batch, R=ln.bn, CB=ln.bt)

    def _root_flows(self, flow: Tensor, real: int, batch: int, root_flow: Tensor | None
                    ) -> None:
        roots = slice(self.plan.root_slot, self.plan.root_slot + self.plan.num_roots)
        if root_flow is None:
            flow[roots, :real] = 1.0
        else:
            flow[roots, :real] = root_flow
        if batch > real:  # padding columns (see col_bound): no flow
            flow[roots, real:batch] = 0.0

    def _root_ratios(self, node: Tensor, real: int, batch: int, root_flow: Tensor | None
                     ) -> None:
        """The roots' flows as the node rows keep them: ``log f - s`` over the values ``s``
        (-inf where ``f = 0`` or ``s = -inf``, as the kernels' ``_log_ratio``)."""
        roots = slice(self.plan.root_slot, self.plan.root_slot + self.plan.num_roots)
        s = node[roots, :real]
        f = torch.ones_like(s) if root_flow is None else root_flow
        live = (f > 0) & (s > float("-inf"))
        node[roots, :real] = torch.where(live, torch.log(torch.where(live, f, 1.0)) - s,
                                         float("-inf"))
        if batch > real:  # padding columns (see col_bound): no flow
            node[roots, real:batch] = float("-inf")

    def _backward_start(self, pgrad: Tensor, em_direct: bool, stride: int, inplace: bool
                        ) -> tuple[Tensor, Tensor]:
        if not em_direct:
            pgrad.zero_()
        return self.ratio_buffers(stride, rows=not inplace)

    def _part_backward(self, ln: Launch, p: _SumPart, node: Tensor, flow: Tensor | None,
                       scale: Tensor, flag: Tensor, batch: int, stride: int, w: Tensor,
                       pgrad: Tensor, flows: Tensor, ratios: tuple[Tensor, Tensor, Tensor],
                       em: tuple[bool, bool]) -> None:
        """One backward launch of a part (``ratios``: scratch, its rows, maxima; ``em``:
        EM-direct, and EM flows stored)."""
        rbuf, rstart, qbuf = ratios
        sp = p.spec
        nodes = flow is None
        fl = node if flow is None else flow  # (not read where the flows are in the node rows)
        if ln.kind == "flow_ratio":
            br = self.tile(ln, stride)
            self.k.flow_ratio[(sp.nb, triton_cdiv(batch, br))](
                node, fl, p.node_start, rbuf, rstart, qbuf, batch, stride, B=sp.B,
                BP=1 << max(0, (sp.B - 1).bit_length()), BT=br, NODES=nodes)
        elif ln.kind == "sum_eflow":
            be = self.tile(ln, stride)
            getattr(self.k, ln.kernel)[(sp.groups, sp.NC, triton_cdiv(batch, be))](
                node, fl, w, p.children, p.row, p.sib, p.node_start, p.chunk_start,
                p.param_start, p.num_chunks, sp.NC, batch, stride, UNALIGNED, rbuf, rstart, qbuf,
                self.nin, G=sp.G, BT=be, ATOMIC=ln.atomic, NODES=nodes, num_warps=ln.warps)
        else:
            tiles = triton_cdiv(batch, ln.bt)
            splits = min(tiles, ln.max_splits)
            getattr(self.k, ln.kernel)[(sp.nb, sp.NC, splits)](
                node, fl, w, pgrad, flows, scale, flag, p.children, p.row, p.node_start,
                p.chunk_start, p.param_start, p.num_chunks, sp.NC, batch, stride, splits,
                triton_cdiv(tiles, splits), UNALIGNED, rbuf, rstart, qbuf, self.nin, BT=ln.bt,
                SCATTER=ln.scatter, EMW=em[0], RATIO=ln.ratio, ATOMIC=ln.atomic, STORE=em[1],
                NODES=nodes, num_warps=ln.warps)

    def em_zero_tiles(self) -> Tensor:
        """``[tiles]`` int8: 1 where a 64-weight tile holds a weight whose EM flows the
        backward adds (an EM step zeroes them), 0 where the next EM-direct backward stores
        every weight's flow: the tiles inside the chunks of the parts whose EM flows the
        schedule stores (``em_store``), made on first use."""
        if self._zero_flags is None:
            dev = self.device
            ranges = [torch.zeros(2, 0, dtype=torch.long, device=dev)]
            for p in self.parts:
                if not p.spec.em_store:
                    continue
                live = torch.arange(p.param_start.shape[1], device=dev)[None, :] < \
                    p.num_chunks[:, None]
                ps = p.param_start[live].long()  # each chunk: weights ps .. ps + B*C - 1
                ranges.append(torch.stack([ps, ps + p.spec.B * p.spec.C]))
            start, end = torch.cat(ranges, 1)
            t0 = torch.div(start + 63, 64, rounding_mode="floor")  # the tiles it covers whole
            t1 = torch.div(end, 64, rounding_mode="floor")
            ok = t1 > t0
            nt = self.tiles.numel()
            diff = torch.zeros(nt + 1, dtype=torch.int32, device=dev)
            one = torch.ones(int(ok.sum()), dtype=torch.int32, device=dev)
            diff.index_add_(0, t0[ok], one)
            diff.index_add_(0, t1[ok], -one)
            self._zero_flags = (torch.cumsum(diff, 0)[:nt] <= 0).to(torch.int8)
        return self._zero_flags

    def tile(self, ln: Launch, width: int) -> int:
        """A launch's batch columns per program: its ``bt``; where it has a ``fill``, halved
        (down to 16) while ``fill`` programs per column tile would leave the card part idle.
        ``width``: the buffers' column stride (the largest batch seen), not the batch: the
        column tiles (a compile-time constant) stay the same when a smaller batch comes, so
        it does not recompile."""
        cols = ln.bt
        if ln.fill:
            while cols > 16 and ln.fill * triton_cdiv(width, cols) < self.programs:
                cols //= 2
        return cols

    def ratio_buffers(self, stride: int, rows: bool = True) -> tuple[Tensor, Tensor]:
        """Scratch for ``flow_ratio``: ``[rows of the largest part, stride]`` ratios (only
        when ``rows``; else a 1-element stand-in) and ``[blocks of the largest part, stride]``
        maxima, kept per stride."""
        parts = self.schedule.parts
        if self._qbuf is None or self._qbuf.shape[1] != stride:
            nb = max([p.nb for p in parts] + [1])
            self._qbuf = None
            self._qbuf = torch.empty((nb, stride), dtype=torch.float32, device=self.device)
        if not rows:
            return self._qbuf[:1, :1], self._qbuf
        if self._ratio is None or self._ratio.shape[1] != stride:
            n = max([p.nb * p.B for p in parts] + [1])
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
        if zero:
            counts.zero_()
        for inp, ns, ns_em in zip(self.inputs, nstats, nstats_em):
            if zero:
                ns.zero_()
            ly, ln = inp.layer, inp.bwd
            if inp.runs is not None:  # one-hot GEMM: weighted, then (flag[0] != 0) EM
                kt = triton_cdiv(ly.param_size, ln.kt)
                progs = inp.runs.shape[0] * kt
                ct = triton_cdiv(batch, ln.bt)
                splits = min(ct, ln.max_splits)
                for unweighted, c, s in ((False, counts, ns), (True, counts_em, ns_em)):
                    if unweighted and not em:
                        break
                    self.k.input_cat_dot[(progs, splits)](
                        flow, xt, mt, inp.vars, inp.pstart, c, s, scale, flag, inp.runs,
                        ly.node_start, ly.param_size, batch, stride, splits,
                        triton_cdiv(ct, splits), NB=ln.nb, KT=ln.kt, KTILES=kt, BT=ln.bt,
                        EM=unweighted, num_warps=ln.warps)
                continue
            getattr(self.k, ln.kernel)[(input_programs(ly.n, batch, ln),)](
                flow, xt, mt, inp.vars, inp.pstart, counts, ns, counts_em, ns_em, scale, flag,
                ly.node_start, ly.n, batch, stride, BN=ln.bn, BT=ln.bt)

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

    def em_weights(self, w: Tensor, flows: Tensor, logits: Tensor | None, step: float,
                   pseudocount: float, partial: bool = False) -> Tensor:
        """One EM update of ``w`` and ``logits`` (None: not kept, see
        :meth:`~pccc.backends.triton.compiled.TritonExecutor.materialize`) from ``flows``
        (zeroed; ``partial``: only in the tiles of :meth:`em_zero_tiles`); returns the
        per-group flow sums."""
        gsum = self.group_reduce(0, flows, torch.zeros(self.num_groups, device=self.device))
        zero = self.em_zero_tiles() if partial else gsum
        self.k.em_weights[self.tile_grid](w, flows, self.tiles, self.mixed, gsum,
                                          self.group_size, w if logits is None else logits,
                                          zero, self.tiles.numel(), float(step),
                                          float(pseudocount), TILES=WTILES, PARTIAL=partial,
                                          LOGITS=logits is not None)
        return gsum

    @property
    def tile_grid(self) -> tuple[int]:
        return (triton_cdiv(self.tiles.numel(), WTILES),)


def triton_cdiv(a: int, b: int) -> int:
    return max(1, -(-a // b))


def input_programs(n: int, batch: int, ln: Launch) -> int:
    """The programs of an input kernel's one-axis grid over ``n`` node rows and ``batch``
    columns: node tiles times column tiles (columns fastest in the kernel)."""
    return triton_cdiv(n, ln.bn) * triton_cdiv(batch, ln.bt)


#: longest run one program reduces (longer runs are split), runs per program, elements per
#: program of the elementwise weight kernels
RUN_MAX = 64
RUNS = 64
BLOCK = 1024
#: 64-weight tiles per program of the elementwise weight kernels
WTILES = 16
