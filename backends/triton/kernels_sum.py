"""The sum layers' kernels (their product layer fused in): forward, backward, element flows.

Each kernel is one ``@triton.jit`` function specialized by ``tl.constexpr`` parameters that
:mod:`.codegen` binds per partition shape (:class:`~.codegen.SumShape`):

- ``B``, ``C``: rows of a block and elements of a chunk; ``BP``, ``CP`` their tile sizes
  (powers of two, at least 16 where the mix is a dot);
- ``F``: children read per element (the most any element of the blocks has); up to
  :data:`NARROW` they are unrolled (``tl.static_range``), wider products loop over groups of
  :data:`NARROW` children;
- ``NC``: chunks per block, padding included: the forward's loop bound (the backward kernels,
  one chunk per program, read it at run time as ``nc``, their chunk tables' row length);
- ``MIX``: how a chunk's weights meet its elements: ``"bcast"`` (a broadcast product and sum,
  for tiles under 16), or a tensor-core dot with input precision ``"tf32"`` / ``"ieee"``, or
  ``"bf16"`` (operands rounded to bfloat16);
- ``TRANS``: dot blocks of fewer than 64 rows accumulate transposed (the forward ``[BT, B]``,
  the backward's weight gradients ``[C, B]``) so that the dot's M is 64 and Hopper's
  warp-group MMA applies.

Buffers are ``[slots, stride]`` with the batch along the last dimension (coalesced loads).
Elements are never stored: a sum kernel computes each chunk's ``C`` elements from the product
layer's children table (``children[e, j]``, node slots, real children first; padding children
are slot 0, log 1, and are neither loaded nor written) as sums of node log-values, then mixes
them with an online log-sum-exp. A children row ``[NEG, 0, ...]`` is an element of value
``-inf`` (``NEG`` is an extra node row that holds ``-inf``). The batch's columns and the column
stride are run-time arguments, always multiples of 16 (``runtime.col_bound``), so Triton's
divisibility specialization is the same for every batch size.
"""

from __future__ import annotations

import triton
import triton.language as tl

from pccc.backends.triton.lazyjit import kernel
from pccc.ir import schedule

#: the fan-in up to which children loads are unrolled (and, in the backward, hoisted out of
#: the batch loop); wider products loop over groups of this many children (the schedule's
#: bound: blocks up to it share one kernel)
NARROW = tl.constexpr(schedule.NARROW)
#: log of the largest factor the backward pass lets exp() produce before a mix
EXP_CAP = tl.constexpr(80.0)
#: the lowest finite float32
LOWEST = tl.constexpr(-3.4028234663852886e38)


@triton.jit
def _elements(node, children, e, emask, cols, cmask, stride, FANIN: tl.constexpr, row):
    """Log-values [CP, BT] of elements e: sums of their first FANIN children's node
    log-values (children rows have `row` entries, the real ones first; padding children are
    slot 0, log 1, and are not loaded, nor are the columns past `row` where FANIN is a
    rounded-up fan-in); -inf where emask is off."""
    acc = tl.zeros([e.shape[0], cols.shape[0]], tl.float32)
    if FANIN <= NARROW:
        for j in tl.static_range(FANIN):
            ch = tl.load(children + e.to(tl.int64) * row + j, mask=emask & (j < row), other=0)
            ptr = node + ch.to(tl.int64)[:, None] * stride + cols[None, :]
            acc += tl.load(ptr, mask=(ch != 0)[:, None] & cmask[None, :], other=0.0)
    else:  # wide products (a tree node with many children): a loop over groups of children
        for j0 in range(0, FANIN, NARROW):  # each group's loads are independent: in flight
            ch = _children_group(children, e, emask, row, j0, FANIN)  # together
            ptr = node + ch.to(tl.int64)[:, :, None] * stride + cols[None, None, :]
            acc += tl.sum(tl.load(ptr, mask=(ch != 0)[:, :, None] & cmask[None, None, :],
                                  other=0.0), axis=1)
    return tl.where(emask[:, None], acc, float("-inf"))


