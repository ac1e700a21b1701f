"""PyJuice 2.6.3's soft-binned mutual information and its Kruskal Chow-Liu tree.

PyJuice's ``juice.structures.HCLT`` (defaults ``num_bins=32``, ``sigma=0.5/32``,
``chunk_size=64``) estimates the mutual information of every pair of variables from *soft*
bins, in float32:

- the data is cut into column chunks of ``chunk_size``; each chunk is scaled to ``[0, 1]`` by
  the chunk's own minimum and maximum (over all its entries, ``+1e-8`` in the denominator);
- a value ``x`` gets the unnormalized Gaussian weights ``exp(-(x - c_a)^2 / (2 sigma^2))`` on
  ``num_bins`` centers ``c_a = linspace(0, 1, num_bins)``;
- pair ``(u, v)``: the joint table is ``sum_b phi(x_bu)[a] phi(x_bv)[c]``, normalized over
  ``(a, c)``; each marginal is the mean over examples of the per-example *normalized* weights;
- entropies use ``log(p + 1e-4)``; ``mi = H(u) + H(v) - H(u, v)`` (not clipped, not symmetrized).

The tree is networkx's default (Kruskal) minimum spanning tree of weights ``-mi[u, v]``,
``u < v``, on a graph whose edges were inserted in ``(u, v)`` lexicographic order: so sorted by
decreasing ``mi[u, v]``, ties to the lexicographically smaller edge. The root is the
lowest-numbered center. This module computes the same quantities itself: only chunk pairs on or
above the diagonal (``mi[u, v]`` with ``u < v`` is all the tree reads), each as one float32
matrix product of the soft-bin columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

#: PyJuice 2.6.3 ``HCLT`` defaults
PYJUICE_NUM_BINS = 32
PYJUICE_SIGMA = 0.5 / 32
PYJUICE_CHUNK = 64


def _soft_bins(x, num_bins: int, sigma: float):
    """Chunk-scaled soft-bin weights ``[N, K, num_bins]`` (float32 torch tensors)."""
    import torch

    lo, hi = torch.min(x), torch.max(x)
    xs = (x - lo) / (hi - lo + 1e-8)
    centers = torch.linspace(0, 1, num_bins, dtype=x.dtype, device=x.device)
    return torch.exp(-0.5 * (xs.unsqueeze(2) - centers.view(1, 1, -1)).pow(2) / sigma ** 2)


def _entropy(p, dims):
    import torch

    return -(p * torch.log(p + 1e-4)).sum(dim=dims)


def _block_mi(p1, p2):
    """``H(u) + H(v) - H(u, v)`` for the soft-bin weights of two chunks."""
    n, k1, nb = p1.shape
    k2 = p2.shape[1]
    joint = (p1.reshape(n, k1 * nb).T @ p2.reshape(n, k2 * nb)).reshape(k1, nb, k2, nb) / n
    m1 = (p1 / p1.sum(dim=2, keepdim=True)).mean(dim=0)
    m2 = (p2 / p2.sum(dim=2, keepdim=True)).mean(dim=0)
    joint = joint / joint.sum(dim=(1, 3), keepdim=True)
    return _entropy(m1, 1).unsqueeze(1) + _entropy(m2, 1).unsqueeze(0) - _entropy(joint, (1, 3))


def pyjuice_mutual_information(x: Any, num_bins: int = PYJUICE_NUM_BINS,
                               sigma: float = PYJUICE_SIGMA, chunk: int = PYJUICE_CHUNK,
                               device: Any = None) -> np.ndarray:
    """PyJuice 2.6.3's soft-binned mutual information estimate (see the module docstring).

    Args:
        x: data ``[N, V]``, a numpy array or a torch tensor (taken as float32).
        num_bins, sigma, chunk: PyJuice's ``num_bins``, ``sigma`` and ``chunk_size``.
        device: where to compute (default: where ``x`` is; the CPU for numpy arrays). Products
            run at full float32 precision (no TF32), as PyJuice's do by default.

    Returns:
        float32 ``[V, V]``; only entries ``[u, v]`` with ``u < v`` (and diagonal chunks) are
        filled, the rest is zero. The estimate is not clipped at zero.
    """
    import torch

    xt = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    xt = xt.to(device=device, dtype=torch.float32)
    v = xt.shape[1]
    mi = torch.zeros((v, v), dtype=torch.float32, device=xt.device)
    starts = list(range(0, v, chunk))
    with torch.no_grad(), full_float32(xt.device):
        soft = [_soft_bins(xt[:, s:min(s + chunk, v)], num_bins, sigma) for s in starts]
        for i, s in enumerate(starts):
            for j in range(i, len(starts)):
                t = starts[j]
                mi[s:s + chunk, t:t + chunk] = _block_mi(soft[i], soft[j])
    return mi.cpu().numpy()


@contextmanager
def full_float32(device: Any) -> Iterator[None]:
    """float32 products at full precision on a GPU (TF32 off) while inside."""
    import torch

    if getattr(device, "type", "cpu") != "cuda":
        yield
        return
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def kruskal_tree(mi: np.ndarray) -> list[tuple[int, int]]:
    """Maximum spanning tree on ``mi[u, v]`` (``u < v``) as networkx's Kruskal finds it:
    edges by decreasing weight, ties to the lexicographically smaller ``(u, v)``."""
    v = mi.shape[0]
    us, vs = np.triu_indices(v, k=1)
    w = -np.asarray(mi, dtype=np.float64)[us, vs]  # networkx's weight, float32 values
    order = np.lexsort((vs, us, w))  # stable: weight, then insertion order
    root = list(range(v))

    def find(a: int) -> int:
        while root[a] != a:
            root[a] = root[root[a]]
            a = root[a]
        return a

    edges: list[tuple[int, int]] = []
    for k in order.tolist():
        a, b = int(us[k]), int(vs[k])
        ra, rb = find(a), find(b)
        if ra != rb:
            root[ra] = rb
            edges.append((a, b))
            if len(edges) == v - 1:
                break
    return edges
