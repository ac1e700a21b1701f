"""Pairwise mutual information and Chow-Liu trees, vectorized.

The joint counts of every pair of variables come from one matrix product of one-hot columns:
with ``A[:, (v, a)] = [x_v == a]``, ``A^T A`` holds ``N(x_u = a, x_v = b)`` for all pairs at
once. The column of each variable's value 0 is left out and its counts recovered from the
marginals, so ``K`` values cost ``K - 1`` columns (binary data: ``A`` is the data itself).
Variables with many values (pixels: 256) are first put into ``num_bins`` equal-width bins.
Only the upper triangle of ``A^T A`` is computed, in column chunks. With MNIST's shape
(784 pixels in 4 bins, 20,000 examples) that is 2,352 columns: about 110 GFLOP.

Example::

    mi = mutual_information(x)           # [V, V] float64, zero diagonal
    parent = chow_liu_tree(mi)           # parent[root] == -1
"""

from __future__ import annotations

import numpy as np

#: variables with more values than this are binned before counting
DEFAULT_MAX_BINS = 4


def discretize(x: np.ndarray, num_bins: int | None = None) -> tuple[np.ndarray, int]:
    """Map data to small integer codes ``0..K-1`` for counting.

    Integer data with at most ``num_bins`` values (default :data:`DEFAULT_MAX_BINS`) is kept;
    larger ranges are cut into ``num_bins`` equal-width bins; non-integer data is cut into
    equal-frequency bins per column. Missing values (``-1`` / NaN) go to bin 0.

    Returns:
        ``(codes, K)``: integer codes ``[N, V]`` and the number of codes.
    """
    x = np.asarray(x)
    bins = num_bins or DEFAULT_MAX_BINS
    if np.issubdtype(x.dtype, np.integer) or np.all(np.isnan(x) | (x == np.floor(x))):
        xi = np.where(np.isnan(x), 0, x) if x.dtype.kind == "f" else x
        xi = np.maximum(xi, 0).astype(np.int32)  # -1 (missing) -> 0
        card = int(xi.max()) + 1 if xi.size else 1
        if card <= bins:
            return xi, max(card, 2)
        return (xi * bins) // card, bins
    xf = np.where(np.isnan(x), np.nanmedian(x, axis=0, keepdims=True), x)
    qs = np.quantile(xf, np.linspace(0, 1, bins + 1)[1:-1], axis=0)  # [bins-1, V]
    codes = (xf[None, :, :] > qs[:, None, :]).sum(axis=0)
    return codes.astype(np.int64), bins


def _onehot(codes: np.ndarray, k: int) -> np.ndarray:
    """float32 ``[N, V*(k-1)]``: column ``v*(k-1) + a - 1`` is ``[codes[:, v] == a]``."""
    n, v = codes.shape
    if k == 2:
        return codes.astype(np.float32)
    values = np.arange(1, k, dtype=codes.dtype)
    return (codes[:, :, None] == values).astype(np.float32).reshape(n, v * (k - 1))


