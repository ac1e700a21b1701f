"""The public PSDD zoo: test-set log-likelihoods and little_4var's published probabilities.

The expected values are those of ``../shared/data/README.md`` (section 6), computed by an
independent evaluator; little_4var's come from ProbabilisticCircuits.jl's tests. The large
PSDDs are evaluated by :func:`scalar_log_likelihood`, a level-by-level vectorized evaluator
for scalar circuits that is itself checked against the reference evaluator.
"""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import numpy as np
import pytest

import pccc.formats as formats
from pccc.backends.reference.evaluate import log_likelihood
from pccc.ir import dists
from pccc.ir.circuit import Circuit, InputVector, ProductVector

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
PSDDS = DATA / "circuits" / "psdds"

ZOO = {
    "accidents": -29.247652714, "ad": -16.769200249, "baudio": -41.594123498,
    "bbc": -258.052695578, "bnetflix": -58.151916600, "book": -35.667978220,
    "c20ng": -160.927435187, "cr52": -92.381313031, "cwebkb": -159.969540251,
    "jester": -54.429659564, "kdd": -2.158378903, "msnbc": -6.051872790,
    "msweb": -10.135970816, "nltcs": -6.044764458, "plants": -13.354222897,
    "pumsb_star": -25.128433819, "tretail": -10.916946019,
}
ALWAYS = ("nltcs", "plants")

needs_data = pytest.mark.skipif(not PSDDS.is_dir(), reason="../shared/data is absent")


def load_split(name: str, split: str = "test") -> np.ndarray:
    with gzip.open(DATA / "debd" / name / f"{name}.{split}.data.gz") as fh:
        return np.loadtxt(fh, delimiter=",", dtype=np.int64, ndmin=2)


def _levels(c: Circuit) -> list[int]:
    depth = [0] * len(c.nodes)
    for i, nd in enumerate(c.nodes):
        if not isinstance(nd, InputVector):
            depth[i] = 1 + max(depth[ch] for ch in nd.children)
    return depth


def _input_values(c: Circuit, x: np.ndarray, vals: np.ndarray) -> None:
    for i, nd in enumerate(c.nodes):
        if isinstance(nd, InputVector):
            col = x[:, nd.var]
            miss = col < 0
            lp = dists.get(nd.dist).log_prob(c.params.get(nd.param or ""), nd.attr_dict(),
                                             np.where(miss, 0, col), 1)[:, 0]
            vals[i] = np.where(miss, 0.0, lp)


def scalar_log_likelihood(c: Circuit, x: np.ndarray, batch: int = 512) -> np.ndarray:
    """``log p(x)`` for a circuit with ``n = 1`` everywhere, one depth level at a time."""
    assert all(nd.n == 1 for nd in c.nodes)
    depth = np.array(_levels(c))
    groups = []
    for d in range(1, int(depth.max()) + 1):
        for is_prod in (True, False):
            idx = [i for i in np.flatnonzero(depth == d).tolist()
                   if isinstance(c.nodes[i], ProductVector) == is_prod]
            if not idx:
                continue
            kids = [list(c.nodes[i].children) for i in idx]
            starts = np.cumsum([0] + [len(k) for k in kids[:-1]])
            flat = np.array([k for ks in kids for k in ks])
            logw = None if is_prod else np.log(np.concatenate(
                [c.params[c.nodes[i].param][0] for i in idx]))
            groups.append((np.array(idx), flat, starts, logw))
    out = []
    for b in range(0, len(x), batch):
        xb = x[b:b + batch]
        vals = np.zeros((len(c.nodes), len(xb)))
        _input_values(c, xb, vals)
        for idx, flat, starts, logw in groups:
            v = vals[flat]
            if logw is None:
                vals[idx] = np.add.reduceat(v, starts, axis=0)
                continue
            v = v + logw[:, None]
            m = np.maximum.reduceat(v, starts, axis=0)
            m = np.where(np.isfinite(m), m, 0.0)
            rep = np.repeat(m, np.diff(np.append(starts, len(flat))), axis=0)
            with np.errstate(divide="ignore"):
                vals[idx] = m + np.log(np.add.reduceat(np.exp(v - rep), starts, axis=0))
        out.append(vals[c.root])
    return np.concatenate(out)


@needs_data
def test_little_4var_published_values():
    c = formats.load(PSDDS / "little_4var.psdd")
    x = np.array(list(itertools.product([0, 1], repeat=4)))
    p = np.exp(log_likelihood(c, x))
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert p[0b0000] == pytest.approx(0.07, abs=1e-12)
    assert p[0b0110] == pytest.approx(0.03, abs=1e-12)
    assert p[0b0011] == pytest.approx(0.14, abs=1e-12)
    marg = log_likelihood(c, np.array([[0, 0, 0, -1]]))[0]
    assert marg == pytest.approx(-1.0498221245, abs=1e-9)


@needs_data
def test_scalar_evaluator_matches_reference_on_nltcs():
    c = formats.load(PSDDS / "nltcs.psdd.gz")
    x = load_split("nltcs")[:300]
    x[::3, ::4] = -1  # some missing values: marginals too
    np.testing.assert_allclose(scalar_log_likelihood(c, x), log_likelihood(c, x),
                               rtol=0, atol=1e-10)


def _zoo_params():
    return [pytest.param(n, marks=() if n in ALWAYS else pytest.mark.slow) for n in ZOO]


@needs_data
@pytest.mark.parametrize("name", _zoo_params())
def test_zoo_test_set_log_likelihood(name):
    c = formats.load(PSDDS / f"{name}.psdd.gz")
    x = load_split(name)
    assert x.shape[1] <= c.num_vars
    ll = scalar_log_likelihood(c, x)
    assert np.all(np.isfinite(ll))
    assert ll.mean() == pytest.approx(ZOO[name], abs=1e-6)
