"""``mi_estimator="soft"``: the projected soft-binned mutual information against a float64
brute force (one example at a time), PyJuice's estimate at full rank, and itself across inputs
and devices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pccc.structures import HCLT
from pccc.structures.hclt import learn_tree
from pccc.structures.mutual_info import kruskal_tree, pyjuice_mutual_information
from pccc.structures.soft_mi import FLOAT_LEVELS, soft_mutual_information

MNIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist" / "mnist.npz"


def _scaled(x: np.ndarray) -> np.ndarray:
    """The values the estimator bins, in float64 (see ``soft_mi.to_levels``)."""
    if np.issubdtype(x.dtype, np.integer) or np.all(x == np.floor(x)):
        xi = np.maximum(x, 0).astype(np.float64)
        return (xi - xi.min()) / (xi.max() - xi.min() + 1e-8)
    span = x.max() - x.min()
    grid = np.round((x - x.min()) / span * (FLOAT_LEVELS - 1)) / (FLOAT_LEVELS - 1)
    return grid * (span / (span + 1e-8))


def _oracle(x: np.ndarray, nb: int, sigma: float, rank: int) -> np.ndarray | None:
    """The definition, slowly: every example's weights replaced by their projection on
    ``mu_u + span(W_u)``; the joint summed one example at a time. None when the ``rank``
    leading directions are not unique (an eigenvalue tie at the cut)."""
    xs = _scaled(x)
    n, v = xs.shape
    centers = np.linspace(0, 1, nb)
    phi = np.exp(-0.5 * (xs[:, :, None] - centers) ** 2 / sigma ** 2)  # [N, V, B]
    proj = np.empty_like(phi)
    h = np.empty(v)
    for u in range(v):
        mu = phi[:, u].mean(axis=0)
        d = phi[:, u] - mu
        lam, vec = np.linalg.eigh(d.T @ d)
        lam, vec = lam[::-1], vec[:, ::-1]
        r = min(rank, len(np.unique(xs[:, u])) - 1)
        if 0 < r < nb and lam[r - 1] - lam[r] < 1e-6 * lam[0]:
            return None
        w = vec[:, :r]
        proj[:, u] = mu + d @ w @ w.T
        m = (phi[:, u] / phi[:, u].sum(axis=1, keepdims=True)).mean(axis=0)
        h[u] = -(m * np.log(m + 1e-4)).sum()
    mi = np.zeros((v, v))
    for u in range(v):
        for t in range(u + 1, v):
            joint = np.zeros((nb, nb))
            for b in range(n):
                joint += np.outer(proj[b, u], proj[b, t])
            p = np.maximum(joint, 0) / np.maximum(joint, 0).sum()
            mi[u, t] = h[u] + h[t] + (p * np.log(p + 1e-4)).sum()
    return mi


@st.composite
def _data(draw):
    n = draw(st.integers(4, 24))
    v = draw(st.integers(2, 5))
    card = draw(st.integers(2, 9))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    x = rng.integers(0, card, (n, v))
    if draw(st.booleans()):  # a dependent pair
        x[:, 1] = np.clip(x[:, 0] + rng.integers(-1, 2, n), 0, card - 1)
    for c in draw(st.sets(st.integers(0, v - 1), max_size=2)):  # constant columns
        x[:, c] = draw(st.integers(0, card - 1))
    if x.max() == x.min():
        x[0, 0] = x.max() + 1
    if draw(st.booleans()):  # non-integer data: grid levels
        x = x + rng.random((n, v)) * 0.9
    return x


@settings(max_examples=40, deadline=None)
@given(x=_data(), nb=st.integers(3, 8), rank_frac=st.floats(0.0, 1.0))
def test_soft_mi_matches_the_float64_oracle(x, nb, rank_frac):
    rank = 1 + int(rank_frac * (nb - 1))
    sigma = 0.5 / nb
    expect = _oracle(x, nb, sigma, rank)
    assume(expect is not None)
    got = soft_mutual_information(x, nb, sigma, rank=rank, candidates=None)
    upper = np.triu(np.ones(expect.shape, dtype=bool), 1)
    np.testing.assert_allclose(got[upper], expect[upper], atol=3e-4)
    assert np.all(got[~upper] == 0)


def test_full_rank_is_pyjuices_estimate():
    """With ``rank = num_bins`` and every pair, the estimate is PyJuice's (one chunk)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (400, 9))
    x[:, 1] = np.clip(x[:, 0] + rng.integers(-30, 30, 400), 0, 255)
    x[:, 2] = 0
    x[:, 3] = np.where(rng.random(400) < 0.8, 0, x[:, 3])  # mostly at one value
    soft = soft_mutual_information(x, 16, 0.5 / 16, rank=16, candidates=None)
    pj = pyjuice_mutual_information(x, 16, 0.5 / 16, chunk=64)
    upper = np.triu(np.ones((9, 9), dtype=bool), 1)
    np.testing.assert_allclose(soft[upper], pj[upper], atol=2e-5)


