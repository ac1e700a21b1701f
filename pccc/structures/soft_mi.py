"""Soft-binned mutual information of every pair of variables, fast (``mi_estimator="soft"``).

The estimate is PyJuice 2.6.3's (:mod:`pccc.structures.mutual_info`): values scaled to
``[0, 1]`` by the data's minimum and maximum; a value ``x`` has the Gaussian soft-bin weights
``phi(x)[a] = exp(-(x - c_a)^2 / (2 sigma^2))`` on ``B`` centers ``c_a = linspace(0, 1, B)``;
pair ``(u, v)``'s joint table is ``sum_b phi(x_bu) phi(x_bv)^T`` normalized, each marginal the
mean of per-example normalized weights, entropies use ``log(p + 1e-4)``, and
``mi = H(u) + H(v) - H(u, v)``. What differs is how the joint tables are computed:

- Values become *levels*: integer data keeps its values (missing ``-1`` taken as 0), other
  data (or integers spanning more than :data:`MAX_LEVELS` values) is rounded to
  :data:`FLOAT_LEVELS` levels of its range; ``NaN`` counts as the minimum. A histogram of
  each variable's levels gives its exact mean weights ``mu_u``, marginals and covariance
  ``C_u = sum_b (phi_bu - mu_u)(phi_bu - mu_u)^T``.
- Each variable's centered weights are projected on the top ``rank`` eigenvectors ``W_u`` of
  ``C_u``: all of them when the variable takes at most ``rank + 1`` distinct values (the
  projection is then exact; a constant variable has none).
- One Gram product of the projected columns ``Q = [(phi(x_bu) - mu_u) W_u]`` (a lookup per
  level; ``N x sum_u r_u``) gives every joint:
  ``sum_b phi_bu phi_bv^T ~= N mu_u mu_v^T + W_u (Q_u^T Q_v) W_v^T``, clipped at 0. It is
  computed from the lookups centered at each variable's most frequent level instead (zero
  there: 81% of MNIST's entries), with the examples sorted so that each block of columns
  reads only a prefix of them (see :func:`_gram`).
- Only *candidate* pairs are estimated: ``v`` among ``u``'s ``candidates`` strongest
  partners by the RV coefficient of their blocks of that Gram, or the other way round; the
  others are ``-inf``. A constant variable's estimates depend on its value alone: they are
  computed once per value, against every variable.

With ``rank = B`` and every pair it is PyJuice's estimate up to float32 rounding (on data
whose 64-column chunks all span the data's range, as MNIST's do). Everything runs in torch on
``device`` (by default where ``x`` lives), in float32 but for the per-variable statistics
(float64). On MNIST (20,000 images) with the defaults (``rank`` 8, 32 candidates) the tree is
that of every pair's estimates but for pixels nonzero in at most 3 images, whose estimates
are below 1e-4 (``docs/structures.md`` has the figures).

Example::

    mi = soft_mutual_information(x_train[:20000])   # [V, V] float32, filled for u < v
    edges = kruskal_tree(mi)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from pccc.structures.mutual_info import PYJUICE_NUM_BINS, PYJUICE_SIGMA, full_float32

#: integer data spanning at most this many values keeps them as its levels
MAX_LEVELS = 4096
#: levels of the range of other data
FLOAT_LEVELS = 1024
#: principal directions kept per variable by default
DEFAULT_RANK = 8
#: partners per variable whose pairs are estimated by default
DEFAULT_CANDIDATES = 32
#: floor inside PyJuice's entropies, ``log(p + 1e-4)``
ENTROPY_FLOOR = 1e-4


def _as_tensor(x: Any, device: Any):
    import torch

    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    return t.to(device) if device is not None else t


def to_levels(x) -> tuple[Any, Any]:
    """Level codes ``[N, V]`` (int16, ``0..L-1``) and each level's value scaled to ``[0, 1]``
    (float64 ``[L]``), on ``x``'s device (see the module docstring)."""
    import torch

    if x.is_floating_point():
        xf = x.double()
        finite = torch.isfinite(xf)
        lo = xf[finite].min() if bool(finite.any()) else xf.new_zeros(())
        xf = torch.where(finite, xf, lo)
        if not bool((xf == xf.floor()).all()):
            return _grid_levels(xf)
        x = xf
    xi = x.long().clamp_min(0)
    lo, hi = int(xi.min()), int(xi.max())
    if hi - lo + 1 > MAX_LEVELS:
        return _grid_levels(xi.double())
    vals = torch.arange(lo, hi + 1, dtype=torch.float64, device=x.device)
    # (xi is a new array; int16 codes: at most MAX_LEVELS levels, two bytes an entry)
    return xi.sub_(lo).to(torch.int16), (vals - lo) / (hi - lo + 1e-8)


