"""Structure generators: verified circuits that sum to 1 over every assignment (brute force with
the float64 reference evaluator), tying in homogeneous HMMs, and edge counts by formula."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pccc.backends.reference import log_likelihood
from pccc.ir import counts
from pccc.ir.circuit import InputVector, SumVector
from pccc.ir.verify import is_normalized, verify
from pccc.structures import HCLT, HMM, PD, RAT_SPN, InputSpec, hclt_from_tree
from pccc.structures.hclt import hclt_edge_count
from pccc.structures.pd import default_block_size


def _all_assignments(cards: list[int]) -> np.ndarray:
    return np.array(list(itertools.product(*[range(k) for k in cards])), dtype=np.int64)


def _total_mass(circuit, cards: list[int]) -> float:
    return float(np.exp(log_likelihood(circuit, _all_assignments(cards))).sum())


@pytest.mark.parametrize("seq,lat,emits,homog", [(1, 2, 3, True), (4, 3, 3, True),
                                                  (5, 2, 2, False), (3, 4, 2, True)])
def test_hmm_sums_to_one(seq, lat, emits, homog):
    c = HMM(seq, lat, emits, homogeneous=homog, seed=1)
    verify(c)
    assert is_normalized(c)
    assert _total_mass(c, [emits] * seq) == pytest.approx(1.0, abs=1e-12)


def test_hmm_matches_forward_algorithm():
    """The circuit's likelihood equals the HMM forward recursion on its own parameters."""
    c = HMM(4, 3, 5, seed=3)
    emit, trans = c.params["emission"], c.params["transition"]
    init = next(c.params[nd.param] for nd in c.nodes if isinstance(nd, SumVector) and nd.n == 1)
    x = np.random.default_rng(0).integers(0, 5, (20, 4))
    # backward recursion, matching the circuit: beta_t(i) = e_i(x_t) sum_j T[i, j] beta_{t+1}(j)
    beta = emit[:, x[:, 3]].T
    for t in (2, 1, 0):
        beta = emit[:, x[:, t]].T * (beta @ trans.T)
    expect = np.log(beta @ init[0])
    np.testing.assert_allclose(log_likelihood(c, x), expect, rtol=1e-12)


def test_homogeneous_hmm_ties_parameters():
    c = HMM(6, 3, 4, homogeneous=True)
    keys_in = {nd.param for nd in c.nodes if isinstance(nd, InputVector)}
    keys_sum = [nd.param for nd in c.nodes if isinstance(nd, SumVector) and nd.n == 3]
    assert keys_in == {"emission"}
    assert len(keys_sum) == 5 and set(keys_sum) == {"transition"}
    assert counts(c).params == 3 * 4 + 3 * 3 + 3  # tied storage counted once
    free = HMM(6, 3, 4, homogeneous=False)
    assert len({nd.param for nd in free.nodes if isinstance(nd, InputVector)}) == 6
    assert counts(free).params == 6 * 3 * 4 + 5 * 9 + 3


@pytest.mark.parametrize("nv,lat,depth,reps,pieces", [(5, 3, 2, 2, 2), (6, 2, 1, 3, 3),
                                                      (1, 2, 2, 2, 2), (4, 2, 5, 1, 2)])
def test_rat_spn_sums_to_one(nv, lat, depth, reps, pieces):
    c = RAT_SPN(nv, lat, depth, reps, num_pieces=pieces, num_cats=2, seed=2)
    verify(c)
    assert _total_mass(c, [2] * nv) == pytest.approx(1.0, abs=1e-12)
    # root sums over the top products of all repetitions
    assert c.nodes[c.root].n == 1 and len(c.nodes[c.root].children) == reps


@pytest.mark.parametrize("dist,cards", [("categorical", 3), ("bernoulli", 2), ("binomial", 3)])
def test_input_distributions_selectable(dist, cards):
    spec = InputSpec.parse(dist, card=cards)
    c = RAT_SPN(3, 2, 1, 2, input_dist=spec, seed=0)
    verify(c)
    assert {nd.dist for nd in c.nodes if isinstance(nd, InputVector)} == {dist}
    assert _total_mass(c, [cards] * 3) == pytest.approx(1.0, abs=1e-12)


def test_gaussian_inputs_integrate_to_one():
    """A 1-D HCLT with Gaussian inputs: a mixture density integrating to 1 (Riemann sum)."""
    x = np.random.default_rng(0).normal(size=(50, 1))
    c = HCLT(x, 3, input_dist="gaussian")
    verify(c)
    grid = np.linspace(-12, 12, 20001)[:, None]
    dens = np.exp(log_likelihood(c, grid))
    assert dens.sum() * (grid[1, 0] - grid[0, 0]) == pytest.approx(1.0, abs=1e-6)


def test_hclt_sums_to_one_and_counts():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, (300, 5))
    x[:, 1] = (x[:, 0] + (rng.random(300) < 0.1)) % 3
    c = HCLT(x, 3, seed=4)
    verify(c)
    assert _total_mass(c, [3] * 5) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("parent", [[-1, 0, 0, 1, 1], [1, 2, 3, 4, -1], [-1, 0, 0, 0, 0],
                                    [-1]])
def test_hclt_edge_formula(parent):
    parent = np.array(parent)
    for lat in (1, 2, 5):
        c = hclt_from_tree(parent, lat, InputSpec.parse("categorical", card=2))
        verify(c)
        assert counts(c).edges == hclt_edge_count(parent, lat)
        assert _total_mass(c, [2] * len(parent)) == pytest.approx(1.0, abs=1e-12)


