"""``benchmarks/kernel_kinds.py`` without a GPU: every L4 launch and every kernel of the
backend has one kind, the per-kind predicted work adds up to the cost model's own totals, and
the join of a profile puts every microsecond in one kind with the units computed by hand."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.kernel_kinds import (
    KERNEL_KIND,
    KINDS,
    LAUNCH_KIND,
    KernelTime,
    Limits,
    join,
    kernel_kind_map,
    kind_rows,
    main,
    predicted,
    product_fused,
    quick_schedule,
    read_profile,
    synthetic_profile,
    write_profile,
)
from pccc.backends.triton import codegen
from pccc.backends.triton.families import family
from pccc.backends.triton.options import TritonOptions
from pccc.ir import dists
from pccc.ir.errors import PcccError
from pccc.ir.plan import KernelPlan
from pccc.ir.schedule import BACKWARD_KINDS, FORWARD_KINDS, KernelSchedule
from pccc.ir.schedule_cost import Cost, pass_costs
from pccc.passes.schedule_kernels import schedule_for
from tests.test_schedule import _sibling_plan


def _schedules() -> list[tuple[str, KernelPlan, KernelSchedule]]:
    out = [(name, *quick_schedule(name, "tf32", 528)) for name in ("hclt", "pd")]
    plan = _sibling_plan()
    out.append(("siblings", plan, schedule_for(plan, TritonOptions(small_part=0), 4)))
    return out


SCHEDULES = _schedules()


def test_every_launch_kind_and_kernel_function_has_one_kind() -> None:
    assert set(LAUNCH_KIND) == set(FORWARD_KINDS) | set(BACKWARD_KINDS)
    assert set(LAUNCH_KIND.values()) <= set(KINDS)
    assert set(KERNEL_KIND.values()) <= set(KINDS)
    refs = [*codegen.FIXED, codegen.SUM_FWD, codegen.SUM_BWD, codegen.SUM_EFLOW,
            codegen.INPUT_FWD, codegen.INPUT_BWD,
            codegen.KernelRef("kernels_input", "input_cat_dot")]
    refs += [codegen.KernelRef(family(d).module(), k)
             for d in dists.implemented("triton") for k in family(d).kernels]
    missing = [str(r) for r in refs if (r.module, r.name) not in KERNEL_KIND]
    assert not missing
    for module, name in KERNEL_KIND:  # no stale entry: each names a real kernel
        assert hasattr(importlib.import_module(f"pccc.backends.triton.{module}"), name)
    assert product_fused()


@pytest.mark.parametrize("case", [s[0] for s in SCHEDULES])
def test_launches_map_to_one_kind_and_costs_add_up_to_pass_costs(case: str) -> None:
    _, plan, s = next(x for x in SCHEDULES if x[0] == case)
    launches = s.forward + s.backward
    pred = predicted(s)
    assert sum(n for n, _ in pred.values()) == len(launches)
    totals = pass_costs(s)
    assert sum((c for _, c in pred.values()), Cost()) == totals["em_step"]
    assert pred["em"][1] == totals["em_update"]
    fwd = sum((c for k, (_, c) in pred.items() if k in ("sum_forward", "input_forward")), Cost())
    assert fwd == totals["forward"]
    # the kernel table gives each launch's kernel the kind its launch kind has
    names = kernel_kind_map(plan, s, "tf32")
    for ln in launches:
        if ln.kernel:
            assert names[ln.kernel] == LAUNCH_KIND[ln.kind], ln.title()
    if case == "siblings":
        assert pred["element_flows"][0] >= 2  # flow_ratio and sum_eflow
    assert pred["product_forward"] == (0, Cost())


_, PLAN, SCHED = SCHEDULES[0]
NAMES = kernel_kind_map(PLAN, SCHED, "tf32")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(NAMES) + ["void at::native::copy", "mystery"]),
                          st.floats(0, 1e4, allow_nan=False), st.integers(1, 5)),
                max_size=30),
       st.integers(1, 7))
def test_join_puts_every_microsecond_in_one_kind(items, batches) -> None:
    profile = [KernelTime(n, us, c) for n, us, c in items]
    meas = join(profile, NAMES, batches)
    total_ms = sum(k.us for k in profile) / 1000 / batches
    assert math.isclose(sum(m.ms for m in meas.values()), total_ms, rel_tol=1e-9, abs_tol=1e-12)
    assert math.isclose(sum(m.launches for m in meas.values()),
                        sum(k.count for k in profile) / batches, rel_tol=1e-9)
    other = sum(k.us for k in profile if k.name not in NAMES) / 1000 / batches
    assert meas["other"].ms >= other - 1e-12


def test_unknown_name_is_other_and_rates_are_flop_per_second() -> None:
    profile = [KernelTime("sum_fwd", 2000.0, 4), KernelTime("sum_fwd", 1000.0, 2),
               KernelTime("cuda_kernel_nobody_knows", 500.0)]
    meas = join(profile, NAMES, 2)
    assert meas["sum_forward"].ms == pytest.approx(1.5)  # 3000 us over 2 batches
    assert meas["sum_forward"].launches == 3
    assert meas["other"].kernels == {"cuda_kernel_nobody_knows": pytest.approx(0.25)}
    pred = {k: (0, Cost()) for k in KINDS}
    pred["sum_forward"] = (3, Cost(3 * 10**9, 6 * 10**8))
    limits = Limits(tf32_tflops=400.0, fp32_tflops=50.0, hbm_tbps=2.0)
    rows = {r["kernel_kind"]: r for r in kind_rows("w", pred, meas, limits)}
    r = rows["sum_forward"]
    # 3 GFLOP in 1.5 ms: 2 TFLOP/s; 0.6 GB in 1.5 ms: 400 GB/s
    assert r["tflops"] == pytest.approx(2.0) and r["gbps"] == pytest.approx(400.0)
    assert r["frac_tf32"] == pytest.approx(2.0 / 400) and r["frac_fp32"] == pytest.approx(0.04)
    assert r["frac_hbm"] == pytest.approx(0.2)
    assert rows["other"]["tflops"] is None or rows["other"]["gflop"] == 0
    assert rows["total"]["ms"] == pytest.approx(1.75)
    assert rows["product_forward"]["fused"] and rows["em"]["launches_schedule"] is None


def test_synthetic_profile_lands_in_the_schedules_kinds(tmp_path: Path) -> None:
    prof = synthetic_profile(PLAN, SCHED, "tf32", batches=2)
    path = str(tmp_path / "p.json")
    write_profile(path, prof, 2)
    back, batches = read_profile(path)
    assert back == prof and batches == 2
    meas = join(back, NAMES, batches)
    pred = predicted(SCHED)
    for k in ("sum_forward", "parameter_flows", "input_forward", "input_backward"):
        assert meas[k].launches == pred[k][0] and meas[k].ms > 0
    (tmp_path / "bad.json").write_text('{"kernels": [["x"]]}')
    with pytest.raises(PcccError, match="not a profile"):
        read_profile(str(tmp_path / "bad.json"))


def test_quick_run_writes_rows_and_compares(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    main(["--quick", "--which", "pd", "--steps", "2", "--out", str(tmp_path)])
    rows = [json.loads(ln) for ln in (tmp_path / "kernel_kinds.jsonl").read_text().splitlines()]
    assert [r["kernel_kind"] for r in rows] == [*KINDS, "total"]
    before = tmp_path / "before.jsonl"
    (tmp_path / "kernel_kinds.jsonl").rename(before)
    capsys.readouterr()
    main(["--quick", "--which", "pd", "--profile", str(tmp_path / "kernel_kinds_profile_pd.json"),
          "--out", str(tmp_path), "--compare-to", str(before)])
    out = capsys.readouterr().out
    assert "| ms before | ms | speed-up |" in out
    assert "| 1.00 |" in out  # the same profile: every kind's speed-up is 1


def test_limits_follow_the_card() -> None:
    """An H200's HBM limit is its own (4.8 TB/s) unless one was given; H100 keeps 3.35."""
    from benchmarks.kernel_kinds import Limits

    assert Limits().for_card("NVIDIA H200", hbm_given=False).hbm_tbps == 4.8
    assert Limits(hbm_tbps=3.0).for_card("NVIDIA H200", hbm_given=True).hbm_tbps == 3.0
    assert Limits().for_card("NVIDIA H100 80GB HBM3", hbm_given=False).hbm_tbps == 3.35
