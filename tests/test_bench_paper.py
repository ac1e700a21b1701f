"""``benchmarks/paper_structures.py`` and ``benchmarks/bench_paper.py``: closed-form edge counts
against built circuits, the ``--quick`` run's rows, and the ``--scale`` search."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pccc.ir import counts
from pccc.structures import PD, InputSpec, hclt_from_tree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_paper  # noqa: E402
import paper_structures as ps  # noqa: E402


@st.composite
def pd_structures(draw: st.DrawFn) -> ps.Structure:
    axes = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 6 if axes < 3 else 4)) for _ in range(axes))
    intervals = tuple(draw(st.integers(1, 4)) for _ in range(axes))
    return ps.Structure("pd", "pd", draw(st.sampled_from([16, 48])), shape=shape,
                        split_intervals=intervals, max_prod_block_conns=draw(st.integers(1, 5)))


@settings(max_examples=20)
@given(pd_structures())
def test_pd_closed_form_counts_the_built_circuit(s: ps.Structure) -> None:
    k = counts(PD(s.shape, s.latents, split_intervals=s.split_intervals,
                  max_prod_block_conns=s.max_prod_block_conns, num_cats=4, seed=None))
    assert ps.pd_edge_count(s) == (k.sum_edges, k.product_edges)


@settings(max_examples=25)
@given(st.lists(st.integers(0, 10**6), min_size=2, max_size=40), st.integers(1, 12))
def test_hclt_formula_counts_the_built_circuit(keys: list[int], lat: int) -> None:
    parent = np.array([-1] + [k % (v + 1) for v, k in enumerate(keys[1:])])  # parent[v] < v
    k = counts(hclt_from_tree(parent, lat, InputSpec.parse("categorical", card=3), seed=None))
    assert ps.hclt_edge_count(parent, lat) == (k.sum_edges, k.product_edges)


def test_paper_structures_reproduce_the_papers_pd_counts() -> None:
    for name in ("pd-mid", "pd-large"):
        s = ps.PAPER[name]
        assert abs(sum(ps.pd_edge_count(s)) / s.paper_edges - 1) <= 0.10
    for s in ps.PAPER.values():  # what the subprocesses are given
        assert ps.Structure.from_spec(json.loads(json.dumps(s.spec()))) == s


def test_synthetic_images_are_seeded_and_vary_everywhere() -> None:
    x = ps.synthetic_images(300, (3, 8, 8), seed=5)
    assert x.dtype == np.uint8 and x.shape == (300, 192)
    assert np.array_equal(x, ps.synthetic_images(300, (3, 8, 8), seed=5))
    assert (x.std(axis=0) > 10).all()  # no constant pixel
    c = np.corrcoef(x[:, :64].T.astype(float))  # first channel, 8x8
    assert c[0, 1] > c[0, 63] + 0.2  # neighbours correlate more than far pixels


def test_quick_run_rows(tmp_path: Path) -> None:
    assert bench_paper.main(["--quick", "--out", str(tmp_path)]) == 0
    rows = [json.loads(ln) for ln in (tmp_path / "bench_paper.jsonl").read_text().splitlines()]
    assert [r["structure"] for r in rows] == list(bench_paper.QUICK)
    for r in rows:
        s = bench_paper.QUICK[r["structure"]]
        assert r["status"] == "ok" and r["examples"] == 512
        if s.kind == "pd":  # an independent build of the same structure
            k = counts(PD(s.shape, s.latents, split_intervals=s.split_intervals,
                          max_prod_block_conns=s.max_prod_block_conns, seed=None))
            assert r["edges"] == k.sum_edges + k.product_edges
        assert r["edges"] == r["closed_form_edges"] == r["sum_edges"] + r["product_edges"]
        assert r["plan_sum_edges"] == r["sum_edges"]
        for kind in ("minibatch", "fullbatch"):
            assert len(r[f"{kind}_epoch_times"]) == 2 and r[f"{kind}_epoch_s"] > 0
            assert np.isfinite(r[f"{kind}_train_ll"]).all()
        # one full-batch EM step raises the training log-likelihood
        assert r["fullbatch_train_ll"][1] > r["fullbatch_train_ll"][0]


def test_scale_search_stops_at_the_first_failure() -> None:
    a = bench_paper.parse_args(["--scale", "--pd-sides", "16,28", "--pd-latents", "32,64,128",
                                "--hclt-latents", "64,32"])
    ladders = bench_paper.scale_ladders(a)
    edges = [sum(ps.pd_edge_count(s)) for s in ladders["pd"]]
    assert len(edges) == 6 and edges == sorted(edges)
    assert [s.latents for s in ladders["hclt"]] == [32, 64]
    cap = edges[3]
    seen = []

    def trial(s: ps.Structure) -> dict:
        seen.append(s.name)
        e = sum(ps.pd_edge_count(s))
        return {"structure": s.name, "edges": e, "status": "ok" if e <= cap else "OOM"}

    rows = bench_paper.largest_that_trains(ladders["pd"], trial)
    assert [r["status"] for r in rows] == ["ok"] * 4 + ["OOM"]
    assert len(seen) == 5 and max(r["edges"] for r in rows if r["status"] == "ok") == cap
