"""Vectorized reading of ``.jpc`` text: whole-buffer numpy passes instead of a loop per line.

:func:`parse` handles the common shape of a Juice file (comments, then ``jpc N``, then one node
per line, each starting with its tag and a space) and returns None for anything else, or for
anything that breaks a rule of the format. The caller then re-reads the file with the
line-by-line reader, which is the definition of the format and locates the error. So this
module only has to be *sound*: whatever it accepts, the line reader accepts too and builds into
an equal circuit (a property test checks this).
"""

from __future__ import annotations

from itertools import repeat

import numpy as np

from pccc.formats import _numparse
from pccc.formats._assemble import INPUT, PRODUCT, SUM, Inputs, Table, assemble, build, no_gc
from pccc.ir.circuit import Circuit
from pccc.ir.limits import MAX_VALUES, MAX_VARS

_NUMBER_BYTES = b"0123456789.+-eE \t\r\n"
_TAGS = b"LICBGPS"
_EXACT = float(2**53)
_CHUNK = 1 << 20  # bytes of node lines tokenized at a time


def _header(data: bytes) -> tuple[int, int] | None:
    """(offset of the first node line, announced node count), or None."""
    pos = 0
    while data.startswith(b"c", pos) or data.startswith(b"\n", pos):
        nl = data.find(b"\n", pos)
        if nl < 0:
            return None
        pos = nl + 1
    nl = data.find(b"\n", pos)
    head = data[pos:nl].split()
    if nl < 0 or len(head) != 2 or head[0] != b"jpc" or not head[1].isdigit():
        return None
    return nl + 1, int(head[1])


