"""``layout-params``' value copies: runs of same-shaped weight arrays and back-to-back input
arrays copied in pieces and on threads. The oracle is the source circuit itself: every
source value is where ``param_map`` says, each weight row is one group of its row's length,
everything else is padding (weight 0, group -1)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pccc
from pccc.passes import compile_plan
from pccc.passes import layout_params as lp
from pccc.structures import HCLT, PD
from tests.strategies import ALL_DISTS, circuits


def _check_values(c, plan):
    """The plan's value arrays against the source circuit ``c``."""
    covered = np.zeros(len(plan.params), bool)
    groups: dict[int, tuple[str, int]] = {}
    for key, idx in plan.param_map.items():
        idx = np.asarray(idx)
        if key in plan.input_param_keys:
            np.testing.assert_array_equal(plan.input_params[idx], c.params[key])
            continue
        np.testing.assert_array_equal(plan.params[idx], c.params[key])
        covered[idx] = True
        g = plan.param_group[idx]
        assert (g == g[:, :1]).all()  # one group per row
        for row, gr in enumerate(g[:, 0]):
            assert groups.setdefault(int(gr), (key, row)) == (key, row)  # the row's own
            assert plan.group_size[gr] == idx.shape[1]
    assert len(set(groups)) == len(plan.group_size)
    assert (plan.params[~covered] == 0).all() and (plan.param_group[~covered] == -1).all()
    for a in (plan.params, plan.param_group, plan.group_size, plan.input_params):
        assert not a.flags.writeable


@pytest.fixture
def small_pieces(monkeypatch):
    """Pieces of a few values: runs cut into many jobs."""
    monkeypatch.setattr(lp, "PIECE", 7)


@settings(max_examples=25, deadline=None)
@given(data=st.data(), threads=st.sampled_from([1, 3]), piece=st.sampled_from([1, 7, 1 << 18]))
def test_random_circuits_values_where_param_map_says(data, threads, piece):
    c = data.draw(circuits(max_vars=4, dists=ALL_DISTS))
    old = lp.PIECE
    lp.PIECE = piece
    try:
        plan = compile_plan(c, pipeline=f"canonicalize,group-blocks,partition-layers,"
                                        f"layout-params{{threads={threads}}}")
    finally:
        lp.PIECE = old
    _check_values(c, plan)


def _hclt(latents):
    return HCLT(np.random.default_rng(0).integers(0, 5, (200, 9)), latents, num_cats=5)


@pytest.mark.parametrize("make", [
    lambda: _hclt(8),  # weights stored row-major
    lambda: _hclt(128),  # in 64x64 tiles
    lambda: _hclt(96),  # in padded tiles
    lambda: PD((4, 4), 8, split_intervals=(2, 2), num_cats=3),
], ids=["hclt8", "hclt128", "hclt96", "pd"])
def test_structures_runs_in_pieces(make, small_pieces):
    """Structures have long runs of one weight shape (a piece per few arrays here); the same
    values as one piece per run."""
    c = make()
    plan = compile_plan(c)
    _check_values(c, plan)
    lp.PIECE = 1 << 30
    whole = compile_plan(c)
    for f in ("params", "param_group", "group_size", "input_params"):
        np.testing.assert_array_equal(getattr(plan, f), getattr(whole, f))


def test_compile_returns_a_complete_plan():
    c = PD((4, 4), 8, split_intervals=(2, 2), num_cats=3)
    _check_values(c, compile_plan(c, verify=True))
    _check_values(c, pccc.compile(c, backend="torch").plan)
