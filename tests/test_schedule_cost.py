"""The L4 cost model (:mod:`pccc.ir.schedule_cost`) and the L4 summary: each launch's FLOPs
and bytes against a recount element by element over the plan's tables, hand-counted values on
a golden plan, the parts' counts (tiles, element chunks, weights) recounted from the plan, the
summary on one screen, and ``pccc info`` / ``pccc opt --stats`` on an L4 schedule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from pccc.ir import parse, to_text
from pccc.ir.errors import ParseError, VerifyError
from pccc.ir.parse_lowered import read_pcir_any
from pccc.ir.plan import KernelPlan
from pccc.ir.schedule import KernelSchedule, Launch
from pccc.ir.schedule_cost import BATCH, Cost, fmt_count, launch_cost, pass_costs
from pccc.ir.schedule_verify import verify_schedule
from pccc.ir.summary import summary_lines
from pccc.passes import compile_plan
from pccc.passes.schedule_kernels import schedule_kernels
from tests.strategies import circuits

LEVELS = Path(__file__).parent / "golden" / "levels"


def _plan(case: str) -> KernelPlan:
    return read_pcir_any(LEVELS / case / "L3.pcir")


def _tile_walk(plan: KernelPlan, s: KernelSchedule, part: int, groups: bool
               ) -> list[tuple[int, int]]:
    """``(block, chunk)`` of every real tile the part's kernel visits: every block's, or
    (``groups``) the first block's of each sibling group, a Python loop over the plan."""
    p = s.parts[part]
    sp = plan.sum_layers()[p.layer].partitions[p.partition]
    firsts = [int(p.blocks[g[0]]) for g in p.sib.tolist()]
    blocks = firsts if groups else [int(b) for b in p.blocks]
    return [(b, k) for b in blocks for k in range(int(sp.num_chunks[b]))]


def _recount_part(plan: KernelPlan, s: KernelSchedule, ln: Launch, b: int
                  ) -> tuple[int, int]:
    """(FLOPs, words) of a sum part's launch, tile by tile."""
    flops = words = 0
    p = s.parts[ln.part]
    B, C, F = p.B, p.C, p.fanin
    tiles = _tile_walk(plan, s, ln.part, False)
    rows = p.nb * B
    if ln.kind == "flow_ratio":
        return 2 * b * rows, 3 * b * rows
    for _ in tiles:
        if ln.kind == "sum_fwd":
            flops += b * (2 * B * C + C * F + C + B)
            words += B * C + b * C * F
        elif ln.kind == "sum_eflow":
            flops += b * 2 * B * C
            words += B * C + b * B
        else:  # sum_bwd
            flops += b * (2 * B * C + C * F + C)
            words += 2 * B * C + b * C * F + b * B * (1 if ln.ratio else 2)
            if ln.scatter:
                flops += b * (2 * B * C + C * F)
                words += b * C * F
            if not ln.ratio:
                flops += b * 2 * B
    if ln.kind == "sum_fwd":
        flops += b * rows
        words += b * rows
    if ln.kind == "sum_eflow":
        for _ in _tile_walk(plan, s, ln.part, True):
            flops += b * C * (2 * F + 2)
            words += 2 * b * C * F
    return flops, words


def _recount(plan: KernelPlan, s: KernelSchedule, ln: Launch, b: int) -> tuple[int, int]:
    """(FLOPs, words) of a launch, tile by tile, row by row (the docstring's table)."""
    if ln.part >= 0:
        return _recount_part(plan, s, ln, b)
    flops = words = 0
    if ln.input >= 0:
        ly = plan.input_layers[ln.input]
        for _ in range(ly.n):
            if ln.kind == "input_cat_dot":
                flops += 2 * ly.param_size * b
                words += 2 * b + ly.param_size
            else:
                flops += b
                words += 3 * b
        return flops, words
    if ln.kind == "flow_zero":
        zeroed = (range(plan.num_node_slots + 1) if s.flow_zero is None else
                  {int(f) + i for f, n in s.flow_zero for i in range(int(n))})
        return 0, b * len(zeroed)
    assert ln.kind == "root_flows"
    return 0, b * plan.num_roots


