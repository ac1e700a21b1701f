"""``group-blocks``' tile sides: the largest power of two whose padding stays within
``tolerance``, else (sides of at least ``min-block``) within ``fallback``, else 1; checked
against a brute-force enumeration, and a 33-latent HCLT's plan (one block of 64 per vector,
not one-row blocks) against the float64 evaluator."""

from __future__ import annotations

import numpy as np
import pytest

import pccc
from pccc.backends.reference.evaluate import log_likelihood
from pccc.passes.group_blocks import pick_size
from pccc.structures import InputSpec, hclt_from_tree


def _fits(n: int, b: int, tol: float) -> bool:
    if b >= 2 * n:
        return False
    padded = -(-n // b) * b
    return padded - n <= tol * padded


def _oracle(n: int, block: int, min_block: int, tol: float, fallback: float) -> int:
    sizes = sorted({block} | {2 ** k for k in range(12) if min_block <= 2 ** k <= block},
                   reverse=True)
    sizes = [b for b in sizes if b > 1]
    for limit in (tol, fallback if n >= min_block and fallback > tol else None):
        if limit is None:
            break
        fit = [b for b in sizes if _fits(n, b, limit)]
        if fit:
            return fit[0]
    return 1


@pytest.mark.parametrize("block,min_block,tol,fallback", [
    (64, 16, 0.25, 0.5), (64, 16, 0.25, 0.0), (32, 8, 0.1, 0.4), (128, 16, 0.25, 0.5)])
def test_sizes_match_the_enumeration(block, min_block, tol, fallback):
    for n in range(1, 400):
        assert pick_size(n, block, min_block, tol, fallback) == \
            _oracle(n, block, min_block, tol, fallback), n


def test_only_sides_just_above_a_power_of_two_change():
    changed = [n for n in range(1, 300)
               if pick_size(n, 64, 16, 0.25, 0.5) != pick_size(n, 64, 16, 0.25, 0.0)]
    assert changed == list(range(17, 24)) + [33, 34, 35]


def test_a_33_latent_hclt_gets_tensor_core_blocks_and_the_same_values():
    rng = np.random.default_rng(0)
    parent = np.array([-1, 0, 0, 1])
    c = hclt_from_tree(parent, 33, InputSpec.parse("categorical", card=4), seed=0)
    x = rng.integers(0, 4, (9, 4))
    base = ("canonicalize{collapse-sums=true,merge-identical=true,merge-sum-chains=true},"
            "group-blocks{fallback=%s},partition-layers,layout-params")
    want = log_likelihood(c, x)
    for fb, sizes in (("0.5", {1, 64}), ("0", {1})):  # (1: the root's single node)
        m = pccc.compile(c, backend="torch", device="cpu", pipeline=base % fb)
        assert {p.block_size for ly in m.plan.sum_layers() for p in ly.partitions} == sizes
        np.testing.assert_allclose(m(x).detach().double().numpy(), want, rtol=1e-5)
