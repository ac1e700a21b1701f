"""``schedule-kernels`` (L3 -> L4): the Triton backend's kernel launches for a plan.

Every choice the backend makes about its kernels is made here and shows in the schedule
(:mod:`pccc.ir.schedule`): the kernel shape of each block (fan-in groups), lone blocks and
sibling groups, small parts, element flows stored or added (and the rows a pass zeroes), EM
flows that may be stored, the forward's transposed tiles, the column tiles and warps of every
launch, the fill rule, the batch splits, and the input layers' statistics kernels. The options
are the backend's :class:`~pccc.backends.triton.options.TritonOptions` (``tiles``,
``small_part``, ``precision``, ``round_fanin``, ``flows_in_nodes``) and one property of the
target: ``programs``.

Example::

    sched = run_pipeline(plan, "schedule-kernels{programs=528,fwd=64}")
    sched = schedule_for(plan, TritonOptions(), programs=528)    # the backend's call
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pccc.ir.errors import PassError
from pccc.ir.plan import InputLayer, KernelPlan
from pccc.ir.schedule import InputRows, KernelSchedule, Launch, SumPart, one_writer_per_row
from pccc.ir.stats import sum_partition_stats
from pccc.passes.registry import register_pass
from pccc.passes.schedule_parts import (
    HostPart,
    block_rows,
    em_store,
    flow_writers,
    host_parts,
    layer_tables,
    row_tiles,
    run_table,
    runs,
)

#: rows and columns per program of ``zero_rows``
ZERO_ROWS = 8
ZERO_COLS = 512
#: rows and batch columns per program of the input layers' atomics statistics
INPUT_BWD_ROWS = 16
INPUT_BWD_COLS = 32
#: the forward's batch columns the buffers' width is always a multiple of
MIN_STRIDE_TILE = 64
PRECISIONS = ("tf32", "fp32", "bf16")


def cdiv(a: int, b: int) -> int:
    """``ceil(a / b)``, at least 1 (a launch has one program at least)."""
    return max(1, -(-a // b))


def _pow2(name: str, v: int) -> None:
    if v < 1 or v & (v - 1):
        raise PassError(f"schedule-kernels: option {name}={v} must be a power of two")


def _sum_launches(parts: list[SumPart], t: Mapping[str, int], programs: int
                  ) -> tuple[list[Launch], list[Launch]]:
    """The sum parts' forward launches (in order) and backward launches (layers reversed)."""
    fwd = []
    for i, p in enumerate(parts):
        if p.wide:
            bt, fill = t["wide"], 0
        else:
            bt, fill = t["fwdt" if p.transposed else "fwd"], p.nb
        fwd.append(Launch("sum_fwd", part=i, kernel=p.kernel("sum_fwd"), bt=bt, fill=fill,
                          warps=t["wfwd"]))
    bwd = []
    layers = sorted({p.layer for p in parts}, reverse=True)
    for layer in layers:
        for i, p in enumerate(parts):
            if p.layer == layer:
                bwd += _part_backward(i, p, t, programs)
    return fwd, bwd


def _part_backward(i: int, p: SumPart, t: Mapping[str, int], programs: int) -> list[Launch]:
    """A part's backward: flow ratios (where more than one kernel reads them, or where its
    chunks would recompute them more than twice), its weight gradients (and the lone blocks'
    element flows), then the element flows of its sibling groups."""
    eflow = p.G > 1
    ratio = eflow or (p.NC > 1 and not (p.small and p.NC <= 2))
    atomic = p.write == "atomic"
    out = []
    if ratio:
        out.append(Launch("flow_ratio", part=i, kernel="flow_ratio", bt=t["ratio"], fill=p.nb))
    bt = t["wideb"] if p.wide else t["bwd" if eflow else "bwds"]
    out.append(Launch("sum_bwd", part=i, kernel=p.kernel("sum_bwd"), bt=bt,
                      max_splits=cdiv(programs, p.nb * p.NC),
                      warps=t["wbwd" if eflow else "wbwds"], ratio=ratio, scatter=not eflow,
                      atomic=atomic))
    if eflow:  # last: where flows replace values in the node rows, it reads them first
        bt, fill = (t["wideb"], 0) if p.wide else (t["eflow"], p.groups * p.NC)
        out.append(Launch("sum_eflow", part=i, kernel=p.kernel("sum_eflow"), bt=bt, fill=fill,
                          warps=t["weflow"], atomic=atomic))
    return out


def input_kernel(ly: InputLayer, direction: str) -> str:
    """The generated module's input kernel of a layer: ``input_fwd_categorical``,
    ``input_bwd_binomial_t10``."""
    if ly.dist == "binomial":
        return f"input_{direction}_binomial_t{int(dict(ly.attrs).get('total', 0))}"
    return f"input_{direction}_{ly.dist}"