def _check_counts(plan: KernelPlan, s: KernelSchedule) -> None:
    """Each part's tiles, element chunks and weights, recounted over the plan's tables (a
    weight: a real tile's entry of some normalization group)."""
    for i, p in enumerate(s.parts):
        sp = plan.sum_layers()[p.layer].partitions[p.partition]
        tiles = _tile_walk(plan, s, i, False)
        assert p.tiles == len(tiles)
        assert p.chunks == (len(_tile_walk(plan, s, i, True)) if p.G > 1 else len(tiles))
        size = p.B * p.C
        weights = 0
        for blk, k in tiles:
            start = int(sp.param_start[blk, k])
            weights += sum(1 for j in range(start, start + size) if plan.param_group[j] >= 0)
        assert p.weights == weights


def _check_costs(plan: KernelPlan, s: KernelSchedule, b: int) -> None:
    fwd = bwd = Cost()
    for ln in s.forward + s.backward:
        flops, words = _recount(plan, s, ln, b)
        got = launch_cost(s, ln, b)
        assert got == Cost(flops, 4 * words), ln.title()
        if ln in s.forward:
            fwd = fwd + got
        else:
            bwd = bwd + got
    totals = pass_costs(s, b)
    assert totals["forward"] == fwd and totals["backward"] == bwd
    assert totals["em_step"] == fwd + bwd + totals["em_update"]
    weights = sum(int((plan.param_group >= 0)[int(st): int(st) + pt.B * pt.C].sum())
                  for i, pt in enumerate(s.parts)
                  for st in (plan.sum_layers()[pt.layer].partitions[pt.partition]
                             .param_start[blk, k] for blk, k in _tile_walk(plan, s, i, False)))
    inputs = sum(ly.n * ly.param_size for ly in plan.input_layers)
    assert totals["em_update"] == Cost(5 * (weights + inputs), 16 * (weights + inputs))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(circuits(max_vars=4, max_n=3))
def test_random_schedules_costs_equal_the_recount(c) -> None:
    """Random circuits, lone blocks or sibling groups, two batch sizes: every launch's FLOPs
    and bytes are the recount's, the parts' counts are the plan's, the text reads back to an
    equal value and keeps within 100 characters."""
    plan = compile_plan(c)
    for small in (1 << 17, 0):
        s = schedule_kernels(plan, small_part=small)
        _check_counts(plan, s)
        for b in (1, 48):
            _check_costs(plan, s, b)
        text = to_text(s)
        assert parse(text) == s
        assert max(map(len, text.splitlines())) <= 100


@pytest.mark.parametrize("case", sorted(p.name for p in LEVELS.iterdir() if p.is_dir()))
def test_golden_schedules_costs_equal_the_recount(case: str) -> None:
    plan = _plan(case)
    for small in (1 << 17, 0):
        s = schedule_kernels(plan, small_part=small)
        _check_counts(plan, s)
        _check_costs(plan, s, BATCH)


def test_tiny_costs_by_hand() -> None:
    """``tiny``: one lone block of 1 row, one tile of 4 elements of fan-in 2, over 512
    columns."""
    s = schedule_kernels(_plan("tiny"))
    (p,) = s.parts
    assert (p.B, p.C, p.fanin, p.tiles, p.chunks, p.weights) == (1, 4, 2, 1, 1, 4)
    fwd = next(ln for ln in s.forward if ln.kind == "sum_fwd")
    # mix 2*1*4, elements 4*2, exps 4, rescale 1 per column; a log per row and column
    assert launch_cost(s, fwd).flops == 512 * (8 + 8 + 4 + 1) + 512
    # 4 weights, 4 elements x 2 children x 512 columns, 1 row x 512 columns, 4 bytes each
    assert launch_cost(s, fwd).bytes == 4 * (4 + 4 * 2 * 512 + 512)
    assert launch_cost(s, fwd, batch=1).flops == 22