def test_hclt_shape_follows_the_tree():
    # chain 0-1-2-3-4 hung from its center 2: inner variables 1, 2, 3; leaves 0 and 4
    c = hclt_from_tree(np.array([1, 2, -1, 2, 3]), 4, InputSpec.parse("categorical", card=2))
    sums = [nd for nd in c.nodes if isinstance(nd, SumVector)]
    assert sorted(nd.n for nd in sums) == [1, 4, 4]
    assert counts(c).sum_edges == 2 * 16 + 4
    assert counts(c).product_edges == 4 * (4 + 3)


def _pd_edges(h, w, k, lat, bs, conns):
    """PD sum + product edges by direct enumeration of hypercubes (independent of pd.py)."""
    pos_h = [0] + list(range(k, h, k)) + [h]
    pos_w = [0] + list(range(k, w, k)) + [w]
    se = pe = 0
    for a, b in itertools.combinations(range(len(pos_h)), 2):
        for c_, d in itertools.combinations(range(len(pos_w)), 2):
            splits = (b - a - 1) + (d - c_ - 1)
            nvars = (pos_h[b] - pos_h[a]) * (pos_w[d] - pos_w[c_])
            if splits == 0:
                se += lat * bs
                pe += lat * nvars
                continue
            pe += splits * 2 * lat
            root = (a, b, c_, d) == (0, len(pos_h) - 1, 0, len(pos_w) - 1)
            if root:
                se += splits * lat
            else:
                se += lat * min(splits, conns) * lat
    return se, pe


@pytest.mark.parametrize("h,w,k,lat,bs,conns", [(4, 4, 2, 4, 2, 4), (6, 4, 2, 4, 2, 2),
                                                (3, 3, 1, 2, 1, 4), (4, 6, 2, 8, 4, 1)])
def test_pd_edge_counts(h, w, k, lat, bs, conns):
    c = PD((h, w), lat, split_intervals=k, block_size=bs, max_prod_block_conns=conns,
           num_cats=2, seed=None)
    verify(c)
    k_ = counts(c)
    assert (k_.sum_edges, k_.product_edges) == _pd_edges(h, w, k, lat, bs, conns)


@pytest.mark.parametrize("shape,k,conns", [((2, 3), 1, 4), ((2, 3), 1, 1), ((5,), 1, 2),
                                           ((2, 2), (1, 2), 4)])
def test_pd_sums_to_one(shape, k, conns):
    c = PD(shape, 4, split_intervals=k, block_size=2, max_prod_block_conns=conns,
           num_cats=2, seed=5)
    verify(c)
    assert _total_mass(c, [2] * int(np.prod(shape))) == pytest.approx(1.0, abs=1e-12)


def test_pd_split_points_and_depth():
    c = PD((4, 4), 2, split_points=[[2], [1, 3]], block_size=1, num_cats=2, seed=0)
    verify(c)
    shallow = PD((4, 4), 2, split_intervals=1, max_split_depth=1, block_size=1, num_cats=2)
    verify(shallow)
    assert counts(shallow).edges < counts(PD((4, 4), 2, split_intervals=1, block_size=1,
                                             num_cats=2)).edges


def test_pd_default_block_size():
    assert [default_block_size(n) for n in (8, 32, 48, 64, 256)] == [8, 16, 16, 32, 32]


def test_uniform_parameters_are_not_allocated():
    c = PD((8, 8), 64, split_intervals=4, num_cats=256, seed=None)
    for arr in c.params.values():  # broadcast views, not copies
        assert 0 in arr.strides and not arr.flags.writeable
    verify(c)


def test_perturb_redraws_sums_and_categoricals_normalized():
    """``perturb``: every sum row and categorical table is a fresh normalized draw with ratios
    up to e^spread; tied keys stay tied; other families and the structure are kept."""
    from pccc.ir import CircuitBuilder
    from pccc.structures import perturb

    b = CircuitBuilder(rng=np.random.default_rng(0))
    cat = b.input(0, "categorical", n=3, card=4)
    ber = b.input(1, "bernoulli", n=3)
    s1 = b.sum([b.product([cat, ber])], n=2, tie="shared")
    s2 = b.sum([b.product([cat, ber])], n=2, tie="shared")
    c = b.build(b.sum([b.product([s1, s2])], n=1), num_vars=2)
    for spread, (s_sum, s_in) in [(3.0, (3.0, 3.0)), ((5.0, 1.0), (5.0, 1.0)), ((), (4.0, 4.0))]:
        p = perturb(c, spread, seed=1) if spread != () else perturb(c, seed=1)
        assert p.nodes == c.nodes
        changed = 0
        for node in c.nodes:
            key = getattr(node, "param", None)
            if key is None:
                continue
            new, old = p.params[key], c.params[key]
            if node.kind == "input" and node.dist == "bernoulli":
                np.testing.assert_array_equal(new, old)
                continue
            changed += 1
            np.testing.assert_allclose(new.sum(axis=-1), 1.0, rtol=1e-12)
            limit = s_sum if node.kind == "sum" else s_in
            assert new.min() > 0
            assert (new.max(axis=-1) / new.min(axis=-1)).max() <= np.exp(limit)
            assert not np.allclose(new, old)
        assert changed >= 3
        assert len([k for k in p.params if k == "shared"]) == 1
    flat = perturb(c, 0.0).params["shared"]
    np.testing.assert_allclose(flat, 1.0 / flat.shape[-1])
    for bad in (-1.0, (1.0, -2.0), (float("nan"), 1.0)):
        with pytest.raises(ValueError):
            perturb(c, bad)