@triton.jit
def _ratios(node, flow, noff, nmask, NODES: tl.constexpr):
    """Flow ratios of node rows: r = exp(q - m), q = log f - s (-inf where f = 0 or s =
    -inf), m the per-column max of q (0 in r's exponent where it is -inf); returns (r, m).
    NODES: the rows hold q itself (:func:`_put`), written over their values."""
    if NODES:
        q = tl.load(node + noff, mask=nmask, other=float("-inf"))
    else:
        s = tl.load(node + noff, mask=nmask, other=float("-inf"))
        f = tl.load(flow + noff, mask=nmask, other=0.0)
        q = _log_ratio(f, s)
    qmax = tl.max(q, axis=0)
    return tl.exp(q - tl.where(qmax == float("-inf"), 0.0, qmax)[None, :]), qmax


@triton.jit
def _log_ratio(f, s):
    """q = log f - s, -inf where f = 0 or s = -inf."""
    live = (f > 0.0) & (s > float("-inf"))
    return tl.where(live, tl.log(tl.where(live, f, 1.0)) - s, float("-inf"))


@kernel
def flow_ratio(node, flow, node_start, rbuf, rstart, qbuf, batch, stride, B: tl.constexpr,
               BP: tl.constexpr, BT: tl.constexpr, NODES: tl.constexpr):
    """The flow ratios of block blk's B rows, once per layer instead of once per chunk in
    the backward kernels: r = exp(q - m) with q = log f - s (-inf where f = 0 or s = -inf)
    and m its per-column max over the rows (0 where it is -inf), into rbuf rows rstart[blk]
    + i (the node buffer's own rows, whose values no later kernel reads, or scratch); the
    max itself (-inf kept) into qbuf[blk]. NODES: flows in the node rows (:func:`_put`)."""
    blk = tl.program_id(0)
    cols = tl.program_id(1) * BT + tl.arange(0, BT)
    cmask = cols < batch
    rows = tl.arange(0, BP)
    rmask = rows < B
    ns = tl.load(node_start + blk).to(tl.int64)
    nmask = rmask[:, None] & cmask[None, :]
    r, qmax = _ratios(node, flow, (ns + rows)[:, None] * stride + cols[None, :], nmask,
                      NODES)
    roff = (tl.load(rstart + blk) + rows).to(tl.int64)[:, None] * stride + cols[None, :]
    tl.store(rbuf + roff, r, mask=nmask)
    tl.store(qbuf + blk.to(tl.int64) * stride + cols, qmax, mask=cmask)


@triton.jit
def _scatter(node, flow, children, e, emask, cols, cmask, stride, val, FANIN: tl.constexpr,
             row, unaligned, nin, ATOMIC: tl.constexpr, NODES: tl.constexpr):
    """Add element flows val [CP, BT] to the flows of each element's children, or (ATOMIC
    off: every child row of these elements has this one writer in the whole backward pass)
    store them, and the flow buffer's rows need no zeroing between passes. `unaligned` is a
    run-time 0 added to the atomics' addresses: it hides their alignment from the compiler,
    whose coalescing would otherwise give each thread 4 neighbouring columns, lowered as 4
    scalar atomics that leave gaps across the warp; with one column per thread a warp's
    atomics cover 128 contiguous bytes. Padding children (slot 0) get nothing: their flows
    are never read. NODES: into the node rows instead (:func:`_put`; rows below nin are
    input nodes')."""
    if FANIN <= NARROW:
        for j in tl.static_range(FANIN):
            ch = tl.load(children + e.to(tl.int64) * row + j, mask=emask & (j < row), other=0)
            _put(node, flow, ch.to(tl.int64)[:, None] * stride + cols[None, :], val,
                 (ch != 0)[:, None] & cmask[None, :], unaligned, (ch < nin)[:, None], ATOMIC,
                 NODES)
    else:  # groups of children, as in _elements
        for j0 in range(0, FANIN, NARROW):
            ch = _children_group(children, e, emask, row, j0, FANIN)
            _put(node, flow, ch.to(tl.int64)[:, :, None] * stride + cols[None, None, :],
                 tl.broadcast_to(val[:, None, :], [val.shape[0], NARROW, val.shape[1]]),
                 (ch != 0)[:, :, None] & cmask[None, None, :], unaligned,
                 (ch < nin)[:, :, None], ATOMIC, NODES)


@triton.jit
def _children_group(children, e, emask, row, j0, FANIN: tl.constexpr):
    """Children j0 .. j0 + NARROW - 1 of elements e: [CP, NARROW] node slots (0 past FANIN
    or where emask is off)."""
    j = j0 + tl.arange(0, NARROW)
    return tl.load(children + e.to(tl.int64)[:, None] * row + j[None, :],
                   mask=emask[:, None] & (j < FANIN)[None, :], other=0)