class _Lines:
    """The numbers of the node lines, tokenized with whole-buffer numpy passes."""

    def __init__(self, b: np.ndarray):
        # a few megabytes at a time: the passes then run over arrays that stay in cache and
        # memory that the allocator reuses, instead of fresh gigabytes (page faults)
        cuts = [0]
        while len(b) - cuts[-1] > _CHUNK:
            p = cuts[-1] + _CHUNK
            nl = np.flatnonzero(b[p:p + 65536] == 10)
            if len(nl) == 0:
                nl = np.flatnonzero(b[p:] == 10)
            cuts.append(p + int(nl[0]) + 1 if len(nl) else len(b))
        if cuts[-1] < len(b):
            cuts.append(len(b))
        # the results go straight into arrays of the largest possible size (a line has 8+
        # bytes, a number 2+ with its blank): pages that are never written cost nothing
        most = len(b) // 2 + 1
        starts, count = np.empty(most, dtype=np.int64), np.empty(most, dtype=np.int64)
        tags = np.empty(most, dtype=np.uint8)
        floaty, vals = np.empty(most, dtype=bool), np.empty(most)
        n = m = 0
        for lo, hi in zip(cuts, cuts[1:]):
            c_starts, c_tags, c_count, c_floaty, c_vals = self._chunk(b[lo:hi])
            np.add(c_starts, lo, out=starts[n:n + len(c_starts)])
            tags[n:n + len(c_starts)] = c_tags
            count[n:n + len(c_starts)] = c_count
            floaty[m:m + len(c_vals)] = c_floaty
            vals[m:m + len(c_vals)] = c_vals
            n, m = n + len(c_starts), m + len(c_vals)
        self.starts, self.tags, self.count = starts[:n], tags[:n], count[:n]
        self.floaty, self.vals = floaty[:m], vals[:m]
        self.off = np.concatenate([[0], np.cumsum(self.count)[:-1]])

    def _chunk(self, b: np.ndarray) -> tuple[np.ndarray, ...]:
        """(starts, tags, count, floaty, vals) of whole lines ``b``."""
        nl = np.flatnonzero(b == 10)
        starts = np.concatenate([[0], nl[:-1] + 1])
        tags = b[starts]
        nw = b > 32
        edge = np.empty(len(b) + 1, dtype=bool)
        edge[0] = nw[0]
        edge[-1] = nw[-1]
        np.not_equal(nw[1:], nw[:-1], out=edge[1:-1])
        bounds = np.flatnonzero(edge)  # token start, end, start, end, ...
        tok_pos, tok_end = bounds[0::2], bounds[1::2]
        # the tokens that start a line (b[-1] is the last newline): one per line unless a line
        # starts with a blank or is empty
        first_tok = np.flatnonzero(b[tok_pos - 1] == 10)
        if len(first_tok) != len(starts):
            raise ValueError("a line that starts with a blank")
        ntok = np.diff(first_tok, append=len(tok_pos))
        if np.any(ntok < 4) or np.any(nl - starts < 2):  # every node line has 4+ tokens
            raise ValueError("a short line")
        count = ntok - 1  # numbers per line
        # bytes other than digits and whitespace: '.', 'e' and 'E' make a token a float (it
        # can only fill a float slot); in the other tokens (integers, parsed apart and much
        # faster) the only one allowed is a leading '-'; the tags are checked elsewhere
        special = b > 57  # letters
        special |= (b - np.uint8(43)) < 4  # '+', ',', '-', '.'
        special[starts] = False
        sp = np.flatnonzero(special)
        ch = b[sp]
        # a '-' that starts a token is a sign; every other special byte is looked up
        lead = ch == 45
        lead &= b[sp - 1] <= 32
        np.logical_not(lead, out=lead)
        sp, ch = sp[lead], ch[lead]
        tok = np.searchsorted(tok_pos, sp, "right") - 1  # increasing, as sp
        is_dot = ch == 46
        # the tokens that hold special bytes (each once: where tok changes), and so must be
        # floats, holding a '.', 'e' or 'E'; plain decimals hold one, a '.' (besides a
        # leading '-'), and the floats parser is told where it is (-1: not a plain decimal)
        first = np.flatnonzero(np.diff(tok, prepend=-1))
        fl_tok = tok[first]
        if len(tok) and not np.logical_or.reduceat(is_dot | ((ch | 32) == 101), first).all():
            raise ValueError("a misplaced sign or letter in an integer")
        single = np.diff(first, append=len(tok)) == 1
        single &= is_dot[first]
        dot = np.where(single, sp[first], -1)
        floaty = np.zeros(len(tok_pos), dtype=bool)
        floaty[fl_tok] = True
        is_num = np.ones(len(tok_pos), dtype=bool)
        is_num[first_tok] = False  # the tags
        is_int = is_num & ~floaty
        floaty_num = floaty[is_num]  # aligned with the numbers
        vals = np.empty(len(floaty_num))
        # both raise ValueError on a malformed token
        vals[~floaty_num] = _numparse.ints(b, tok_pos[is_int], tok_end[is_int], check=False)
        vals[floaty_num] = _numparse.floats(b, tok_pos[fl_tok], tok_end[fl_tok], dot)
        return starts, tags, count, floaty_num, vals

    def ints(self, pos: np.ndarray, lo: float | None = 0) -> np.ndarray | None:
        """The numbers at ``pos`` as int64, or None unless all are integer tokens >= lo."""
        v = self.vals[pos]
        if self.floaty[pos].any():
            return None
        if len(v) and (v.max() >= _EXACT or (v.min() <= -_EXACT if lo is None else
                                               v.min() < lo)):
            return None
        return v.astype(np.int64)


def _structure(ln: _Lines, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                             np.ndarray] | None:
    """(kind, ptr, kids, logw) of the whole file, or None."""
    tags, cnt, off = ln.tags, ln.count, ln.off
    is_p, is_s = tags == ord("P"), tags == ord("S")
    kind = np.zeros(n, dtype=np.int8)  # INPUT
    kind[is_p], kind[is_s] = PRODUCT, SUM
    inner = np.flatnonzero(is_p | is_s)
    s_inner = is_s[inner]
    stride = s_inner + 1  # numbers per child: 1, or 2 with the log-weight
    k = ln.ints(off[inner] + 2, lo=1)
    ids, vtree = ln.ints(off), ln.ints(off + 1)
    if k is None or ids is None or vtree is None or np.any(cnt[inner] != 3 + stride * k):
        return None
    fan = np.zeros(n, dtype=np.int64)
    fan[inner] = k
    ptr = np.concatenate([[0], np.cumsum(fan)])
    # edges in CSR order: the position of each child id is the previous one + the stride, or
    # the line's first child at off + 3 (one cumulative sum)
    first = off[inner] + 3
    step = np.repeat(stride, k)
    if len(step):
        step[ptr[inner]] = first - np.concatenate([[0], (first + stride * (k - 1))[:-1]])
    pos = np.cumsum(step)
    cid = ln.ints(pos)
    line = np.repeat(inner, k)
    kids = None if cid is None else _resolve(ids, cid, line)
    if kids is None:
        return None
    s_edge = np.repeat(s_inner, k)
    pos += 1  # the log-weights, for the edges of sums
    logw = np.where(s_edge, ln.vals[np.minimum(pos, len(ln.vals) - 1)], 0.0)
    if not np.all(np.isfinite(logw)):
        return None
    return kind, ptr, kids, logw