def input_statistics(k: int, ly: InputLayer, t: Mapping[str, int], programs: int) -> Launch:
    """An input layer's statistics launch: for a categorical layer whose values fill a
    tensor-core tile (16 at least) and whose variables have 4 nodes or more on average, one-hot
    GEMMs over runs of one variable's nodes (``input_cat_dot``: a dot per run instead of an
    atomic per node and column; ``catnb``: the longest run, below 16 never); else atomics."""
    cap = t["catnb"]
    if ly.dist == "categorical" and ly.param_size >= 16 and ly.n and cap >= 16:
        table = run_table(ly.vars, cap)
        if ly.n >= 4 * len(table):
            kt = min(t["catkt"], 1 << (ly.param_size - 1).bit_length())
            progs = len(table) * cdiv(ly.param_size, kt)
            return Launch("input_cat_dot", input=k, kernel="input_cat_dot", bt=t["catbt"],
                          warps=t["wcat"], max_splits=cdiv(programs, progs),
                          nb=int(table.shape[1]), kt=kt)
    return Launch("input_bwd", input=k, kernel=input_kernel(ly, "bwd"), bn=INPUT_BWD_ROWS,
                  bt=INPUT_BWD_COLS)


def _parts(plan: KernelPlan, small_part: int, programs: int, round_fanin: bool = False,
           flows_in_nodes: bool = False) -> tuple[list[SumPart], np.ndarray | None]:
    """The sum parts of a plan, and the flow rows its backward zeroes (None: all).
    ``flows_in_nodes``: where the only rows of several writers are those of small parts'
    sibling blocks, those parts are cut as large ones are, so that every row has one writer
    (:func:`~pccc.ir.schedule.one_writer_per_row`)."""
    tables = layer_tables(plan)
    parts, zero = _cut(plan, tables, small_part, programs, round_fanin, False)
    if flows_in_nodes and any(p.small and p.write == "atomic" for p in parts):
        again = _cut(plan, tables, small_part, programs, round_fanin, True)
        inputs = [InputRows(ly.node_start, ly.n, ly.param_size) for ly in plan.input_layers]
        if one_writer_per_row(again[0], inputs, plan.num_node_slots, plan.root_slot,
                              plan.num_roots):
            return again
    return parts, zero


def _cut(plan: KernelPlan, tables: list[np.ndarray], small_part: int, programs: int,
         round_fanin: bool, lone_small: bool) -> tuple[list[SumPart], np.ndarray | None]:
    """:func:`_parts`'s cut of the plan (``lone_small``: :func:`host_parts`')."""
    rows = plan.num_node_slots + 1
    hps: list[HostPart] = []
    for li, (sl, table) in enumerate(zip(plan.sum_layers(), tables)):
        hps += host_parts(li, sl, table, small_part, round_fanin, lone_small)
    kids = [hp.scattered_rows(tables[hp.layer], rows) for hp in hps]
    zero = flow_writers(hps, kids, rows)
    store = em_store(hps, programs)
    parts = []
    for hp, kid, st in zip(hps, kids, store):
        p = hp.p
        counts = sum_partition_stats(plan, p, hp.blocks)
        chunks = int(p.num_chunks[hp.blocks[hp.sib[:, 0]]].sum())
        parts.append(SumPart(
            hp.layer, hp.index, p.block_size, p.chunk_size, hp.fanin, p.max_chunks,
            hp.blocks, hp.sib, hp.small, "atomic" if hp.atomic else "store", st,
            block_rows(p.node_start[hp.blocks], p.block_size), runs(kid), counts.tiles,
            chunks if hp.sib.shape[1] > 1 else counts.tiles, counts.weights))
    if zero is None:
        return parts, None
    first, count = row_tiles(zero, ZERO_ROWS)
    return parts, np.column_stack([first, count]).reshape(-1, 2)


def build_schedule(plan: KernelPlan, tiles: Mapping[str, int], *, precision: str = "tf32",
                   programs: int = 8, small_part: int = 1 << 17,
                   round_fanin: bool = False, flows_in_nodes: bool = False) -> KernelSchedule:
    """The schedule of ``plan`` (see the module docstring); ``tiles``: every tile by name
    (:data:`pccc.backends.triton.options.DEFAULT_TILES`'s keys)."""
    t = tiles
    parts, zero = _parts(plan, small_part, programs, round_fanin, flows_in_nodes)
    fwd = [Launch("input_fwd", input=k, kernel=input_kernel(ly, "fwd"), bn=t["inbn"], bt=t["inbt"],
                  warps=t["win"]) for k, ly in enumerate(plan.input_layers)]
    sum_fwd, sum_bwd = _sum_launches(parts, t, programs)
    bwd = []
    if zero is None:
        bwd.append(Launch("flow_zero"))
    elif len(zero):
        bwd.append(Launch("flow_zero", kernel="zero_rows", bn=ZERO_ROWS, bt=ZERO_COLS))
    bwd.append(Launch("root_flows"))
    bwd += sum_bwd
    bwd += [input_statistics(k, ly, t, programs) for k, ly in enumerate(plan.input_layers)]
    return KernelSchedule(
        "triton", plan.num_node_slots, plan.root_slot, plan.num_roots, precision, programs,
        max(t["fwd"], t["bwd"], t["eflow"], MIN_STRIDE_TILE),
        tuple(InputRows(ly.node_start, ly.n, ly.param_size) for ly in plan.input_layers),
        tuple(parts), zero,
        tuple(fwd + sum_fwd), tuple(bwd))