def _grid_levels(xf) -> tuple[Any, Any]:
    """:data:`FLOAT_LEVELS` equal-width levels of the range of float64 data."""
    import torch

    lo, span = xf.min(), float(xf.max() - xf.min())
    levels = torch.round((xf - lo) / (span or 1.0) * (FLOAT_LEVELS - 1)).to(torch.int16)
    grid = torch.arange(FLOAT_LEVELS, dtype=torch.float64, device=xf.device) / (FLOAT_LEVELS - 1)
    return levels, grid * (span / (span + 1e-8))


@contextmanager
def _threads(n: int | None, device) -> Iterator[None]:
    """Run the CPU's torch ops on ``n`` threads (None: as set). Elementwise passes, gathers
    and 32 x 32 problems go on one thread: on a busy machine more threads only add waits at
    the barriers of such small operations. The Gram's large products use every thread."""
    import torch

    if n is None or device.type != "cpu" or torch.get_num_threads() == n:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _eigenvectors(cov, constant):
    """Eigenvectors ``[v', B, B]`` of symmetric ``cov``, largest eigenvalue first, on the
    device of ``cov``: computed by LAPACK on the CPU on one thread (cuSOLVER's batched Jacobi
    solver can fail to converge on a zero matrix, a constant variable's covariance; the
    identity stands in for those, whose directions are not used)."""
    import torch

    eye = torch.eye(cov.shape[1], dtype=cov.dtype, device=cov.device)
    cov = torch.where(constant[:, None, None], eye, cov)
    with _threads(1, torch.device("cpu")):
        vecs = torch.linalg.eigh(cov.cpu())[1]
    return vecs.flip(-1).to(cov.device)


@dataclass
class _Projection:
    """Per-variable statistics of the soft-bin weights, from the level histograms."""

    h_marg: Any
    """``[V]`` float64: entropies of the marginals (means of per-example normalized weights)"""
    w: Any
    """``[V, B, rank + 1]`` float64: the top ``ranks[v]`` directions (the others zero) and,
    last, ``sqrt(N) mu_v``"""
    lut: Any
    """``[V, L, rank]`` float64: ``(phi(level) - phi(mode_v)) W_v``, zero at the mode"""
    shift: Any
    """``[V, rank]`` float64: the mean of ``lut`` over the examples, ``(mu_v - phi(mode_v)) W_v``"""
    ranks: Any
    """``[V]`` int64: directions kept, ``min(rank, distinct levels - 1)``"""
    mode: Any
    """``[V]`` int64: the most frequent level"""