def _resolve(ids: np.ndarray, cid: np.ndarray, line: np.ndarray) -> np.ndarray | None:
    """Child ids -> node indices; None for a duplicate, undefined or later-defined id."""
    n = len(ids)
    if np.array_equal(ids, np.arange(n)):
        kids = cid
    else:
        order = np.argsort(ids, kind="stable")
        srt = ids[order]
        if n > 1 and np.any(srt[1:] == srt[:-1]):
            return None
        at = np.minimum(np.searchsorted(srt, cid), n - 1)
        if np.any(srt[at] != cid):
            return None
        kids = order[at]
    if np.any(kids >= line):
        return None
    return kids


def _indicators(ln: _Lines, rows: np.ndarray, card: np.ndarray
                ) -> list | None:
    """Input vectors of the L and I lines ``rows``; one shared object per (variable, value)."""
    from pccc.ir.circuit import InputVector

    tags, off = ln.tags[rows], ln.off[rows]
    var = np.empty(len(rows), dtype=np.int64)
    val = np.empty(len(rows), dtype=np.int64)
    is_l = tags == ord("L")
    lit = ln.ints(off[is_l] + 2, lo=None)
    v_i, x_i = ln.ints(off[~is_l] + 2, lo=1), ln.ints(off[~is_l] + 3)
    if lit is None or v_i is None or x_i is None or np.any(lit == 0):
        return None
    var[is_l], val[is_l] = np.abs(lit) - 1, lit > 0
    var[~is_l], val[~is_l] = v_i - 1, x_i
    if np.any(val >= card[var]):
        return None
    width = int(card.max()) if len(card) else 1
    uniq, inv = np.unique(var * width + val, return_inverse=True)
    u_var, u_val = uniq // width, uniq % width
    # one attrs tuple per distinct (cardinality, value): literals share two
    cv, which = np.unique(card[u_var] * width + u_val, return_inverse=True)
    kinds = [(("card", c), ("values", (v,))) for c, v in zip((cv // width).tolist(),
                                                             (cv % width).tolist())]
    attrs = map(kinds.__getitem__, which.reshape(-1).tolist())
    objs = build(InputVector, len(uniq), n=repeat(1), var=u_var.tolist(), dist=repeat("indicator"),
                 attrs=attrs, param=repeat(None))
    return list(map(objs.__getitem__, inv.reshape(-1).tolist()))


def _others(ln: _Lines, rows: np.ndarray, inp: Inputs) -> bool:
    """C, B and G lines, one at a time (they carry parameters); False on a bad value."""
    vals, off, cnt, tags = ln.vals, ln.off, ln.count, ln.tags
    var = ln.ints(off[rows] + 2, lo=1)
    if var is None or ln.floaty[(off[rows] + 3)[tags[rows] == ord("B")]].any():
        return False
    for i, v in zip(rows.tolist(), (var - 1).tolist()):
        nums = vals[off[i] + 3:off[i] + cnt[i]]
        if not np.all(np.isfinite(nums)):
            return False
        tag = tags[i]
        if v >= MAX_VARS or (tag == ord("C") and len(nums) > MAX_VALUES):
            return False
        if tag == ord("C"):
            inp.categorical(i, v, nums.tolist())
        elif tag == ord("B"):
            total, logp = nums.tolist()
            if total != int(total) or not 0 <= total < MAX_VALUES or logp > 1e-9:
                return False
            inp.binomial(i, v, int(total), min(logp, 0.0))
        else:
            if nums[1] <= 0:
                return False
            inp.gaussian(i, v, float(nums[0]), float(nums[1]))
    return True


_FIELDS = {ord("L"): 3, ord("I"): 4, ord("B"): 5, ord("G"): 5}


def _inputs(ln: _Lines, kind: np.ndarray) -> tuple[dict, int, tuple] | None:
    """(node index -> (input vector, params) of the C, B and G lines, number of variables,
    (node indices, input vectors) of the L and I lines), or None."""
    rows = np.flatnonzero(kind == INPUT)
    tags, cnt = ln.tags[rows], ln.count[rows]
    want = np.array([_FIELDS.get(t, -1) for t in range(256)])[tags]
    is_c = tags == ord("C")
    if np.any(np.where(is_c, cnt < 4, cnt != want)):
        return None
    ind = (tags == ord("L")) | (tags == ord("I"))
    inp = Inputs()
    if not _others(ln, rows[~ind], inp):
        return None
    ind_rows = rows[ind]
    # cardinality of each variable: the largest value any node gives it
    off = ln.off[ind_rows]
    lit = ln.vals[off + 2]
    is_l = ln.tags[ind_rows] == ord("L")
    value = ln.vals[off[~is_l] + 3]
    # (numbers beyond the limits, nan and inf: the line reader refuses them at their place)
    if not (np.all(np.abs(lit) <= MAX_VARS) and np.all(np.abs(value) < MAX_VALUES)):
        return None
    var = np.where(is_l, np.abs(lit) - 1, lit - 1).astype(np.int64)
    need = np.full(len(ind_rows), 2, dtype=np.int64)
    need[~is_l] = np.maximum(value + 1, 2)  # a variable has 2+ values
    nv = max(int(var.max(initial=-1)), inp.num_vars() - 1) + 1
    if np.any(var < 0) or nv > MAX_VARS or np.any(need > MAX_VALUES):
        return None
    card = np.zeros(nv, dtype=np.int64)
    np.maximum.at(card, var, need)
    for v, c in inp.card.items():
        card[v] = max(card[v], c)
    inp.card = dict(enumerate(card.tolist()))
    vecs = _indicators(ln, ind_rows, card) if len(ind_rows) else []
    if vecs is None:
        return None
    return inp.vectors(), nv, (ind_rows, vecs)


def parse(data: bytes) -> Circuit | None:
    """The circuit of a well-formed ``.jpc`` text, or None (then use the line reader)."""
    head = _header(data)
    if head is None:
        return None
    start, count = head
    # only number bytes, whitespace and tags after the header (so no comment either): the
    # bytes that translate keeps are those of the header (no copy of the body is made)
    keep = data.translate(None, _NUMBER_BYTES + _TAGS)
    if count == 0 or len(keep) != len(data[:start].translate(None, _NUMBER_BYTES + _TAGS)):
        return None
    if start < len(data) and data.endswith(b"\n"):
        b = np.frombuffer(data, dtype=np.uint8)[start:]  # (a view: see _numparse._words)
    else:
        b = np.frombuffer(data[start:] + b"\n", dtype=np.uint8)
    try:
        with no_gc():
            return _parse(b, count)
    except (ValueError, IndexError, OverflowError):
        return None  # whatever this path cannot handle, the line reader will


def _parse(b: np.ndarray, count: int) -> Circuit | None:
    ln = _Lines(b)
    n = len(ln.starts)
    tag_ok = np.isin(ln.tags, np.frombuffer(_TAGS, np.uint8))
    if n != count or not tag_ok.all() or np.any(b[ln.starts + 1] != 32):
        return None
    if len(ln.vals) != int(ln.count.sum()):
        return None
    parts = _structure(ln, n)
    if parts is None:
        return None
    got = _inputs(ln, parts[0])
    if got is None:
        return None
    return assemble(Table(*parts, inputs=got[0], num_vars=got[1], plain=got[2]))
