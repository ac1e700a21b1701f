"""The sum weights' groups by aligned tiles of 64 weights, for the flat weight kernels.

:func:`group_tiles` gives each tile its group (or a row of per-weight groups where a tile
mixes them); :func:`tile_runs` cuts those into runs of one group, which the per-group
reductions (``segment_reduce``) read. Neither copies the plan's per-weight group array.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

#: index tables with a value at or beyond this are int64 on the device, else int32 (the
#: weight offsets of a plan of 2^31 weights or more; the tests lower it to take that path)
INDEX_LIMIT = 2**31


def group_tiles(param_group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The weights' groups by aligned tiles of 64: ``[tiles]`` the group of a tile whose 64
    weights all belong to it, -1 for a tile of padding only, or ``-2 - r`` for any other tile
    (groups mixed, or with padding), whose weights' groups (-1: padding, or past the end) are
    row ``r`` of ``[mixed, 64]``. One pass over a view of the plan's array (no copy of it:
    155M weights on PD-256; see :func:`row_bounds`)."""
    g = np.asarray(param_group)
    n = len(g)
    tail = np.full((1 if n % 64 else 0, 64), -1, np.int64)
    tail[:, : n % 64] = g[n - n % 64:]
    body = g[: n - n % 64].reshape(-1, 64)
    lo, hi = row_bounds(body)
    lo = np.concatenate([lo, tail.min(axis=1)], dtype=np.int64)
    hi = np.concatenate([hi, tail.max(axis=1)], dtype=np.int64)
    lo, hi = np.maximum(lo, -1), np.maximum(hi, -1)  # any negative id is padding
    mix = lo != hi
    tiles = hi.copy()
    idx = np.flatnonzero(mix)
    tiles[idx] = -2 - np.arange(len(idx))
    if not len(idx):
        return tiles, np.full((1, 64), -1, np.int64)
    rows = body[idx[idx < len(body)]]
    if idx[-1] == len(body):  # the last, partial tile
        rows = np.concatenate([rows, tail])
    return tiles, np.maximum(rows, -1)


def row_bounds(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's minimum and maximum, in one pass by torch's threads (numpy's ``min`` and
    ``max`` are a single-threaded pass each: 0.5 s over PD-256's 155M weight groups)."""
    a = np.ascontiguousarray(a)  # (torch views native-order, positive strides; no copy of
    # the plan's int32 groups)
    with warnings.catch_warnings():  # the plan's arrays are read-only; torch only reads here
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        t = torch.from_numpy(a)
    if not t.numel():
        return a.min(axis=1, initial=0), a.max(axis=1, initial=0)
    lo, hi = torch.aminmax(t, dim=1)
    return lo.numpy(), hi.numpy()


def tile_runs(tiles: np.ndarray, mixed: np.ndarray) -> tuple[np.ndarray, ...]:
    """Runs of consecutive weights of one group (padding left out), none longer than a tile
    (64 = ``RUN_MAX``), from :func:`group_tiles`: a tile of one group is a run, a mixed tile
    is cut where its groups change. int32 (start, length, group; start int64 where the
    weights number 2^31 or more), not sorted."""
    uni = np.flatnonzero(tiles >= 0)
    rows = np.flatnonzero(tiles <= -2)
    m = mixed[-2 - tiles[rows]] if len(rows) else np.zeros((0, 64), np.int64)
    new = np.ones(m.shape, bool)
    new[:, 1:] = m[:, 1:] != m[:, :-1]
    r, j = np.nonzero(new)
    end = np.append(j[1:], 64)
    end[np.append(r[1:] != r[:-1], True)] = 64  # a row's last run ends with the tile
    keep = m[r, j] >= 0
    r, j, end = r[keep], j[keep], end[keep]
    wide = np.int64 if len(tiles) * 64 >= INDEX_LIMIT else np.int32
    start = np.concatenate([uni * 64, rows[r] * 64 + j], dtype=wide)
    length = np.concatenate([np.full(len(uni), 64), end - j], dtype=np.int32)
    group = np.concatenate([tiles[uni], m[r, j]], dtype=np.int32)
    return start, length, group
