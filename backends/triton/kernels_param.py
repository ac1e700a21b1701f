"""Kernels over the flat weight buffer, and the zeroing of flow rows.

There is no group id per weight: per-group reductions go by runs (a run: consecutive weights
of one group, at most ``MAXLEN`` long; one atomic per run, never one per weight), and the
elementwise kernels (log-softmax of the logits, the logits' gradient, the EM update) by
aligned tiles of 64 weights, each with one group id (or, for a tile that mixes groups, a row
of per-weight ids), so their accesses stay vectorized. Padding (weights of no group) is never
read nor written.
"""

from __future__ import annotations

import triton
import triton.language as tl

from pccc.backends.triton.lazyjit import kernel


@triton.jit
def _runs(run_start, run_len, run_group, nruns, RUNS: tl.constexpr, MAXLEN: tl.constexpr):
    """This program's RUNS runs: flat offsets [RUNS, MAXLEN], their mask, the run mask and
    each run's group."""
    r = tl.program_id(0) * RUNS + tl.arange(0, RUNS)
    rm = r < nruns
    s = tl.load(run_start + r, mask=rm, other=0).to(tl.int64)
    n = tl.load(run_len + r, mask=rm, other=0)
    g = tl.load(run_group + r, mask=rm, other=0)
    j = tl.arange(0, MAXLEN)
    return s[:, None] + j[None, :], rm[:, None] & (j[None, :] < n[:, None]), rm, g


@kernel
def segment_reduce(x, y, run_start, run_len, run_group, out, aux, nruns, RUNS: tl.constexpr,
                   MAXLEN: tl.constexpr, MODE: tl.constexpr):
    """Per run r of group g = run_group[r] over x[start : start + len]: MODE 0 out[g] += sum x,
    1 out[g] += sum x * y, 2 out[g] = max(out[g], max x), 3 out[g] += sum exp(x - aux[g])."""
    off, m, rm, g = _runs(run_start, run_len, run_group, nruns, RUNS, MAXLEN)
    if MODE == 2:
        v = tl.load(x + off, mask=m, other=float("-inf"))
        tl.atomic_max(out + g, tl.max(v, axis=1), mask=rm, sem="relaxed")
    else:
        v = tl.load(x + off, mask=m, other=0.0)
        if MODE == 1:
            v = v * tl.load(y + off, mask=m, other=0.0)
        if MODE == 3:
            a = tl.load(aux + g, mask=rm, other=0.0)
            ok = m & (v > float("-inf")) & (a > float("-inf"))[:, None]
            v = tl.where(ok, tl.exp(v - tl.where(ok, a[:, None], 0.0)), 0.0)
        tl.atomic_add(out + g, tl.sum(v, axis=1), mask=rm, sem="relaxed")


@triton.jit
def _tiles(tile_group, ntiles, TILES: tl.constexpr):
    """This program's TILES tiles of 64 weights: flat offsets [TILES, 64], the tiles' groups
    tg (-1: padding only, <= -2: row -2 - tg of the mixed table) and whether every tile has
    one group (then the masks and per-group values are per tile, and accesses vectorize)."""
    t = tl.program_id(0) * TILES + tl.arange(0, TILES)
    tg = tl.load(tile_group + t, mask=t < ntiles, other=-1)
    off = t.to(tl.int64)[:, None] * 64 + tl.arange(0, 64)[None, :]
    return off, tg, tl.min(tg, axis=0) >= -1


@triton.jit
def _mixed_groups(mixed, tg):
    """[TILES, 64] group of each weight of tiles that mix groups (-1: padding)."""
    mix = (tg <= -2)[:, None]
    row = tl.where(tg <= -2, -2 - tg, 0).to(tl.int64)
    g = tl.load(mixed + row[:, None] * 64 + tl.arange(0, 64)[None, :], mask=mix, other=-1)
    return tl.where(mix, g, tg[:, None])


@triton.jit
def _softmax_body(logits, w, off, m, mx, sm, z):
    x = tl.load(logits + off, mask=m, other=0.0)
    ok = m & (x > float("-inf")) & (z > float("-inf")) & (sm > 0.0)
    lw = x - tl.where(ok, mx + tl.log(sm), 0.0) + tl.where(ok, z, 0.0)
    tl.store(w + off, tl.where(ok, tl.exp(lw), 0.0), mask=m)


@kernel
def weights_from_logits(logits, tile_group, mixed, gmax, gsum, norm, w, ntiles,
                        TILES: tl.constexpr):
    """w = exp(logit - logsumexp of its group + log Z_g); padding untouched."""
    off, tg, uniform = _tiles(tile_group, ntiles, TILES)
    if uniform:
        mt = tg >= 0
        gt = tl.maximum(tg, 0)
        _softmax_body(logits, w, off, mt[:, None], tl.load(gmax + gt, mask=mt)[:, None],
                      tl.load(gsum + gt, mask=mt, other=1.0)[:, None],
                      tl.load(norm + gt, mask=mt)[:, None])
    else:
        gm = _mixed_groups(mixed, tg)
        mm = gm >= 0
        gm = tl.maximum(gm, 0)
        _softmax_body(logits, w, off, mm, tl.load(gmax + gm, mask=mm),
                      tl.load(gsum + gm, mask=mm, other=1.0), tl.load(norm + gm, mask=mm))