def _gram(a: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """``a.T @ a`` in float32 (exact for counts below 2**24), computing only the blocks on or
    above the diagonal and mirroring them; all-zero columns are skipped."""
    import torch

    used = np.flatnonzero(a.any(axis=0))  # e.g. image borders never leave bin 0
    if len(used) < a.shape[1]:
        full = np.zeros((a.shape[1], a.shape[1]), dtype=np.float32)
        full[np.ix_(used, used)] = _gram(np.ascontiguousarray(a[:, used]), chunk)
        return full
    t = torch.from_numpy(a)
    m = a.shape[1]
    out = torch.empty((m, m), dtype=torch.float32)
    for s in range(0, m, chunk):
        e = min(s + chunk, m)
        block = t[:, s:e].T @ t[:, s:]
        out[s:e, s:] = block
        out[s:, s:e] = block.T
    return out.numpy()


def _mi_rows(g: np.ndarray, marg: tuple[np.ndarray, np.ndarray], n: int) -> np.ndarray:
    """Mutual information of a chunk of variables ``u`` against all ``w``.

    Args:
        g: joint counts ``[U, K-1, W, K-1]`` of the non-zero values.
        marg: ``(marg_u [U, K], marg_w [W, K])`` value counts.
    """
    mu, mw = marg
    k = mu.shape[1]
    joint = np.empty((g.shape[0], k, g.shape[2], k))
    joint[:, 1:, :, 1:] = g
    joint[:, 1:, :, 0] = mu[:, 1:, None] - g.sum(axis=3)
    joint[:, 0, :, 1:] = mw[None, :, 1:] - g.sum(axis=1)
    joint[:, 0, :, 0] = mu[:, 0, None] - joint[:, 0, :, 1:].sum(axis=2)
    denom = mu[:, :, None, None] * mw[None, None, :, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = (joint / n) * np.log(joint * n / denom)
    return np.where(joint > 0, terms, 0.0).sum(axis=(1, 3))


def mutual_information(x: np.ndarray, num_bins: int | None = None,
                       chunk: int = 64) -> np.ndarray:
    """Empirical mutual information (nats) between every pair of columns of ``x``.

    Args:
        x: data ``[N, V]``; integer codes or floats.
        num_bins: most values kept per variable before binning (see :func:`discretize`).
        chunk: variables per block of the final reduction (bounds memory).

    Returns:
        float64 ``[V, V]``, symmetric, zero diagonal.
    """
    codes, k = discretize(x, num_bins)
    n, v = codes.shape
    gram = _gram(_onehot(codes, k)).reshape(v, k - 1, v, k - 1)
    marg = np.stack([(codes == c).sum(axis=0) for c in range(k)], axis=1).astype(np.float64)
    mi = np.empty((v, v))
    for s in range(0, v, chunk):
        e = min(s + chunk, v)
        mi[s:e] = _mi_rows(gram[s:e].astype(np.float64), (marg[s:e], marg), n)
    mi = 0.5 * (mi + mi.T)
    np.fill_diagonal(mi, 0.0)
    return np.maximum(mi, 0.0)


def chow_liu_tree(mi: np.ndarray) -> np.ndarray:
    """Maximum spanning tree of the mutual-information graph, rooted at its center.

    Prim's algorithm on the dense matrix, ``O(V^2)`` in numpy. Ties break towards lower
    variable ids; the root is the lowest-numbered center (a node of least eccentricity).

    Returns:
        int64 ``parent[v]`` (``-1`` at the root).
    """
    v = mi.shape[0]
    if v <= 1:
        return np.full(v, -1, dtype=np.int64)
    w = np.asarray(mi, dtype=np.float64)
    in_tree = np.zeros(v, dtype=bool)
    best = np.full(v, -np.inf)
    link = np.zeros(v, dtype=np.int64)
    edges = []
    u = 0
    for _ in range(v - 1):
        in_tree[u] = True
        better = (w[u] > best) & ~in_tree
        best[better] = w[u][better]
        link[better] = u
        cand = np.where(in_tree, -np.inf, best)
        u = int(np.argmax(cand))
        edges.append((int(link[u]), u))
    return root_tree(v, edges, min(tree_centers(v, edges)))


def root_tree(v: int, edges: list[tuple[int, int]], root: int) -> np.ndarray:
    """Parent array of the tree with undirected ``edges``, hung from ``root``."""
    adj: list[list[int]] = [[] for _ in range(v)]
    for a, b in edges:
        adj[a].append(b)
        adj[b].append(a)
    parent = np.full(v, -1, dtype=np.int64)
    seen = np.zeros(v, dtype=bool)
    seen[root] = True
    frontier = [root]
    while frontier:
        nxt = []
        for a in frontier:
            for b in sorted(adj[a]):
                if not seen[b]:
                    seen[b] = True
                    parent[b] = a
                    nxt.append(b)
        frontier = nxt
    return parent


def tree_centers(v: int, edges: list[tuple[int, int]]) -> list[int]:
    """The one or two centers of a tree, found by peeling leaves layer by layer."""
    adj: list[list[int]] = [[] for _ in range(v)]
    for a, b in edges:
        adj[a].append(b)
        adj[b].append(a)
    deg = [len(x) for x in adj]
    remaining = set(range(v))
    layer = [u for u in range(v) if deg[u] <= 1]
    while len(remaining) > 2:
        remaining.difference_update(layer)
        nxt = []
        for u in layer:
            for w in adj[u]:
                if w in remaining:
                    deg[w] -= 1
                    if deg[w] == 1:
                        nxt.append(w)
        layer = nxt
    return sorted(remaining)