@triton.jit
def _put(node, flow, off, val, mask, unaligned, inp, ATOMIC: tl.constexpr, NODES: tl.constexpr):
    """flow[off] += val (relaxed atomics, one column per thread), or = val (not ATOMIC).
    NODES (every row has one writer, which is also the last to read its value): the node
    row itself takes the flow, an input node's (inp) as it is, a sum's as q = log f - s,
    what its flow ratios need of both: :func:`_log_ratio`'s value in fewer registers (no
    selects: log 0 is -inf, and s = -inf, which makes f = 0, is clamped to the lowest
    float, so q = -inf there too; the selects cost the sum backward 30-80 registers)."""
    if NODES:
        s = tl.load(node + off, mask=mask, other=float("-inf"))
        tl.store(node + off, tl.where(inp, val, tl.log(val) - tl.maximum(s, LOWEST)),
                 mask=mask)
    elif ATOMIC:
        tl.atomic_add(flow + unaligned + off, val, mask=mask, sem="relaxed")
    else:
        tl.store(flow + off, val, mask=mask)


@triton.jit
def _cols(v, TRANS: tl.constexpr):
    """A per-column vector as the accumulator's column axis: [BT, 1] when TRANS, else
    [1, BT]."""
    if TRANS:
        out = v[:, None]
    else:
        out = v[None, :]
    return out


@triton.jit
def _rows(v, TRANS: tl.constexpr):
    """A per-row vector as the accumulator's row axis: [1, BP] when TRANS, else [BP, 1]."""
    if TRANS:
        out = v[None, :]
    else:
        out = v[:, None]
    return out


@triton.jit
def _mix_fwd(w, p, MIX: tl.constexpr, TRANS: tl.constexpr):
    """Weights [BP, CP] times element values [CP, BT]: [BP, BT], or [BT, BP] when TRANS."""
    if MIX == "bcast":
        out = tl.sum(w[:, :, None] * p[None, :, :], axis=1)
    elif MIX == "bf16":
        if TRANS:
            out = tl.dot(tl.trans(p).to(tl.bfloat16), tl.trans(w).to(tl.bfloat16))
        else:
            out = tl.dot(w.to(tl.bfloat16), p.to(tl.bfloat16))
    else:
        if TRANS:
            out = tl.dot(tl.trans(p), tl.trans(w), input_precision=MIX)
        else:
            out = tl.dot(w, p, input_precision=MIX)
    return out


@triton.jit
def _mix_bwd(w, r, MIX: tl.constexpr):
    """Transposed weights [CP, BP] times flow ratios [BP, BT]: [CP, BT]."""
    if MIX == "bcast":
        out = tl.sum(w[:, :, None] * r[:, None, :], axis=0)
    elif MIX == "bf16":
        out = tl.dot(tl.trans(w).to(tl.bfloat16), r.to(tl.bfloat16))
    else:
        out = tl.dot(tl.trans(w), r, input_precision=MIX)
    return out


@triton.jit
def _mix_grad(a, x, MIX: tl.constexpr, TRANS: tl.constexpr):
    """Per-weight sums over the batch tile of a [BP, BT] times x [CP, BT]: [BP, CP], or
    [CP, BP] when TRANS (bf16: the operands stay float32, at the default precision)."""
    if MIX == "bcast":
        out = tl.sum(a[:, None, :] * x[None, :, :], axis=2)
    elif MIX == "bf16":
        if TRANS:
            out = tl.dot(x, tl.trans(a))
        else:
            out = tl.dot(a, tl.trans(x))
    else:
        if TRANS:
            out = tl.dot(x, tl.trans(a), input_precision=MIX)
        else:
            out = tl.dot(a, tl.trans(x), input_precision=MIX)
    return out


@triton.jit
def _child_rows(children, e, emask, row, stride, F: tl.constexpr):
    """Narrow products (F <= NARROW): each of the F children of elements e, its node slots
    and their row offsets (slot * stride; padding children: slot 0, not read), as two tuples
    of F vectors, loaded once per program; wide products: two empty tuples (their children
    are read in every batch tile)."""
    kids = ()
    offs = ()
    if F <= NARROW:
        for j in tl.static_range(F):
            kj = tl.load(children + e.to(tl.int64) * row + j, mask=emask & (j < row), other=0)
            kids = kids + (kj,)  # type: ignore[assignment]
            offs = offs + (kj.to(tl.int64) * stride,)  # type: ignore[assignment]
    return kids, offs


