"""The input layers' kernels: log-probabilities and statistics.

``input_fwd`` is specialized by its distribution's log-probability function, passed as the
``tl.constexpr`` parameter ``LOGPROB`` (one ``@triton.jit`` function per distribution, in its
module of :mod:`.families`); ``input_bwd`` by ``CAT`` (value counts, not moments).
:mod:`.codegen` binds them per distribution of the plan (:data:`~.codegen.LOGPROBS`).
Node rows ``i`` of a layer are ``BN`` per program, batch columns ``BT``; a variable's values
are read from ``x [vars, stride]`` and its missing flags from ``miss``. Their grid is one axis,
column tiles fastest: the programs that read the same node rows' parameters run side by side
and share them in L2 (node tiles fastest read a layer's parameters from memory once per column
tile).
"""

from __future__ import annotations

import triton
import triton.language as tl

from pccc.backends.triton.lazyjit import kernel


@triton.jit
def _input_tile(x, miss, vars, n, batch, stride, BN: tl.constexpr, BT: tl.constexpr):
    """This program's node rows i, batch columns and their masks, and the values and
    missing flags of the nodes' variables: (i, imask, cols, cmask, mask, xv, ms). Program p
    takes node tile p // ct and column tile p % ct (ct: the column tiles)."""
    ct = tl.cdiv(batch, BT)
    i = (tl.program_id(0) // ct) * BN + tl.arange(0, BN)
    imask = i < n
    cols = (tl.program_id(0) % ct) * BT + tl.arange(0, BT)
    cmask = cols < batch
    mask = imask[:, None] & cmask[None, :]
    v = tl.load(vars + i, mask=imask, other=0).to(tl.int64)
    xoff = v[:, None] * stride + cols[None, :]
    xv = tl.load(x + xoff, mask=mask, other=0.0)
    ms = tl.load(miss + xoff, mask=mask, other=1)
    return i, imask, cols, cmask, mask, xv, ms


@kernel(do_not_specialize=["n"])
def input_fwd(node, x, miss, vars, pstart, values, theta, logc, node_start, n, batch, stride,
              BN: tl.constexpr, BT: tl.constexpr, LOGPROB: tl.constexpr,
              TOTAL: tl.constexpr = 0.0):
    """Input layer: node[node_start + i] = LOGPROB(x[vars[i]]), 0 where missing."""
    i, imask, cols, cmask, mask, xv, ms = _input_tile(x, miss, vars, n, batch, stride, BN, BT)
    xi = xv.to(tl.int32)
    ps = tl.load(pstart + i, mask=imask, other=0).to(tl.int64)
    lp = LOGPROB(theta, logc, values, ps, i, imask, xv, xi, ms, mask, TOTAL)
    lp = tl.where(ms != 0, 0.0, lp)
    tl.store(node + (node_start + i).to(tl.int64)[:, None] * stride + cols[None, :], lp,
             mask=mask)


@kernel(do_not_specialize=["n"])
def input_bwd(flow, x, miss, vars, pstart, counts, nstats, counts_em, nstats_em, scale, flag,
              node_start, n, batch, stride, BN: tl.constexpr, BT: tl.constexpr,
              CAT: tl.constexpr):
    """Input layer statistics, weighted by scale * flow: per node [sum f, sum f over missing
    values, sum f x, sum f x^2] (observed), or value counts (CAT); when flag[0] != 0 the same
    unweighted (root flow 1: EM statistics) into the *_em buffers."""
    i, imask, cols, cmask, mask, xv, ms = _input_tile(x, miss, vars, n, batch, stride, BN, BT)
    sc = tl.load(scale + cols, mask=cmask, other=0.0)
    foff = (node_start + i).to(tl.int64)[:, None] * stride + cols[None, :]
    f = tl.load(flow + foff, mask=mask, other=0.0)
    _input_stats(f * sc[None, :], ms, xv, i, imask, mask, pstart, counts, nstats, CAT)
    if tl.load(flag) != 0:
        _input_stats(f, ms, xv, i, imask, mask, pstart, counts_em, nstats_em, CAT)


@triton.jit
def _input_stats(f, ms, xv, i, imask, mask, pstart, counts, nstats, CAT: tl.constexpr):
    obs = tl.where(ms != 0, 0.0, f)
    tl.atomic_add(nstats + i * 4, tl.sum(f, axis=1), mask=imask, sem="relaxed")
    tl.atomic_add(nstats + i * 4 + 1, tl.sum(f - obs, axis=1), mask=imask, sem="relaxed")
    if not CAT:  # (sum f x and sum f x^2 mean nothing for categories: never read there;
        # a value the dtype cannot hold, inf, counts only with flow: no 0 * inf)
        fx = tl.where(obs != 0.0, obs * xv, 0.0)
        tl.atomic_add(nstats + i * 4 + 2, tl.sum(fx, axis=1), mask=imask, sem="relaxed")
        tl.atomic_add(nstats + i * 4 + 3, tl.sum(tl.where(obs != 0.0, fx * xv, 0.0), axis=1),
                      mask=imask, sem="relaxed")
    else:  # value 0 (most of MNIST's pixels) summed first: one atomic per node, not per
        ps = tl.load(pstart + i, mask=imask, other=0).to(tl.int64)  # column on one address
        zero = tl.sum(tl.where(xv == 0.0, obs, 0.0), axis=1)
        tl.atomic_add(counts + ps, zero, mask=imask, sem="relaxed")
        tl.atomic_add(counts + ps[:, None] + xv.to(tl.int64), obs,
                      mask=mask & (ms == 0) & (xv != 0.0), sem="relaxed")


@kernel(do_not_specialize=["splits", "per"])
def input_cat_dot(flow, x, miss, vars, pstart, counts, nstats, scale, flag, runs, node_start,
                  K, batch, stride, splits, per, NB: tl.constexpr, KT: tl.constexpr,
                  KTILES: tl.constexpr, BT: tl.constexpr, EM: tl.constexpr,
                  IP: tl.constexpr):
    """Categorical statistics of run r = runs[r, :NB] (layer nodes of one variable, -1
    padding) and value tile t (values t KT .. t KT + KT - 1; program r KTILES + t: a run's
    value tiles run side by side and share its flows in L2) over the batch tiles split,
    split + splits, ... (per of them): counts[pstart[i] + k] += sum_b s_b f_ib [x_b == k,
    observed], the dot (F S) @ OneHot summed in registers, then added once per count; value
    tile 0 also adds nstats[i, 0:2] (sum s f, sum s f over missing values). EM (a second
    launch): unweighted (s = 1), into the EM buffers, and only when flag[0] != 0. IP: the
    dot's input precision (the one-hot is exact; the flows are rounded like the sum layers'
    operands)."""
    if EM:
        go = tl.load(flag) != 0
    else:
        go = True
    if go:
        r = tl.program_id(0) // KTILES
        t = tl.program_id(0) % KTILES
        first = t == 0
        kk = t * KT + tl.arange(0, KT)
        i = tl.load(runs + r * NB + tl.arange(0, NB))
        imask = i >= 0
        i = tl.where(imask, i, 0)
        v = tl.load(vars + tl.load(runs + r * NB)).to(tl.int64)  # the run's variable
        frow = flow + (node_start + i).to(tl.int64)[:, None] * stride
        xrow = x + v * stride
        mrow = miss + v * stride
        acc = tl.zeros([NB, KT], tl.float32)
        s0 = tl.zeros([NB], tl.float32)
        s1 = tl.zeros([NB], tl.float32)
        # tile it + 1 is loaded while tile it is reduced (a while loop is not pipelined)
        cols = tl.program_id(1) * BT + tl.arange(0, BT)
        cm = cols < batch
        f = tl.load(frow + cols[None, :], mask=imask[:, None] & cm[None, :], other=0.0)
        xv = tl.load(xrow + cols, mask=cm, other=0.0)
        ms = tl.load(mrow + cols, mask=cm, other=1)
        it = 0
        while it < per:  # a while loop: the interpreter cannot range() a run-time bound
            nc = cols + splits * BT
            ncm = nc < batch  # (past the last step: tile split + per splits >= the tiles)
            fn = tl.load(frow + nc[None, :], mask=imask[:, None] & ncm[None, :], other=0.0)
            xn = tl.load(xrow + nc, mask=ncm, other=0.0)
            mn = tl.load(mrow + nc, mask=ncm, other=1)
            if not EM:
                f = f * tl.load(scale + cols, mask=cm, other=0.0)[None, :]
            xi = tl.where(ms == 0, xv.to(tl.int32), -1)  # -1: missing, in no value's column
            acc += tl.dot(f, tl.where(xi[:, None] == kk[None, :], 1.0, 0.0),
                          input_precision=IP)
            if first:
                s0 += tl.sum(f, axis=1)
                s1 += tl.sum(tl.where((ms != 0)[None, :], f, 0.0), axis=1)
            cols = nc
            cm = ncm
            f = fn
            xv = xn
            ms = mn
            it += 1
        ps = tl.load(pstart + i, mask=imask, other=0).to(tl.int64)
        tl.atomic_add(counts + ps[:, None] + kk[None, :], acc,
                      mask=imask[:, None] & (kk < K)[None, :], sem="relaxed")
        if first:
            tl.atomic_add(nstats + i * 4, s0, mask=imask, sem="relaxed")
            tl.atomic_add(nstats + i * 4 + 1, s1, mask=imask, sem="relaxed")
