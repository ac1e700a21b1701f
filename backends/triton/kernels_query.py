"""The query kernels: a sum layer's forward in either semiring, and the top-down decoding pass
of sampling and MPE (sum layers, then input layers) over the reached (node, sample) pairs.

Buffers are ``[slots, stride]`` with the batch along the last dimension, as the module's own
kernels have them. A sum partition's blocks hold ``B`` node rows and mix ``num_chunks[blk]``
chunks of ``C`` consecutive element slots (``chunk_start``), with the ``[B, C]`` log-weight
tile at ``param_start`` (row-major; padding weights ``-inf``). An element's value is the sum of
its children's node log-values (the product layer's children table, ``row`` slots per element:
padding children are slot 0, log 1, and are not read; a child ``neg`` (the node count) makes the
element ``-inf``). :func:`sum_layer` walks a block's elements one at a time, so the work per
step is a ``[BP, BT]`` tile whatever the chunk size.

The top-down pass works on pairs: the driver lists the reached ``(row, sample)`` pairs of a
partition or input layer (``sel != 0``), and each program takes ``BQ`` of them, so the work is
that of the reached nodes only (one node per sum vector and sample), not of the whole layer.

Random numbers are Philox draws (``tl.philox``) whose four 32-bit counters name what they
decide: the sample (its global index), the node slot, the element slot or value, and the
stream (0: a sum node's choice, 1 and 2: an input node's value). The draws therefore do not
depend on the launch grid, on the tile sizes or on how the samples are batched.
"""

from __future__ import annotations

import triton
import triton.language as tl

#: the random streams of a sum node's choice of element and of an input node's value
SUM_STREAM = tl.constexpr(0)
LEAF_STREAM = tl.constexpr(1)


@triton.jit
def _element(node, children, e, row, neg, cols, cmask, stride, F: tl.constexpr):
    """Log-values ``[BT]`` of element slot ``e`` (a scalar) in columns ``cols``."""
    acc = tl.zeros([cols.shape[0]], tl.float32)
    for j in range(F):
        ch = tl.load(children + e.to(tl.int64) * row + j)
        v = tl.load(node + ch.to(tl.int64) * stride + cols,
                    mask=cmask & (ch != 0) & (ch != neg), other=0.0)
        acc += tl.where(ch == neg, float("-inf"), v)
    return acc


@triton.jit
def _uniform(seed, sample, slot, what, stream):
    """Uniforms in [0, 1) of the broadcast shape of the counters ``sample``, ``slot``,
    ``what`` and ``stream``, taken as int32 (their values are below 2^31; a plan's int64
    tables make some of them int64)."""
    z = sample * 0 + slot * 0 + what * 0 + stream * 0
    c0 = (z + sample).to(tl.int32).to(tl.uint32, bitcast=True)
    c1 = (z + slot).to(tl.int32).to(tl.uint32, bitcast=True)
    c2 = (z + what).to(tl.int32).to(tl.uint32, bitcast=True)
    c3 = (z + stream).to(tl.int32).to(tl.uint32, bitcast=True)
    r, _, _, _ = tl.philox(seed, c0, c1, c2, c3)
    return tl.random.uint_to_uniform_float(r)


@triton.jit
def _gumbel(seed, sample, slot, what, stream):
    """Standard Gumbel noise ``-log(-log u)`` (``-inf`` where ``u = 0``)."""
    u = _uniform(seed, sample, slot, what, stream)
    return -tl.log(-tl.log(u))


@triton.jit
def sum_layer(node, logw, children, row, neg, node_start, chunk_start, param_start,
              num_chunks, batch, stride, B: tl.constexpr, C: tl.constexpr, F: tl.constexpr,
              NC: tl.constexpr, BP: tl.constexpr, BT: tl.constexpr, SEMIRING: tl.constexpr):
    """Program (block, column tile): ``node[row] = logsumexp_c (log w_c + element_c)``
    (``SEMIRING == "sum"``, an online log-sum-exp) or ``max_c (...)`` (``"max"``)."""
    blk = tl.program_id(0)
    cols = tl.program_id(1) * BT + tl.arange(0, BT)
    cmask = cols < batch
    rows = tl.arange(0, BP)
    rmask = rows < B
    nch = tl.load(num_chunks + blk)
    m = tl.full([BP, BT], float("-inf"), tl.float32)
    acc = tl.zeros([BP, BT], tl.float32)
    for k in range(NC):
        if k < nch:
            es = tl.load(chunk_start + blk * NC + k)
            ps = tl.load(param_start + blk * NC + k).to(tl.int64)
            for c in range(C):
                v = _element(node, children, es + c, row, neg, cols, cmask, stride, F)
                lw = tl.load(logw + ps + rows * C + c, mask=rmask, other=float("-inf"))
                s = lw[:, None] + v[None, :]
                if SEMIRING == "max":
                    m = tl.maximum(m, s)
                else:
                    m_new = tl.maximum(m, s)
                    safe = tl.where(m_new == float("-inf"), 0.0, m_new)
                    acc = acc * tl.exp(m - safe) + tl.exp(s - safe)
                    m = m_new
    if SEMIRING == "max":
        out = m
    else:
        out = tl.log(acc) + tl.where(m == float("-inf"), 0.0, m)
    ns = tl.load(node_start + blk).to(tl.int64)
    tl.store(node + (ns + rows)[:, None] * stride + cols[None, :], out,
             mask=rmask[:, None] & cmask[None, :])