@triton.jit
def _tile_elements(node, children, e, emask, cols, cmask, stride, F: tl.constexpr, row, kids,
                   offs):
    """Log-values [CP, BT] of elements e in columns cols: from the children of
    :func:`_child_rows` where the product is narrow (unrolled), else by :func:`_elements`."""
    if F <= NARROW:
        elem = tl.load(node + offs[0][:, None] + cols[None, :],
                       mask=(kids[0] != 0)[:, None] & cmask[None, :], other=0.0)
        for j in tl.static_range(1, F):
            elem += tl.load(node + offs[j][:, None] + cols[None, :],
                            mask=(kids[j] != 0)[:, None] & cmask[None, :], other=0.0)
        elem = tl.where(emask[:, None], elem, float("-inf"))
    else:
        elem = _elements(node, children, e, emask, cols, cmask, stride, F, row)
    return elem


@triton.jit
def _tile_scatter(node, flow, children, e, emask, cols, cmask, stride, val, F: tl.constexpr,
                  row, unaligned, nin, ATOMIC: tl.constexpr, NODES: tl.constexpr, kids, offs):
    """Element flows val [CP, BT] to the children (:func:`_scatter`), through the children
    of :func:`_child_rows` where the product is narrow (unrolled)."""
    if F <= NARROW:
        for j in tl.static_range(F):
            _put(node, flow, offs[j][:, None] + cols[None, :], val,
                 (kids[j] != 0)[:, None] & cmask[None, :], unaligned, (kids[j] < nin)[:, None],
                 ATOMIC, NODES)
    else:
        _scatter(node, flow, children, e, emask, cols, cmask, stride, val, F, row, unaligned,
                 nin, ATOMIC, NODES)


@triton.jit
def _grad_zeros(BP: tl.constexpr, CP: tl.constexpr, TRANS: tl.constexpr):
    """A weight-gradient accumulator: [BP, CP] zeros, or [CP, BP] when TRANS."""
    if TRANS:
        out = tl.zeros([CP, BP], tl.float32)
    else:
        out = tl.zeros([BP, CP], tl.float32)
    return out


@triton.jit
def _grad_layout(g, TRANS: tl.constexpr):
    """A weight-gradient accumulator as [BP, CP] (transposed back when TRANS)."""
    if TRANS:
        out = tl.trans(g)
    else:
        out = g
    return out


@kernel
def sum_fwd(node, weights, children, row, node_start, chunk_start, param_start, num_chunks,
            batch, stride, BT: tl.constexpr, B: tl.constexpr, C: tl.constexpr,
            F: tl.constexpr, NC: tl.constexpr, BP: tl.constexpr, CP: tl.constexpr,
            MIX: tl.constexpr, TRANS: tl.constexpr):
    """Sum partition forward: node[block rows] = logsumexp(log W + elements)."""
    blk = tl.program_id(0)
    cols = tl.program_id(1) * BT + tl.arange(0, BT)
    cmask = cols < batch
    rows = tl.arange(0, BP)
    rmask = rows < B
    cc = tl.arange(0, CP)
    ccmask = cc < C
    nch = tl.load(num_chunks + blk)
    m = tl.full([BT], float("-inf"), tl.float32)
    if TRANS:
        acc = tl.zeros([BT, BP], tl.float32)
    else:
        acc = tl.zeros([BP, BT], tl.float32)
    for k in range(0, NC):  # padded chunks are skipped, not computed
        if k < nch:
            es = tl.load(chunk_start + blk * NC + k)
            ps = tl.load(param_start + blk * NC + k).to(tl.int64)
            elem = _elements(node, children, es + cc, ccmask, cols, cmask, stride, F, row)
            m_new = tl.maximum(m, tl.max(elem, axis=0))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            p = tl.exp(elem - m_safe[None, :])
            w = tl.load(weights + ps + rows[:, None] * C + cc[None, :],
                        mask=rmask[:, None] & ccmask[None, :], other=0.0)
            acc = acc * _cols(tl.exp(m - m_safe), TRANS) + _mix_fwd(w, p, MIX, TRANS)
            m = m_new
    m_safe = tl.where(m == float("-inf"), 0.0, m)
    out = tl.log(acc) + _cols(m_safe, TRANS)
    ns = tl.load(node_start + blk).to(tl.int64)
    ptr = node + _rows(ns + rows, TRANS) * stride + _cols(cols, TRANS)
    tl.store(ptr, out, mask=_rows(rmask, TRANS) & _cols(cmask, TRANS))