def test_counts_are_verified_and_parsed() -> None:
    from dataclasses import replace

    s = schedule_kernels(_plan("wide"))
    bad = replace(s, parts=(replace(s.parts[0], tiles=s.parts[0].nb * s.parts[0].NC + 1),)
                  + s.parts[1:])
    with pytest.raises(VerifyError, match="counts tiles="):
        verify_schedule(bad)
    text = to_text(s)
    with pytest.raises(ParseError, match="weights"):
        parse(text.replace(f" weights={s.parts[0].weights}", "", 1))
    with pytest.raises(ParseError, match="param_size"):
        parse(text.replace(" param_size=4", "", 1))


def test_summary_of_an_hclt_fits_one_screen() -> None:
    """An HCLT of 64 latents over 40 variables: the L4 summary is at most 32 lines of at most
    100 characters, with a row per launch kind and the pass totals, which match
    :func:`pass_costs`."""
    from pccc.structures.hclt import hclt_from_tree
    from pccc.structures.input_layers import InputSpec

    rng = np.random.default_rng(0)
    parent = np.array([-1] + [int(rng.integers(0, v)) for v in range(1, 40)])
    c = hclt_from_tree(parent, 64, InputSpec.parse("categorical", card=16), seed=None)
    s = schedule_kernels(compile_plan(c), programs=528)
    lines = summary_lines(s)
    assert len(lines) <= 32 and max(map(len, lines)) <= 100
    kinds = {ln.kind for ln in s.forward + s.backward}
    assert {line.split()[0] for line in lines if line.split()[0] in kinds} == kinds
    em_step = next(line for line in lines if line.startswith("= em step"))
    assert str(len(s.forward) + len(s.backward)) in em_step.split()


def test_cli_info_and_stats_on_l4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pccc.cli.main import main

    out = tmp_path / "s.pcir"
    assert main(["opt", str(LEVELS / "wide" / "L3.pcir"), "--backend", "triton", "-o",
                 str(out)]) == 0
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "L4 kernel schedule" in text and "= em step" in text and "sum_fwd" in text
    assert main(["opt", str(LEVELS / "wide" / "L3.pcir"), "--backend", "triton",
                 "--stats"]) == 0
    err = capsys.readouterr().err
    assert "L4 kernel schedule" in err and "= forward" in err
    # --batch: the cost model's examples per pass (FLOPs of the forward scale with it)
    sched = parse(out.read_text())
    for batch in (16, 1024):
        assert main(["info", str(out), "--batch", str(batch)]) == 0
        text = capsys.readouterr().out
        assert f"batch {batch}," in text
        assert fmt_count(pass_costs(sched, batch)["forward"].flops, "FLOP") in text


def test_sibling_groups_costs_equal_the_recount() -> None:
    """Sibling groups (two 64-row blocks over the same elements): ``sum_eflow`` computes each
    group's element chunks once."""
    from tests.test_schedule import _sibling_plan

    plan = _sibling_plan()
    s = schedule_kernels(plan, small_part=0)
    assert any(p.G > 1 and p.chunks < p.tiles for p in s.parts)
    assert any(ln.kind == "sum_eflow" for ln in s.backward)
    _check_counts(plan, s)
    _check_costs(plan, s, 16)


def test_docs_show_the_tiny_schedule_and_its_summary() -> None:
    """docs/ir.md's end-to-end example ends with the golden ``tiny`` schedule and its
    summary, as the code prints them now."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "ir.md").read_text()
    s = schedule_kernels(_plan("tiny"))
    listing = "\n".join("    " + line if line else "" for line in to_text(s).splitlines())
    assert listing in doc
    assert "\n".join("    " + line for line in summary_lines(s)) in doc