@triton.jit(do_not_specialize=["npairs", "seed", "col0"])
def sum_pick(node, sel, logw, children, row, neg, node_start, chunk_start, param_start,
             num_chunks, pair_row, pair_col, npairs, stride, seed, col0, B: tl.constexpr,
             C: tl.constexpr, F: tl.constexpr, NC: tl.constexpr, CP: tl.constexpr,
             BQ: tl.constexpr, SAMPLE: tl.constexpr):
    """``BQ`` reached pairs of a partition per program: pair ``q`` is the partition's node
    row ``pair_row[q]`` (block ``row // B``, row ``row % B`` of it) in column ``pair_col[q]``.
    Its node picks the element of the first largest ``log w_c + element_c`` (plus Gumbel
    noise where ``SAMPLE``: a draw in proportion to ``w_c * exp(element_c)``) and marks the
    element's children reached in ``sel``. Column ``b`` is sample ``col0 + b`` of the random
    streams."""
    q = tl.program_id(0) * BQ + tl.arange(0, BQ)
    qmask = q < npairs
    i = tl.load(pair_row + q, mask=qmask, other=0)
    b = tl.load(pair_col + q, mask=qmask, other=0)
    blk = i // B
    r = i % B
    slot = tl.load(node_start + blk, mask=qmask, other=0) + r
    nch = tl.load(num_chunks + blk, mask=qmask, other=0)
    cc = tl.arange(0, CP)
    ccmask = cc < C
    col = b.to(tl.int64)[:, None]
    best = tl.full([BQ], float("-inf"), tl.float32)
    arg = tl.zeros([BQ], tl.int32)
    for k in range(NC):
        live = qmask & (k < nch)
        es = tl.load(chunk_start + blk * NC + k, mask=live, other=0)
        ps = tl.load(param_start + blk * NC + k, mask=live, other=0).to(tl.int64)
        emask = live[:, None] & ccmask[None, :]
        e = es[:, None] + cc[None, :]
        s = tl.load(logw + ps[:, None] + (r * C)[:, None] + cc[None, :], mask=emask,
                    other=float("-inf"))
        for j in range(F):
            ch = tl.load(children + e.to(tl.int64) * row + j, mask=emask, other=0)
            v = tl.load(node + ch.to(tl.int64) * stride + col,
                        mask=emask & (ch != 0) & (ch != neg), other=0.0)
            s += tl.where(ch == neg, float("-inf"), v)
        if SAMPLE:
            s += _gumbel(seed, (col0 + b)[:, None], slot[:, None], e, SUM_STREAM)
        cmax = tl.max(s, axis=1)
        first = tl.min(tl.where(s == cmax[:, None], cc[None, :], CP), axis=1)
        better = cmax > best
        best = tl.where(better, cmax, best)
        arg = tl.where(better, es + first, arg)
    take = qmask & (best > float("-inf"))
    for j in range(F):
        ch = tl.load(children + arg.to(tl.int64) * row + j, mask=take, other=0)
        tl.store(sel + ch.to(tl.int64) * stride + b, tl.full([BQ], 1, tl.int8),
                 mask=take & (ch != 0) & (ch != neg))


@triton.jit(do_not_specialize=["npairs", "seed", "col0"])
def leaf_pick(table, vars, miss, out, node0, pair_node, pair_col, npairs, stride, seed, col0,
              K: tl.constexpr, KP: tl.constexpr, GAUSS: tl.constexpr, SAMPLE: tl.constexpr,
              BQ: tl.constexpr):
    """``BQ`` reached pairs of an input layer per program: pair ``q`` is the layer's node
    ``pair_node[q]`` in column ``pair_col[q]``. Where its variable is missing there
    (``miss[var, column] != 0``) it writes a value to ``out[var, column]``. Discrete layers:
    ``table`` is ``[n, K]`` log-probabilities and the value is the first most probable one,
    or where ``SAMPLE`` a draw by the inverse distribution function (one uniform per pair).
    ``GAUSS``: ``table`` is ``[n, 2]`` (mean, standard deviation) and the value the mean, or
    where ``SAMPLE`` a normal draw."""
    q = tl.program_id(0) * BQ + tl.arange(0, BQ)
    qmask = q < npairs
    nd = tl.load(pair_node + q, mask=qmask, other=0)
    b = tl.load(pair_col + q, mask=qmask, other=0)
    var = tl.load(vars + nd, mask=qmask, other=0).to(tl.int64)
    offs = var * stride + b
    ok = qmask & (tl.load(miss + offs, mask=qmask, other=0) != 0)
    at = nd.to(tl.int64) * K
    sample = col0 + b
    slot = node0 + nd
    if GAUSS:
        val = tl.load(table + at, mask=ok, other=0.0)
        if SAMPLE:
            u1 = _uniform(seed, sample, slot, 0, LEAF_STREAM)
            u2 = _uniform(seed, sample, slot, 1, LEAF_STREAM)
            z, _ = tl.random.pair_uniform_to_normal(u1, u2)
            val += tl.load(table + at + 1, mask=ok, other=0.0) * z
    else:
        kk = tl.arange(0, KP)
        lp = tl.load(table + at[:, None] + kk[None, :], mask=ok[:, None] & (kk < K)[None, :],
                     other=float("-inf"))
        if SAMPLE:
            p = tl.exp(lp)
            cum = tl.cumsum(p, axis=1)
            u = _uniform(seed, sample, slot, 0, LEAF_STREAM)
            below = tl.sum((cum <= (u * tl.max(cum, axis=1))[:, None]).to(tl.int32), axis=1)
            last = tl.max(tl.where(p > 0.0, kk[None, :], 0), axis=1)
            pick = tl.minimum(below, last)
        else:
            top = tl.max(lp, axis=1)
            pick = tl.min(tl.where(lp == top[:, None], kk[None, :], KP), axis=1)
        val = pick.to(tl.float32)
    tl.store(out + offs, val, mask=ok)