@kernel(do_not_specialize=["nc", "splits", "per", "unaligned", "nin"])
def sum_bwd(node, flow, weights, pgrad, pflow, scale, flag, children, row, node_start,
            chunk_start, param_start, num_chunks, nc, batch, stride, splits, per, unaligned,
            rbuf, rstart, qbuf, nin, BT: tl.constexpr, SCATTER: tl.constexpr,
            EMW: tl.constexpr, RATIO: tl.constexpr, ATOMIC: tl.constexpr, STORE: tl.constexpr,
            NODES: tl.constexpr, B: tl.constexpr,
            C: tl.constexpr, F: tl.constexpr, BP: tl.constexpr, CP: tl.constexpr,
            MIX: tl.constexpr, TRANS: tl.constexpr):
    """Sum partition backward. Program (block, chunk, split) walks the batch tiles split,
    split + splits, ... (per of them): element flows scattered to the product children (where
    SCATTER); the chunk's weight gradients sum_b scale_b f_rb exp(e_cb - s_rb) summed over its
    tiles in registers, then added once (one atomic per weight and split, not per batch
    tile); when flag[0] != 0 (EM statistics under a non-uniform scale) also the EM flows
    w_rc sum_b f_rb exp(e_cb - s_rb) into pflow. STORE (one split, EMW): the EM flows are
    stored, not added (the accumulator's old values there are void: see em_weights). Narrow
    products (F <= NARROW) load each child's row offsets once, before the batch loop. nc:
    the chunk tables' row length (chunks per block, padding included), read at run time, so
    that parts differing only in it share this kernel. NODES: the flows live in the node rows
    (:func:`_put`; nin: the first row that is not an input node's)."""
    blk = tl.program_id(0)
    k = tl.program_id(1)
    nch = tl.load(num_chunks + blk)
    if k < nch:
        rows = tl.arange(0, BP)
        rmask = rows < B
        cc = tl.arange(0, CP)
        ccmask = cc < C
        ns = tl.load(node_start + blk).to(tl.int64)
        es = tl.load(chunk_start + blk * nc + k)
        ps = tl.load(param_start + blk * nc + k).to(tl.int64)
        e = es + cc
        roff = (tl.load(rstart + blk) + rows).to(tl.int64)[:, None] * stride
        qoff = blk.to(tl.int64) * stride
        wmask = rmask[:, None] & ccmask[None, :]
        gptr = ps + rows[:, None] * C + cc[None, :]
        w = tl.load(weights + gptr, mask=wmask, other=0.0)
        real = tl.max(w, axis=0) > 0.0
        if EMW:  # scale 1 and flag 0: the EM flows are the weight sums themselves
            two = False
        else:
            two = tl.load(flag) != 0
        g = _grad_zeros(BP, CP, TRANS)
        g1 = _grad_zeros(BP, CP, TRANS)
        kids, offs = _child_rows(children, e, ccmask, row, stride, F)
        it = 0
        while it < per:  # a while loop: the interpreter cannot range() a run-time bound
            cols = (tl.program_id(2) + it * splits) * BT + tl.arange(0, BT)
            cmask = cols < batch
            nmask = rmask[:, None] & cmask[None, :]
            if RATIO:  # flow_ratio's, made once for all chunks
                r = tl.load(rbuf + roff + cols[None, :], mask=nmask, other=0.0)
                qmax = tl.load(qbuf + qoff + cols, mask=cmask, other=0.0)
            else:  # one chunk: the same computation here saves a launch
                r, qmax = _ratios(node, flow, (ns + rows)[:, None] * stride + cols[None, :],
                                  nmask, NODES)
            qmax = tl.where(qmax == float("-inf"), 0.0, qmax)
            r_s = r * tl.load(scale + cols, mask=cmask, other=0.0)[None, :]
            elem = _tile_elements(node, children, e, ccmask, cols, cmask, stride, F, row, kids,
                                  offs)
            x = tl.exp(tl.minimum(elem + qmax[None, :], EXP_CAP))
            x = tl.where(real[:, None] & (elem > float("-inf")), x, 0.0)
            if SCATTER:  # else the element flows are sum_eflow's (blocks that share elements)
                val = _mix_bwd(w, r, MIX) * x
                _tile_scatter(node, flow, children, e, ccmask, cols, cmask, stride, val, F,
                              row, unaligned, nin, ATOMIC, NODES, kids, offs)
            g += _mix_grad(r_s, x, MIX, TRANS)
            if two:  # EM flows need their own sum when examples weigh differently
                g1 += _mix_grad(r, x, MIX, TRANS)
            it += 1
        g = _grad_layout(g, TRANS)
        g1 = _grad_layout(g1, TRANS)
        if EMW:  # pgrad is the EM flows buffer (scale 1): add w times the sums
            g = g * w
        if STORE:
            tl.store(pgrad + unaligned + gptr, g, mask=wmask)
        else:
            tl.atomic_add(pgrad + unaligned + gptr, g, mask=wmask, sem="relaxed")
        if two:
            tl.atomic_add(pflow + unaligned + gptr, g1 * w, mask=wmask, sem="relaxed")


