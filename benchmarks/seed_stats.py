"""The 2-epoch test log-likelihoods of ``gpu_bench.py --seeds``: each side's mean and spread
over the seeds, and the gap of the means with its standard error."""

from __future__ import annotations

import math


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value, NaN for none)."""
    if not values:
        return math.nan, math.nan
    m = sum(values) / len(values)
    if len(values) == 1:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def seed_summary(rows: list[dict]) -> list[dict]:
    """Per workload (in order of first appearance): ours and PyJuice's (CUDA-graph runs) 2-epoch
    test log-likelihoods, their means, standard deviations and counts, the gap of the means
    and its standard error (None without both sides)."""
    out = []
    names = dict.fromkeys(r["name"] for r in rows if r["kind"] in ("ours", "pyjuice"))
    for name in names:
        ours = [r["test_ll_2"] for r in rows if r["kind"] == "ours" and r["name"] == name]
        pj = [r["test_ll"][1] for r in rows if r["kind"] == "pyjuice" and r["name"] == name
              and r.get("cudagraph", True) and len(r.get("test_ll", [])) > 1]
        (mo, so), (mp, sp) = mean_sd(ours), mean_sd(pj)
        both = bool(ours and pj)
        out.append(dict(name=name, ours_mean=mo, ours_sd=so, ours_n=len(ours), pj_mean=mp,
                        pj_sd=sp, pj_n=len(pj), gap=mo - mp if both else None,
                        gap_se=math.sqrt(so ** 2 / len(ours) + sp ** 2 / len(pj))
                        if both else None))
    return out


def print_seed_summary(rows: list[dict]) -> None:
    """:func:`seed_summary` as a table."""
    print(f"{'workload':10} {'ours mean':>10} {'sd':>5} {'n':>2} {'PJ mean':>10} {'sd':>5} "
          f"{'n':>2} {'gap':>6} {'se':>5}")
    for r in seed_summary(rows):
        gap = f"{r['gap']:+.2f}" if r["gap"] is not None else "-"
        se = f"{r['gap_se']:.2f}" if r["gap_se"] is not None else "-"
        print(f"{r['name']:10} {r['ours_mean']:>10.2f} {r['ours_sd']:>5.2f} {r['ours_n']:>2} "
              f"{r['pj_mean']:>10.2f} {r['pj_sd']:>5.2f} {r['pj_n']:>2} {gap:>6} {se:>5}")