def _pixels(n: int = 600, v: int = 24, seed: int = 3) -> np.ndarray:
    """Pixel-like data: mostly 0, a latent stroke shared by neighbours, a few saturated."""
    rng = np.random.default_rng(seed)
    z = rng.random((n, 1)) + 0.3 * np.arange(v) / v
    x = np.where(rng.random((n, v)) < z - 0.5, rng.integers(100, 256, (n, v)), 0)
    x[:, 5] = np.where(x[:, 4] > 0, np.clip(x[:, 4] + rng.integers(-20, 20, n), 0, 255), 0)
    x[:, 7] = 0
    return x


def test_candidates_keep_the_estimates_and_the_tree():
    """Pruned pairs are -inf, the others equal the full computation; the tree is the same."""
    x = _pixels()
    full = soft_mutual_information(x, candidates=None)
    part = soft_mutual_information(x, candidates=4)
    upper = np.triu(np.ones(full.shape, dtype=bool), 1)
    kept = np.isfinite(part) & upper
    assert 0 < kept.sum() < upper.sum()
    assert np.all(np.isneginf(part[upper & ~kept]))
    np.testing.assert_allclose(part[kept], full[kept], rtol=1e-6, atol=1e-7)
    assert np.all(np.isfinite(part[7, 8:])) and np.all(np.isfinite(part[:7, 7]))  # constant
    to_set = lambda mi: {tuple(sorted(e)) for e in kruskal_tree(mi)}  # noqa: E731
    assert to_set(part) == to_set(full)


def test_inputs_and_devices_agree():
    """numpy, a CPU tensor and ``device="cpu"`` give the same bits; a GPU (when present)
    the same estimates to float32 rounding; missing values (-1) count as 0."""
    x = _pixels(300, 12)
    ref = soft_mutual_information(x)
    np.testing.assert_array_equal(soft_mutual_information(torch.from_numpy(x)), ref)
    np.testing.assert_array_equal(soft_mutual_information(x, device="cpu"), ref)
    missing = np.where(x == 0, -1, x)
    np.testing.assert_array_equal(soft_mutual_information(missing), ref)
    if torch.cuda.is_available():
        gpu = soft_mutual_information(torch.from_numpy(x).cuda())
        np.testing.assert_allclose(gpu, ref, atol=2e-5)


