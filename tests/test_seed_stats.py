"""``benchmarks/seed_stats.py``: the per-workload test log-likelihood summary of
``gpu_bench.py --seeds``, checked against the standard library's statistics."""

from __future__ import annotations

import math
import statistics

from hypothesis import given
from hypothesis import strategies as st

from benchmarks.seed_stats import mean_sd, seed_summary

_ll = st.floats(-800.0, -600.0, allow_nan=False)


def _rows(ours: list[float], pj: list[float], name: str = "hclt32") -> list[dict]:
    return ([dict(kind="ours", name=name, test_ll_2=v) for v in ours]
            + [dict(kind="pyjuice", name=name, cudagraph=True, test_ll=[-900.0, v]) for v in pj])


@given(st.lists(_ll, min_size=2, max_size=6), st.lists(_ll, min_size=2, max_size=6))
def test_means_spreads_and_gap_match_the_statistics_module(ours, pj):
    (r,) = seed_summary(_rows(ours, pj))
    assert math.isclose(r["ours_mean"], statistics.fmean(ours), abs_tol=1e-9)
    assert math.isclose(r["ours_sd"], statistics.stdev(ours), rel_tol=1e-6, abs_tol=1e-9)
    assert math.isclose(r["pj_sd"], statistics.stdev(pj), rel_tol=1e-6, abs_tol=1e-9)
    assert math.isclose(r["gap"], statistics.fmean(ours) - statistics.fmean(pj), abs_tol=1e-9)
    se = math.sqrt(statistics.variance(ours) / len(ours) + statistics.variance(pj) / len(pj))
    assert math.isclose(r["gap_se"], se, rel_tol=1e-6, abs_tol=1e-9)
    assert (r["ours_n"], r["pj_n"]) == (len(ours), len(pj))


def test_plain_runs_and_missing_sides_are_left_out():
    rows = _rows([-700.0, -698.0], [-699.0]) + [
        dict(kind="pyjuice", name="hclt32", cudagraph=False, test_ll=[-900.0, -600.0]),
        dict(kind="ours", name="pd64", test_ll_2=-750.0), dict(kind="check", case="dense")]
    first, second = seed_summary(rows)
    assert first["pj_n"] == 1 and first["pj_mean"] == -699.0 and first["pj_sd"] == 0.0
    assert first["gap"] == 0.0 and first["gap_se"] == 1.0  # sd 1.414 over 2 seeds
    assert second["name"] == "pd64" and second["gap"] is None and math.isnan(second["pj_mean"])
    assert all(math.isnan(v) for v in mean_sd([]))