@kernel
def zero_rows(buf, tile_row, tile_len, stride, width, R: tl.constexpr, CB: tl.constexpr):
    """Zero rows tile_row[t] .. tile_row[t] + tile_len[t] - 1 (at most R) of buf [rows,
    stride] in columns below width: program (t, column block)."""
    t = tl.program_id(0)
    r0 = tl.load(tile_row + t).to(tl.int64)
    n = tl.load(tile_len + t)
    rows = tl.arange(0, R)
    cols = tl.program_id(1) * CB + tl.arange(0, CB)
    tl.store(buf + (r0 + rows)[:, None] * stride + cols[None, :], tl.zeros([R, CB], tl.float32),
             mask=(rows < n)[:, None] & (cols < width)[None, :])


@kernel
def flows_finish(w, pgrad, scale, flag, flows, total, BLOCK: tl.constexpr):
    """EM flows of a backward pass with a uniform scale s (flag[0] == 0): flows += w * grad / s
    (a non-uniform scale had the sum kernels add them to flows directly)."""
    if tl.load(flag) == 0:
        p = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        pm = p < total
        s = tl.load(scale)
        v = tl.load(w + p, mask=pm, other=0.0) * tl.load(pgrad + p, mask=pm, other=0.0)
        f = tl.load(flows + p, mask=pm, other=0.0)
        tl.store(flows + p, f + v / s, mask=pm)


@triton.jit
def _grad_body(w, pgrad, out, off, m, z, gs):
    ww = tl.load(w + off, mask=m, other=0.0)
    a = ww * tl.load(pgrad + off, mask=m, other=0.0)
    prob = tl.where(ww > 0.0, ww * tl.exp(-z), 0.0)
    tl.store(out + off, a - prob * gs, mask=m)


@kernel
def logits_grad(w, pgrad, tile_group, mixed, gs, norm, out, ntiles, TILES: tl.constexpr):
    """d loss / d logit = w grad - (w / Z_g) sum over the group of w grad (gs); padding
    untouched."""
    off, tg, uniform = _tiles(tile_group, ntiles, TILES)
    if uniform:
        mt = tg >= 0
        gt = tl.maximum(tg, 0)
        _grad_body(w, pgrad, out, off, mt[:, None], tl.load(norm + gt, mask=mt)[:, None],
                   tl.load(gs + gt, mask=mt)[:, None])
    else:
        gm = _mixed_groups(mixed, tg)
        mm = gm >= 0
        gm = tl.maximum(gm, 0)
        _grad_body(w, pgrad, out, off, mm, tl.load(norm + gm, mask=mm),
                   tl.load(gs + gm, mask=mm))


@triton.jit
def _em_body(w, flows, logits, off, m, zm, gs, k, step, pseudocount, LOGITS: tl.constexpr):
    fl = tl.load(flows + off, mask=m, other=0.0)
    ww = tl.load(w + off, mask=m, other=0.0)
    den = gs + pseudocount
    new = tl.where(m & (den > 0.0), (1.0 - step) * ww + step * (fl + pseudocount / k) /
                   tl.where(den > 0.0, den, 1.0), ww)
    tl.store(w + off, new, mask=m)
    if LOGITS:
        tl.store(logits + off, tl.log(new), mask=m)
    tl.store(flows + off, tl.zeros_like(new), mask=m & zm)


@kernel
def em_weights(w, flows, tile_group, mixed, gsum, gsize, logits, zero, ntiles, step,
               pseudocount, TILES: tl.constexpr, PARTIAL: tl.constexpr, LOGITS: tl.constexpr):
    """w <- (1 - step) w + step (F + a / K) / (F_g + a) per group (unchanged where F_g + a is
    0); logits <- log w (where LOGITS); flows <- 0 (padding untouched), where PARTIAL only in
    the tiles with zero[t] != 0 (the others' next EM flows are stored by the backward,
    whatever they hold)."""
    off, tg, uniform = _tiles(tile_group, ntiles, TILES)
    t = tl.program_id(0) * TILES + tl.arange(0, TILES)
    if PARTIAL:
        zt = (tl.load(zero + t, mask=t < ntiles, other=0) != 0)[:, None]
    else:
        zt = (t >= 0)[:, None]
    if uniform:
        mt = tg >= 0
        gt = tl.maximum(tg, 0)
        _em_body(w, flows, logits, off, mt[:, None], zt, tl.load(gsum + gt, mask=mt)[:, None],
                 tl.load(gsize + gt, mask=mt, other=1.0)[:, None], step, pseudocount, LOGITS)
    else:
        gm = _mixed_groups(mixed, tg)
        mm = gm >= 0
        gm = tl.maximum(gm, 0)
        _em_body(w, flows, logits, off, mm, zt, tl.load(gsum + gm, mask=mm),
                 tl.load(gsize + gm, mask=mm, other=1.0), step, pseudocount, LOGITS)