@kernel(do_not_specialize=["nc", "unaligned", "nin"])
def sum_eflow(node, flow, weights, children, row, sib, node_start, chunk_start, param_start,
              num_chunks, nc, batch, stride, unaligned, rbuf, rstart, qbuf, nin,
              G: tl.constexpr, BT: tl.constexpr, ATOMIC: tl.constexpr, NODES: tl.constexpr,
              B: tl.constexpr, C: tl.constexpr, F: tl.constexpr, BP: tl.constexpr,
              CP: tl.constexpr, MIX: tl.constexpr):
    """Element flows of chunk k of the sibling blocks sib[grp, :G] (blocks of one sum vector:
    same elements, B rows each): sum_j W_j^T (f_j / s_j) over the siblings with a running
    per-column max, times exp(e), scattered once to the product children. nc, nin, NODES: as
    in sum_bwd."""
    grp = tl.program_id(0)
    k = tl.program_id(1)
    cols = tl.program_id(2) * BT + tl.arange(0, BT)
    cmask = cols < batch
    b0 = tl.load(sib + grp * G)
    nch = tl.load(num_chunks + b0)
    if k < nch:
        rows = tl.arange(0, BP)
        rmask = rows < B
        cc = tl.arange(0, CP)
        ccmask = cc < C
        e = tl.load(chunk_start + b0 * nc + k) + cc
        wmask = rmask[:, None] & ccmask[None, :]
        nmask = rmask[:, None] & cmask[None, :]
        qm = tl.full([BT], float("-inf"), tl.float32)
        acc = tl.zeros([CP, BT], tl.float32)
        for j in range(G):
            blk = tl.load(sib + grp * G + j)
            if blk >= 0:
                ps = tl.load(param_start + blk * nc + k).to(tl.int64)
                roff = (tl.load(rstart + blk) + rows).to(tl.int64)[:, None] * stride + \
                    cols[None, :]
                qj = tl.load(qbuf + blk.to(tl.int64) * stride + cols, mask=cmask,
                             other=float("-inf"))
                qn = tl.maximum(qm, qj)
                qs = tl.where(qn == float("-inf"), 0.0, qn)
                # flow_ratio's r is relative to this block's own max: rescale to the running one
                rel = tl.where(qj == float("-inf"), 0.0, tl.exp(qj - qs))
                r = tl.load(rbuf + roff, mask=nmask, other=0.0) * rel[None, :]
                w = tl.load(weights + ps + rows[:, None] * C + cc[None, :], mask=wmask,
                            other=0.0)
                acc = acc * tl.exp(qm - qs)[None, :] + _mix_bwd(w, r, MIX)
                qm = qn
        qs = tl.where(qm == float("-inf"), 0.0, qm)
        elem = _elements(node, children, e, ccmask, cols, cmask, stride, F, row)
        x = tl.exp(tl.minimum(elem + qs[None, :], EXP_CAP))
        x = tl.where(elem > float("-inf"), x, 0.0)
        _scatter(node, flow, children, e, ccmask, cols, cmask, stride, acc * x, F, row,
                 unaligned, nin, ATOMIC, NODES)