def test_threads_are_restored():
    """The CPU's small passes run on one thread; the caller's setting comes back."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        soft_mutual_information(_pixels(100, 10))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_soft_is_hclts_default_and_finds_a_chain():
    """Data from a Markov chain: the soft tree is the chain."""
    rng = np.random.default_rng(5)
    n, v = 2000, 7
    x = np.empty((n, v), dtype=np.int64)
    x[:, 0] = rng.integers(0, 6, n)
    for t in range(1, v):
        x[:, t] = np.where(rng.random(n) < 0.85, x[:, t - 1], rng.integers(0, 6, n))
    parent = learn_tree(x)
    edges = {tuple(sorted((c, int(p)))) for c, p in enumerate(parent) if p >= 0}
    assert edges == {(t, t + 1) for t in range(v - 1)}
    assert np.array_equal(learn_tree(torch.from_numpy(x)), parent)
    c = HCLT(x, 3)
    assert c.num_vars == v
    with pytest.raises(ValueError, match="mi_estimator"):
        learn_tree(x, mi_estimator="hard")
    with pytest.raises(ValueError, match="rank"):
        soft_mutual_information(x, rank=0)
    assert learn_tree(x[:, :1]).tolist() == [-1]


@pytest.mark.heavy  # the MNIST estimate twice: with candidates and over every pair
@pytest.mark.skipif(not MNIST.exists(), reason="needs ../shared/data/mnist")
def test_mnist_candidates_leave_the_tree():
    """5-20 s on 2 CPU cores: with the default 32 candidates per variable the tree differs
    from every pair's only where a pixel is nonzero in at most 3 of the 20,000 images (such a
    pixel's estimates are below 1e-4: where it hangs is noise), and loses no estimate."""
    x = np.load(MNIST)["x_train"][:20000].reshape(20000, -1)
    part = soft_mutual_information(x)
    full = soft_mutual_information(x, candidates=None)
    kept = np.isfinite(part) & np.triu(np.ones(part.shape, dtype=bool), 1)
    np.testing.assert_array_equal(part[kept], full[kept])
    a, b = set(kruskal_tree(part)), set(kruskal_tree(full))
    rare = set(np.flatnonzero((x > 0).sum(axis=0) <= 3).tolist())
    assert all(set(e) & rare for e in a ^ b) and len(a ^ b) <= 10
    total = lambda edges: sum(float(full[e]) for e in edges)  # noqa: E731
    assert total(a) >= total(b) - 1e-4


def test_constant_variables_need_no_eigendecomposition():
    """A constant variable's covariance is zero (cuSOLVER's batched solver may not converge on
    it): the identity stands in, the directions come back finite and ordered."""
    from pccc.structures.soft_mi import _eigenvectors

    cov = torch.zeros((3, 4, 4), dtype=torch.float64)
    cov[1] = torch.diag(torch.tensor([1.0, 4.0, 2.0, 3.0], dtype=torch.float64))
    vecs = _eigenvectors(cov, torch.tensor([True, False, True]))
    assert torch.isfinite(vecs).all()
    assert torch.equal(vecs[1, :, 0].abs(), torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=torch.float64))


@settings(max_examples=15, deadline=None)
@given(x=_data(), chunk=st.integers(1, 7), col_block=st.sampled_from([1, 2, 128]))
def test_gram_in_row_chunks_is_the_whole_product(x, chunk, col_block):
    """Filling the lookups a few examples at a time (the GPU's memory bound) sums the same
    Gram as one pass over every example."""
    from pccc.structures.soft_mi import _gram, _Layout, _project, to_levels

    levels, scaled = to_levels(torch.as_tensor(x))
    proj = _project(levels, scaled, 6, 0.1, 3)
    lay = _Layout.of(levels, proj)
    whole = _gram(levels, proj, lay, None, col_block=col_block)
    parts = _gram(levels, proj, lay, None, col_block=col_block, row_chunk=chunk)
    torch.testing.assert_close(parts, whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("offset", [1_000_000, 5_000_000_000])
def test_integer_data_far_from_zero_keeps_its_levels(offset):
    """Levels are offsets from the data's minimum: integer data shifted by any amount (past
    the int32 range too) gives the same estimate."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 7, (200, 6))
    x[:, 1] = np.clip(x[:, 0] + rng.integers(-1, 2, 200), 0, 6)
    want = soft_mutual_information(x, candidates=None)
    got = soft_mutual_information(x.astype(np.int64) + offset, candidates=None)
    np.testing.assert_array_equal(got, want)
