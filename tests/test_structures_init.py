"""The generators' initial draw: rows ``exp(-spread * u)`` normalized (PyJuice's), its spread
as a keyword, uniform views without a seed."""

from __future__ import annotations

import numpy as np
import pytest

from pccc.ir.circuit import InputVector, SumVector
from pccc.structures import HCLT, HMM, PD, RAT_SPN, InputSpec
from pccc.structures.init import InitSpread, ParamDraw, draw_rows


def _log_spans(rows: np.ndarray) -> np.ndarray:
    """Per row ``log(max / min)``: ``spread * (max u - min u)`` for the draw."""
    lg = np.log(rows)
    return lg.max(axis=-1) - lg.min(axis=-1)


@pytest.mark.parametrize("spread", [0.5, 2.0, 4.0, 9.0])
def test_draw_rows_is_exp_of_a_uniform(spread):
    """Normalized rows whose logs, divided by the spread, are a uniform sample shifted by a
    per-row constant: the spread of a 512-wide row reaches almost ``spread``."""
    w = draw_rows(np.random.default_rng(0), (400, 512), spread)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-12)
    spans = _log_spans(w)
    assert spans.max() <= spread * (1 + 1e-12) and spans.min() >= 0.98 * spread
    u = -(np.log(w) - np.log(w).max(axis=1, keepdims=True)) / spread  # u - min(u) per row
    hist = np.histogram(u, bins=10, range=(0, 1))[0] / u.size
    np.testing.assert_allclose(hist, 0.1, atol=0.01)


def test_default_spreads_are_pyjuices():
    assert InitSpread() == (4.0, 4.0)
    d = ParamDraw.from_seed(3)
    assert d.spread == (4.0, 4.0)
    w = d.sum_weights(300, 64)
    assert not w.flags.writeable
    assert 0.9 * 4.0 <= _log_spans(w).mean() <= 4.0
    t = InputSpec.parse("categorical", card=256).init_params(300, d)
    np.testing.assert_allclose(t.sum(axis=1), 1.0, rtol=1e-12)
    assert 0.95 * 4.0 <= _log_spans(t).mean() <= 4.0
    p = InputSpec.parse("bernoulli").init_params(2000, d)
    lo = 1 / (1 + np.exp(4.0))
    assert lo <= p.min() < lo + 0.01 and 1 - lo - 0.01 < p.max() <= 1 - lo
    g = InputSpec.parse("gaussian").init_params(2000, d)
    assert np.all(g[:, 1] == 1.0) and 0.45 < g[:, 0].std() < 0.55


def test_no_seed_is_uniform_and_spreads_are_checked():
    d = ParamDraw.from_seed(None)
    w = d.sum_weights(5, 4)
    assert 0 in w.strides and np.all(w == 0.25)
    with pytest.raises(ValueError):
        ParamDraw.from_seed(0, (-1.0, 2.0))
    with pytest.raises(ValueError):
        ParamDraw.from_seed(0, (4.0, float("inf")))


def _rows(circuit):
    """(sum rows, categorical rows) of a circuit, each stacked."""
    sums = [circuit.params[n.param] for n in circuit.nodes if isinstance(n, SumVector)]
    cats = [circuit.params[n.param] for n in circuit.nodes
            if isinstance(n, InputVector) and n.dist == "categorical"]
    return sums, cats


@pytest.mark.parametrize("make", [
    lambda **k: HCLT(np.random.default_rng(0).integers(0, 6, (200, 7)), 8, **k),
    lambda **k: PD((4, 4), 8, split_intervals=2, block_size=4, num_cats=6, **k),
    lambda **k: RAT_SPN(6, 8, 2, 2, num_cats=6, **k),
    lambda **k: HMM(5, 8, 6, **k),
])
def test_generators_take_the_spread(make):
    """Every generator draws with ``init_spread``: sum rows span at most ``e^sums``, tables at
    most ``e^inputs``; 0 gives exactly uniform rows; no seed gives uniform views."""
    for spread in [(4.0, 2.0), (1.0, 6.0), (0.0, 0.0)]:
        sums, cats = _rows(make(init_spread=spread))
        for rows, s in ((sums, spread[0]), (cats, spread[1])):
            spans = np.concatenate([_log_spans(r).ravel() for r in rows if r.shape[-1] > 1])
            np.testing.assert_allclose(np.concatenate([r.sum(-1).ravel() for r in rows]), 1.0)
            assert spans.max() <= s + 1e-9 and (s == 0 or spans.max() > 0.5 * s)
    sums, cats = _rows(make(seed=None))
    assert all(0 in r.strides for r in sums + cats)
