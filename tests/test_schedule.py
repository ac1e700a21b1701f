"""The L4 kernel schedule: golden dumps of the ``schedule-kernels`` pass, round trips through
``pccc.ir.parse``, the pass's options, and its decisions against brute-force recounts over the
plan's tables (an element at a time, in Python).
``PCCC_UPDATE_GOLDEN=1 pytest tests/test_schedule.py`` rewrites the golden files for review."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from pccc.ir import parse, to_text
from pccc.ir.errors import PassError
from pccc.ir.parse_lowered import read_pcir_any
from pccc.ir.plan import KernelPlan, ProductLayer, SumLayer
from pccc.ir.schedule import KernelSchedule
from pccc.ir.schedule_verify import verify_schedule
from pccc.passes import compile_plan, run_pipeline
from pccc.passes.schedule_kernels import schedule_kernels
from tests.strategies import circuits

LEVELS = Path(__file__).parent / "golden" / "levels"
GOLDEN = Path(__file__).parent / "golden" / "schedule"
CASES = sorted(p.name for p in LEVELS.iterdir() if p.is_dir())


def _plan(case: str) -> KernelPlan:
    return read_pcir_any(LEVELS / case / "L3.pcir")


@pytest.mark.parametrize("case", CASES)
def test_schedule_prints_as_expected(case: str) -> None:
    """The golden L3 plans' schedules print exactly as ``tests/golden/schedule/<case>.pcir``,
    which reads back to the value, and no line passes 100 characters."""
    sched = run_pipeline(_plan(case), "schedule-kernels")
    got = to_text(sched)
    expected = GOLDEN / f"{case}.pcir"
    if os.environ.get("PCCC_UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        expected.write_text(got)
    assert got == expected.read_text(), expected
    assert read_pcir_any(expected) == sched
    assert max(len(line) for line in got.splitlines()) <= 100


def _children(plan: KernelPlan, layer: int) -> dict[int, list[int]]:
    """Element slot -> its real children, of the product layer before sum layer ``layer``."""
    prods = [ly for ly in plan.layers if isinstance(ly, ProductLayer)]
    out: dict[int, list[int]] = {}
    for pp in prods[layer].partitions:
        for e, row in enumerate(pp.children.tolist()):
            out[pp.elem_start + e] = [k for k in row if k != 0]
    return out


def _block_kids(plan: KernelPlan, layer: int, partition: int, b: int) -> list[list[int]]:
    """The children of every live element of a block, chunk by chunk."""
    sp = plan.sum_layers()[layer].partitions[partition]
    kids = _children(plan, layer)
    out = []
    for k in range(int(sp.num_chunks[b])):
        for c in range(sp.chunk_size):
            out.append(kids.get(int(sp.chunk_start[b, k]) + c, [plan.num_node_slots]))
    return out


def _check_against_plan(plan: KernelPlan, sched: KernelSchedule) -> None:
    """The schedule's parts, groups, write modes and rows, recounted element by element."""
    sums: list[SumLayer] = plan.sum_layers()
    seen = Counter((p.layer, p.partition, int(b)) for p in sched.parts for b in p.blocks)
    every = {(li, j, b) for li, sl in enumerate(sums) for j, sp in enumerate(sl.partitions)
             for b in range(sp.num_blocks)}
    assert set(seen) == every and set(seen.values()) == {1}
    writes: Counter[int] = Counter()
    scattered = []
    for p in sched.parts:
        sp = sums[p.layer].partitions[p.partition]
        kids = [_block_kids(plan, p.layer, p.partition, int(b)) for b in p.blocks]
        assert p.fanin >= max(len(k) for ks in kids for k in ks)
        rows = {int(sp.node_start[b]) + r for b in p.blocks for r in range(p.B)}
        got = {int(f) + i for f, n in p.rows for i in range(int(n))}
        assert got == rows
        mine: Counter[int] = Counter()
        for group in p.sib:
            members = [int(g) for g in group if g >= 0]
            assert all(kids[g] == kids[members[0]] for g in members)  # siblings: same reads
            for k in (kids[members[0]],) if p.G > 1 else (kids[g] for g in members):
                mine.update(r for ks in k for r in ks if r != plan.num_node_slots)
        got_kids = Counter({int(f) + i: int(w) for f, n, w in p.kids for i in range(int(n))})
        assert got_kids == mine
        writes.update(mine)
        scattered.append(mine)
    shared = {r for r, n in writes.items() if n > 1}
    atomic = [bool(shared & set(m)) for m in scattered]
    if sched.flow_zero is None:
        assert all(p.write == "atomic" for p in sched.parts)
    else:
        assert [p.write == "atomic" for p in sched.parts] == atomic
        zeroed = {int(f) + i for f, n in sched.flow_zero for i in range(int(n))}
        assert zeroed == {r for m, a in zip(scattered, atomic) if a for r in m}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(circuits(max_vars=4, max_n=3))