def _project(levels, scaled, num_bins: int, sigma: float, rank: int) -> _Projection:
    """Means, marginals, principal directions and level lookups of every variable."""
    import torch

    n, v = levels.shape
    nl = scaled.shape[0]
    dev = levels.device
    centers = torch.linspace(0, 1, num_bins, dtype=torch.float64, device=dev)
    table = torch.exp(-0.5 * (scaled[:, None] - centers[None]) ** 2 / sigma ** 2)  # [L, B]
    wide = torch.int64 if v * nl >= 2**31 else torch.int32
    offs = torch.arange(v, device=dev, dtype=wide) * nl
    hist = torch.bincount((levels.to(wide) + offs).reshape(-1), minlength=v * nl)
    hist = hist.reshape(v, nl).double()
    mu = hist @ table / n
    marg = hist @ (table / table.sum(dim=1, keepdim=True)) / n
    h_marg = -(marg * torch.log(marg + ENTROPY_FLOOR)).sum(dim=1)
    mode = hist.argmax(dim=1)
    w = torch.zeros((v, num_bins, rank + 1), dtype=torch.float64, device=dev)
    w[:, :, rank] = mu * n ** 0.5
    lut = torch.zeros((v, nl, rank), dtype=torch.float64, device=dev)
    ranks = ((hist > 0).sum(dim=1) - 1).clamp(0, rank)
    step = max(1, (1 << 22) // (nl * num_bins))
    for s in range(0, v, step):
        d = table[None] - mu[s:s + step, None]  # [v', L, B] centered weights per level
        cov = (d * hist[s:s + step, :, None]).transpose(1, 2) @ d
        top = _eigenvectors(cov, ranks[s:s + step] == 0)[:, :, :rank]  # largest first
        top = top * (torch.arange(rank, device=dev)[None] < ranks[s:s + step, None])[:, None]
        w[s:s + step, :, :rank] = top
        lut[s:s + step] = (table[None] - table[mode[s:s + step], None]) @ top
    shift = ((mu - table[mode])[:, None, :] @ w[:, :, :rank]).squeeze(1)
    return _Projection(h_marg, w, lut, shift, ranks, mode)


def _rows(levels) -> int:
    """Rows of the ``[N, V]`` codes a per-example pass takes at a time: 4M entries, so that
    its int64 temporaries stay at 32 MiB."""
    return max(1, (1 << 22) // max(1, levels.shape[1]))


@dataclass
class _Layout:
    """The Gram's columns: variables by increasing share of examples off their mode (so the
    rows a block of columns needs grow from block to block), each variable's directions."""

    var_of: Any
    """``[M]``: the variable of each column"""
    slot_of: Any
    """``[M]``: the direction of each column"""
    start: Any
    """``[V]``: each variable's first column"""

    @classmethod
    def of(cls, levels, proj: _Projection) -> _Layout:
        import torch

        dev = levels.device
        # examples off each variable's mode, counted a slice of rows at a time (at once, the
        # comparison and its sum made int64 copies of [N, V]: 366 MiB at 20,000 x 784)
        mode = proj.mode.to(levels.dtype)[None]
        off_mode = torch.zeros(levels.shape[1], dtype=torch.int64, device=dev)
        step = _rows(levels)
        for s in range(0, levels.shape[0], step):
            off_mode += (levels[s:s + step] != mode).sum(dim=0, dtype=torch.int32)
        order = torch.argsort(off_mode * levels.shape[1] + torch.arange(levels.shape[1],
                                                                           device=dev))
        counts = proj.ranks[order]
        var_of = torch.repeat_interleave(order, counts)
        first = torch.cumsum(counts, 0) - counts
        slot_of = torch.arange(len(var_of), device=dev) - torch.repeat_interleave(first, counts)
        start = torch.empty_like(proj.ranks)
        start[order] = first
        return cls(var_of, slot_of, start)


def _sorted_levels(levels, proj: _Projection, lay: _Layout, col_block: int = 128
                   ) -> tuple[Any, list[int]]:
    """The level codes ``[V, N]`` (int16) with the examples sorted by the first block of
    ``col_block`` Gram columns in which one of their variables is off its mode, and per block
    the number of examples it needs (cumulative; see :func:`_gram`)."""
    import torch

    m = len(lay.var_of)
    mode = proj.mode.to(levels.dtype)[None]
    first = torch.empty(levels.shape[0], dtype=torch.int64, device=levels.device)  # [N]
    step = _rows(levels)
    for s in range(0, levels.shape[0], step):
        off = levels[s:s + step] != mode
        first[s:s + step] = torch.where(off, lay.start[None], m).amin(dim=1) // col_block
    order = torch.argsort(first, stable=True)
    needed = torch.bincount(first, minlength=m // col_block + 2).cumsum(0).tolist()
    del first
    return levels.T[:, order].contiguous(), needed


def _gram(levels, proj: _Projection, lay: _Layout, threads: int | None,
          col_block: int = 128, row_chunk: int | None = None):
    """The centered Gram ``Q^T Q`` (float32 ``[M, M]``) of the projected weights.

    Built from the mode-centered lookups ``Q~`` (zero where a variable is at its mode) as
    ``Q~^T Q~ - N s s^T`` (``s``: their means). The examples are sorted by the first block of
    columns in which one of their variables is off its mode; a block then needs only the
    examples up to the last one starting at or before it, and only the columns from its own
    on (on MNIST with 8 directions: 45% of the dense product's upper triangle, with no copy).
    ``Q~`` is filled ``row_chunk`` examples at a time (None: all at once; on a GPU, chunks of
    64 MiB keep the estimate's memory below the Gram's own size).
    """
    sorted_levels, needed = _sorted_levels(levels, proj, lay, col_block)
    return _gram_sorted(sorted_levels, needed, proj, lay, threads, col_block, row_chunk)


def _gram_sorted(sorted_levels, needed: list[int], proj: _Projection, lay: _Layout,
                 threads: int | None, col_block: int = 128, row_chunk: int | None = None):
    """:func:`_gram` from :func:`_sorted_levels`'s codes ``[V, N]`` and counts, so that a
    caller can free the ``[N, V]`` codes before the Gram is made."""
    import torch

    v, n = sorted_levels.shape
    m = len(lay.var_of)
    dev = sorted_levels.device
    if row_chunk is None:
        row_chunk = max(1024, (1 << 24) // max(m, 1)) if dev.type == "cuda" else n
    lut = proj.lut.float()
    starts, ranks = lay.start.tolist(), proj.ranks.tolist()
    g = torch.zeros((m, m), dtype=torch.float32, device=dev)
    q = torch.empty((min(row_chunk, n), m), dtype=torch.float32, device=dev)
    last = needed[(m - 1) // col_block] if m else 0  # (the examples any block needs)
    with _threads(threads, dev):
        for a in range(0, last, row_chunk):
            b = min(a + row_chunk, n)
            for u in range(v):
                if ranks[u]:
                    q[:b - a, starts[u]:starts[u] + ranks[u]] = \
                        lut[u, :, :ranks[u]][sorted_levels[u, a:b].int()]
            for s in range(0, m, col_block):
                e = min(s + col_block, m)
                rows = min(needed[s // col_block], b) - a
                if rows > 0:
                    # [M - s, block] in place: of the two orientations, MKL's faster one on
                    # the CPU
                    g[s:, s:e].addmm_(q[:rows, s:].T, q[:rows, s:e])
    del q
    for s in range(col_block, m, col_block):  # the blocks above the diagonal
        g[:s, s:min(s + col_block, m)] = g[s:min(s + col_block, m), :s].T
    mean = proj.shift[lay.var_of, lay.slot_of].float()
    g.addr_(mean, mean, alpha=-float(n))
    return g


def _candidates(g, var_of, v: int, k: int):
    """Pairs ``(u, v)``, ``u < v``, with ``v`` among ``u``'s ``k`` strongest partners or the
    other way round, by the RV coefficient ``|G_uv|^2 / (|G_uu| |G_vv|)`` (Frobenius norms of
    the projected Gram's blocks); variables without columns (constants) have none."""
    import torch

    dev = g.device
    sq = torch.zeros((v, g.shape[0]), dtype=torch.float32, device=dev)
    for s in range(0, g.shape[0], 1024):  # (row blocks: no second [M, M] array)
        sq.index_add_(0, var_of[s:s + 1024], g[s:s + 1024] ** 2)
    blocks = torch.zeros((v, v), dtype=torch.float32, device=dev)
    blocks.index_add_(1, var_of, sq)
    norm = torch.diagonal(blocks).sqrt()
    rv = blocks / (norm[:, None] * norm[None, :]).clamp_min(1e-30)
    live = norm > 0
    rv.fill_diagonal_(-1.0)
    rv[~live] = -1.0
    rv[:, ~live] = -1.0
    top = torch.topk(rv, min(k, v - 1), dim=1).indices  # [V, k]
    u = torch.arange(v, device=dev)[:, None].expand_as(top)
    ok = live[:, None] & (rv.gather(1, top) >= 0)
    a, b = u[ok], top[ok]
    pairs = torch.stack([torch.minimum(a, b), torch.maximum(a, b)], 1)
    return torch.unique(pairs, dim=0)


def soft_mutual_information(x: Any, num_bins: int = PYJUICE_NUM_BINS,
                            sigma: float = PYJUICE_SIGMA, rank: int = DEFAULT_RANK,
                            candidates: int | None = DEFAULT_CANDIDATES,
                            device: Any = None) -> np.ndarray:
    """PyJuice's soft-binned mutual information through each variable's top ``rank``
    principal soft-bin directions (see the module docstring).

    Args:
        x: data ``[N, V]``: a numpy array or a torch tensor (integers, ``-1`` missing; or
            floats).
        num_bins, sigma: the soft bins (PyJuice's ``num_bins`` and ``sigma``).
        rank: principal directions kept per variable (``num_bins``: PyJuice's estimate).
        candidates: estimate a pair only if one variable is among the other's
            ``candidates`` strongest partners by the RV coefficient of their projected
            weights (pairs with a constant variable always); None: every pair.
        device: where to compute (default: where ``x`` is; the CPU for numpy arrays).

    Returns:
        float32 ``[V, V]``: entries ``[u, v]`` with ``u < v`` hold the estimate, ``-inf`` for
        pairs not estimated; the diagonal and the lower triangle are zero.
    """
    import torch

    if not 1 <= rank <= num_bins:
        raise ValueError(f"rank must be in 1..num_bins ({num_bins}), got {rank}")
    if candidates is not None and candidates < 1:
        raise ValueError(f"candidates must be >= 1 or None, got {candidates}")
    xt = _as_tensor(x, device)
    threads = torch.get_num_threads()
    with torch.no_grad(), _threads(1, xt.device), full_float32(xt.device):
        levels, scaled = to_levels(xt)
        v = levels.shape[1]
        dev = levels.device
        proj = _project(levels, scaled, num_bins, sigma, rank)
        lay = _Layout.of(levels, proj)
        row0 = levels[0].long()
        sorted_levels, needed = _sorted_levels(levels, proj, lay)
        del levels  # (the sorted copy is all the Gram needs: one [N, V] array, not two)
        g = _gram_sorted(sorted_levels, needed, proj, lay, threads)
        del sorted_levels
        const = proj.ranks == 0
        pairs = _candidates(g, lay.var_of, v, candidates or v)
        # a constant's estimate depends on its level alone: one row per level
        reps = _constant_reps(row0, const)
        rep_pairs = torch.stack(torch.meshgrid(reps, torch.arange(v, device=dev),
                                               indexing="ij"), -1).reshape(-1, 2)
        pair_mi = _PairMI(g, proj, lay.start, dev.type == "cuda")
        mi = torch.full((v, v), -float("inf"), dtype=torch.float32, device=dev)
        mi[pairs[:, 0], pairs[:, 1]] = pair_mi(pairs)
        if len(reps):
            by_level = torch.zeros((int(row0.max()) + 1, v), device=dev)
            by_level[row0[reps]] = pair_mi(rep_pairs).view(len(reps), v)
            crow = by_level[row0]  # [V, V]: row c holds c's estimates if c is constant
            mi = torch.where(const[:, None], crow, mi)
            mi = torch.where(const[None, :], crow.T, mi)
        mi = torch.triu(mi, diagonal=1)
    return mi.cpu().numpy()


def _constant_reps(first_row, const):
    """One constant variable per level that constants take (the lowest-numbered)."""
    import torch

    ids = torch.nonzero(const).flatten()
    if not len(ids):
        return ids
    lv = first_row[ids].long()
    order = torch.argsort(lv * (len(const) + 1) + ids)
    lv, ids = lv[order], ids[order]
    first = torch.ones_like(lv, dtype=torch.bool)
    first[1:] = lv[1:] != lv[:-1]
    return ids[first]


class _PairMI:
    """Estimates of a list of pairs from the compact projected Gram."""

    def __init__(self, g, proj: _Projection, start, on_gpu: bool):
        self.g, self.w, self.h_marg = g, proj.w.float(), proj.h_marg.float()
        self.rank = self.w.shape[2] - 1
        self.ranks = proj.ranks
        self.offs = start
        # pairs per step: on a GPU [P, B, B] float32 arrays of 32 MiB (two live at once, beside
        # the Gram: less than the Gram's own step); on the CPU in cache
        self.chunk = 1 << 13 if on_gpu else 128

    def _blocks(self, u, v):
        """The padded Gram blocks ``[P, r + 1, r + 1]`` (the last slot pairs the means)."""
        import torch

        r = self.rank
        slot = torch.arange(r, device=u.device)
        ru = (self.offs[u][:, None] + slot).clamp_max(max(self.g.shape[0] - 1, 0))
        rv = (self.offs[v][:, None] + slot).clamp_max(max(self.g.shape[0] - 1, 0))
        mask = ((slot[None] < self.ranks[u][:, None])[:, :, None]
                & (slot[None] < self.ranks[v][:, None])[:, None, :])
        blk = torch.zeros((len(u), r + 1, r + 1), dtype=torch.float32, device=u.device)
        if self.g.shape[0]:
            blk[:, :r, :r] = torch.where(mask, self.g[ru[:, :, None], rv[:, None, :]], 0.0)
        blk[:, r, r] = 1.0
        return blk

    def __call__(self, pairs):
        import torch

        out = torch.empty(len(pairs), dtype=torch.float32, device=pairs.device)
        for s in range(0, len(pairs), self.chunk):
            u, v = pairs[s:s + self.chunk, 0], pairs[s:s + self.chunk, 1]
            joint = torch.bmm(torch.bmm(self.w[u], self._blocks(u, v)),
                              self.w[v].transpose(1, 2))  # [P, B, B]
            joint.clamp_(min=0)
            tot = joint.sum(dim=(1, 2))
            lg = joint + (ENTROPY_FLOOR * tot)[:, None, None]
            lg.log_()
            lg.mul_(joint)
            # H = log S - sum J log(J + eps S) / S for the unnormalized joint J, S = sum J
            h = tot.log() - lg.sum(dim=(1, 2)) / tot
            out[s:s + len(u)] = self.h_marg[u] + self.h_marg[v] - h
        return out