@register_pass("schedule-kernels", input_level="L3", output_level="L4")
def schedule_kernels(plan: KernelPlan, *, precision: str = "tf32", programs: int = 8,
                     small_part: int = 1 << 17, fwd: int = 32, bwd: int = 32, eflow: int = 64,
                     wfwd: int = 4, wbwd: int = 4, weflow: int = 8, bwds: int = 32,
                     wbwds: int = 4, inbn: int = 16, inbt: int = 128, win: int = 4,
                     ratio: int = 32, wide: int = 32, wideb: int = 16, fwdt: int = 64,
                     catnb: int = 64, catkt: int = 256, catbt: int = 32, wcat: int = 8,
                     round_fanin: bool = False, flows_in_nodes: bool = False) -> KernelSchedule:
    """Schedule the Triton backend's kernel launches for a plan (L3 -> L4).

    Args:
        precision: tile precision of the dot products (tf32, fp32, bf16).
        programs: programs a launch aims for: 4 per multiprocessor of the target.
        small_part: parts of at most this many weights run their backward as lone blocks.
        fwd: batch columns per program of the sum forward.
        bwd: batch columns per program of the backward of sibling groups.
        eflow: batch columns per program of the element flows of sibling groups.
        wfwd: warps of the sum forward.
        wbwd: warps of the backward of sibling groups.
        weflow: warps of the element flows.
        bwds: batch columns per program of the backward of lone blocks.
        wbwds: warps of the backward of lone blocks.
        inbn: node rows per program of the input forward.
        inbt: batch columns per program of the input forward.
        win: warps of the input forward.
        ratio: batch columns per program of the flow ratios.
        wide: batch columns per program of the forward over products wider than 8.
        wideb: batch columns per program of the backward over products wider than 8.
        fwdt: batch columns per program of the transposed forward (blocks under 64 rows).
        catnb: longest run of one variable's nodes in a one-hot GEMM (below 16: never).
        catkt: values per tile of the one-hot GEMM.
        catbt: batch columns per step of the one-hot GEMM.
        wcat: warps of the one-hot GEMM.
        round_fanin: a partition's narrow fan-in rounded up to a power of two (at most 8),
            so that partitions of nearby fan-ins share kernels: fewer kernels to compile; the
            kernels read no child past an element's own nor past its layer table's row.
        flows_in_nodes: small parts whose blocks have siblings are cut as large ones are
            where that gives every node row one writer in a backward pass, so that the
            backward may keep its flows in the node rows.
    """
    if precision not in PRECISIONS:
        raise PassError(f"schedule-kernels: precision {precision!r} is not one of "
                        f"{', '.join(PRECISIONS)}")
    if programs < 1:
        raise PassError("schedule-kernels: programs must be at least 1")
    tiles = dict(fwd=fwd, bwd=bwd, eflow=eflow, wfwd=wfwd, wbwd=wbwd, weflow=weflow,
                 bwds=bwds, wbwds=wbwds, inbn=inbn, inbt=inbt, win=win, ratio=ratio,
                 wide=wide, wideb=wideb, fwdt=fwdt, catnb=catnb, catkt=catkt, catbt=catbt,
                 wcat=wcat)
    for k, v in tiles.items():
        if k != "catnb":
            _pow2(k, v)
    return build_schedule(plan, tiles, precision=precision, programs=programs,
                          small_part=small_part, round_fanin=round_fanin,
                          flows_in_nodes=flows_in_nodes)


def schedule_for(plan: KernelPlan, options: Any, programs: int) -> KernelSchedule:
    """The schedule the backend runs: ``options`` (a ``TritonOptions``) give the tiles, the
    small-part bound and the precision; ``programs`` is the device's."""
    return schedule_kernels(plan, precision=options.precision, programs=programs,
                            small_part=options.small_part, round_fanin=options.round_fanin,
                            flows_in_nodes=options.flows_in_nodes,
                            **dict(options.tiles))