def test_random_plans_schedule_round_trip_and_recount(c) -> None:
    """Random circuits: the schedule verifies, prints and parses back to an equal value, and
    its decisions match the brute-force recount; small parts, or none."""
    plan = compile_plan(c)
    for small in (1 << 17, 0):
        sched = schedule_kernels(plan, small_part=small)
        verify_schedule(sched)
        assert parse(to_text(sched)) == sched
        _check_against_plan(plan, sched)
        assert all(p.small == (small > 0) for p in sched.parts)


def test_golden_plans_recount() -> None:
    for case in CASES:
        plan = _plan(case)
        _check_against_plan(plan, schedule_kernels(plan))
        _check_against_plan(plan, schedule_kernels(plan, small_part=0))


def sibling_circuit():
    """A 96-node vector (two 64-row blocks over the same elements) beside a 64-node one over
    products of the same width (not decomposable: a product of the 64-node vector with
    itself gives its products the first's width)."""
    from pccc.ir import CircuitBuilder

    b = CircuitBuilder(rng=np.random.default_rng(3))
    leaves = [b.input(v, "categorical", n=96, card=5) for v in range(4)]
    left = b.sum([b.product([leaves[0], leaves[1]])], n=96)
    right = b.sum([b.product([leaves[2], leaves[3]])], n=64)
    c = b.build(b.sum([b.product([left, b.sum([b.product([right, right])], n=96)])], n=1),
                num_vars=4)
    return c


def _sibling_plan() -> KernelPlan:
    """:func:`sibling_circuit`'s plan: sibling groups, so the schedule has ``flow_ratio``
    and ``sum_eflow`` launches once small parts are off."""
    return compile_plan(sibling_circuit())


def test_sibling_groups_and_their_launches() -> None:
    """Without small parts, sibling blocks form groups whose element flows ``sum_eflow``
    scatters after ``flow_ratio`` and the gradients' ``sum_bwd``; lone blocks scatter from
    ``sum_bwd``; the wider tiles of the options show in the launches."""
    plan = _sibling_plan()
    sched = schedule_kernels(plan, small_part=0, eflow=32, wfwd=8, programs=4)
    _check_against_plan(plan, sched)
    grouped = [i for i, p in enumerate(sched.parts) if p.G > 1]
    assert grouped and any(p.G == 1 for p in sched.parts)
    for i in grouped:
        kinds = [ln.kind for ln in sched.backward if ln.part == i]
        assert kinds == ["flow_ratio", "sum_bwd", "sum_eflow"]
        eflow = next(ln for ln in sched.backward if ln.part == i and ln.kind == "sum_eflow")
        assert eflow.bt == 32 and eflow.fill == sched.parts[i].groups * sched.parts[i].NC
        bwd = next(ln for ln in sched.backward if ln.part == i and ln.kind == "sum_bwd")
        assert not bwd.scatter and bwd.ratio
    assert all(ln.warps == 8 for ln in sched.forward if ln.kind == "sum_fwd")
    assert sched.programs == 4
    small = schedule_kernels(plan)
    assert all(p.G == 1 and p.small for p in small.parts)


def test_read_classes_carried_down_from_the_circuit() -> None:
    """``layout-params`` records each block's read class: the blocks of one sum vector, and of
    two sum vectors over the same children, share one; the schedule groups them (sibling
    groups of 4 blocks here), and a plan without the record groups the blocks that read the
    same element slots (2 here: each vector's own)."""
    import dataclasses

    from pccc.ir import CircuitBuilder
    from pccc.ir.errors import VerifyError
    from pccc.ir.plan_verify import verify_plan

    b = CircuitBuilder(rng=np.random.default_rng(5))
    leaves = [b.input(v, "categorical", n=64, card=5) for v in range(2)]
    prod = b.product(leaves)
    twins = [b.sum([prod], n=64), b.sum([prod], n=64)]
    c = b.build(b.sum([b.product([twins[0], leaves[0]]), b.product([twins[1], leaves[1]])],
                      n=1), num_vars=2)
    plan = compile_plan(c, "canonicalize,group-blocks{block-size=32},partition-layers,"
                           "layout-params")
    sp = plan.sum_layers()[0].partitions[0]
    assert sp.reads is not None and sp.num_blocks == 4 and len(set(sp.reads.tolist())) == 1
    sched = schedule_kernels(plan, small_part=0)
    assert [p.G for p in sched.parts if p.layer == 0] == [4]
    _check_against_plan(plan, sched)
    bare = dataclasses.replace(plan, layers=tuple(
        dataclasses.replace(ly, partitions=tuple(dataclasses.replace(q, reads=None)
                                                 for q in ly.partitions))
        if isinstance(ly, SumLayer) else ly for ly in plan.layers))
    sched = schedule_kernels(bare, small_part=0)
    assert [p.G for p in sched.parts if p.layer == 0] == [2]
    _check_against_plan(bare, sched)
    assert parse(to_text(bare)) == bare and parse(to_text(plan)) == plan
    bad = dataclasses.replace(plan, layers=(plan.layers[0], dataclasses.replace(
        plan.layers[1], partitions=(dataclasses.replace(sp, reads=sp.reads[:3]),)),
        *plan.layers[2:]))
    with pytest.raises(VerifyError, match="reads"):
        verify_plan(bad)


def test_backward_order_is_reverse_layers() -> None:
    sched = schedule_kernels(_sibling_plan(), small_part=0)
    layers = [sched.parts[ln.part].layer for ln in sched.backward if ln.part >= 0]
    assert layers == sorted(layers, reverse=True)
    assert [ln.kind for ln in sched.backward[:2]][-1] == "root_flows"
    fwd_layers = [sched.parts[ln.part].layer for ln in sched.forward if ln.part >= 0]
    assert fwd_layers == sorted(fwd_layers)


def test_pipeline_options_and_refusals() -> None:
    plan = _plan(CASES[0])
    sched = run_pipeline(plan, "schedule-kernels{fwd=64,small-part=0,precision=bf16}")
    assert sched.precision == "bf16" and sched.stride_tile == 64
    assert {ln.bt for ln in sched.forward if ln.kind == "sum_fwd"} <= {64, 32}
    with pytest.raises(PassError, match="fwd=48 must be a power of two"):
        run_pipeline(plan, "schedule-kernels{fwd=48}")
    with pytest.raises(PassError, match="precision 'fp16'"):
        run_pipeline(plan, "schedule-kernels{precision=fp16}")
    with pytest.raises(PassError, match="no option 'tile'"):
        run_pipeline(plan, "schedule-kernels{tile=3}")


def test_instruments_cover_l4(tmp_path: Path) -> None:
    """``--print-after-all`` and ``--dump-dir`` print the schedule; the dump reads back."""
    import io

    from pccc.passes.instruments import DumpDir, PrintAfter, TimePasses

    plan = _plan(CASES[0])
    out, timer = io.StringIO(), TimePasses()
    sched = run_pipeline(plan, "schedule-kernels", instruments=[
        PrintAfter(stream=out, elide_above=None), DumpDir(tmp_path / "d"), timer])
    text = out.getvalue()
    assert "pcir 1 L4" in text and "IR dump after schedule-kernels" in text
    assert parse(text.split("\n", 1)[1]) == sched
    assert read_pcir_any(tmp_path / "d" / "001_schedule_kernels.pcir") == sched
    assert "schedule-kernels" in timer.report()


def test_cli_opt_prints_the_schedule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pccc.cli.main import main

    src = LEVELS / CASES[0] / "L3.pcir"
    assert main(["opt", str(src), "--backend", "triton", "--elide-above", "-1"]) == 0
    out = capsys.readouterr().out
    assert parse(out) == schedule_kernels(_plan(CASES[0]))
    assert main(["opt", str(LEVELS / CASES[0] / "L0.pcir"), "--backend", "triton",
                 "-o", str(tmp_path / "s.pcir")]) == 0
    assert read_pcir_any(tmp_path / "s.pcir").level == "L4"
    assert main(["info", str(tmp_path / "s.pcir")]) == 0
    assert "L4 kernel schedule" in capsys.readouterr().out


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(circuits(max_vars=4, max_n=3))
def test_schedule_shapes_are_the_generated_kernels(c) -> None:
    """Every kernel shape the schedule launches is one the code generator makes a kernel for
    (the kernel module is made from the plan, the schedule from the plan too)."""
    codegen = pytest.importorskip("pccc.backends.triton.codegen")
    plan = compile_plan(c)
    made = {(s.B, s.C, s.fanin, s.NC) for s in codegen.sum_shapes(plan)}
    assert set(schedule_kernels(plan).shapes()) <= made
    assert set(schedule_kernels(plan, small_part=0).shapes()) <= made
