"""Whole-array number parsing for the vectorized readers (numpy only).

Tokens are given as ``[start, end)`` byte ranges of one ``uint8`` buffer. Integers are parsed
eight digits at a time: the eight bytes that end a token are gathered as one little-endian
``uint64`` (an overlapping, byte-strided view of the buffer) and turned into a number with
three multiply-and-shift steps (the "SWAR" digit trick), all in numpy. Plain decimal floats
(``-?digits.digits``, at most 19 digits: nearly all ``repr`` text without an exponent) are
parsed the same way into an integer mantissa ``M`` and divided by ``10**f`` in extended
precision, which is exact (see :func:`_decimal`); the others (exponents, halfway cases, no
extended long double) go to ``numpy.fromstring``, correctly rounded like ``float()``. Both
raise ValueError on a token they cannot read; the caller then falls back to the line-by-line
reader, which locates the error.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: numpy's C tokenizer for whitespace-separated numbers; it reads any buffer (typed for str)
_fromstring: Any = np.fromstring
_MAX_DIGITS = 15  # every 15-digit integer is exact in float64 and int64
_PAD = 8
_U = np.uint64
_ZEROS = _U(0x3030303030303030)
_HIGH = _U(0xF0F0F0F0F0F0F0F0)
_SIX = _U(0x0606060606060606)
_ALL = _U(0xFFFFFFFFFFFFFFFF)


def _words(b: np.ndarray) -> np.ndarray:
    """``w[i]`` = the 8 bytes ``b[i - 8:i]`` as a little-endian uint64 (``i`` may be 0: the
    bytes before ``b``, or 8 spaces in front of a copy where ``b`` is at the start of its
    buffer; the parsers mask those bytes off)."""
    root = b
    while isinstance(root.base, np.ndarray):
        root = root.base
    if root.ndim == 1 and root.dtype == np.uint8 and root.flags.c_contiguous and (
            b.strides == (1,)):
        off = b.ctypes.data - root.ctypes.data
        if _PAD <= off and off + len(b) <= len(root):  # a view in place, no copy
            return np.ndarray(shape=(len(b) + 1,), dtype="<u8", buffer=root,
                              offset=off - _PAD, strides=(1,))
    bp = np.empty(len(b) + _PAD, dtype=np.uint8)
    bp[:_PAD] = 32
    bp[_PAD:] = b
    return np.ndarray(shape=(len(b) + 1,), dtype="<u8", buffer=bp, strides=(1,))


def _eight(w: np.ndarray, length: np.ndarray, check: bool = True) -> np.ndarray:
    """The value of the last ``length`` (1 to 8; 0 too with ``check=False``) bytes of each
    word; ValueError unless they are all ASCII digits (``check=False``: the caller has made
    sure of that; ``w`` is then overwritten)."""
    if not check:
        return _eight_digits(w, length)
    shift = length.astype(_U)
    np.subtract(_U(8), shift, out=shift)
    np.left_shift(shift, _U(3), out=shift)
    x = np.right_shift(w, shift)  # drop the bytes before the token ...
    np.left_shift(x, shift, out=x)
    fill = np.left_shift(_ALL, shift)  # ... and make them '0'
    np.bitwise_not(fill, out=fill)
    np.bitwise_and(fill, _ZEROS, out=fill)
    np.bitwise_or(x, fill, out=x)
    if np.any((x & _HIGH) != _ZEROS) or np.any(((x + _SIX) & _HIGH) != _ZEROS):
        raise ValueError("a non-digit in an integer token")
    d, t = x, fill
    np.subtract(d, _ZEROS, out=d)
    for mul, sh, mask in _STEPS:
        np.right_shift(d, sh, out=t)
        np.multiply(d, mul, out=d)
        np.add(d, t, out=d)
        np.bitwise_and(d, mask, out=d)
    return d.view(np.int64)


#: ``_LOW[k]``: keeps the low 4 bits of the last ``k`` bytes of a word (the digits' values)
_LOW = np.array([(0x0F0F0F0F0F0F0F0F << (64 - 8 * k)) & 0xFFFFFFFFFFFFFFFF if k else 0
                 for k in range(9)], dtype=_U)
_PAIRS = (_U(10 * 256 + 1), _U(8), _U(0x00FF00FF00FF00FF))
_QUADS = (_U(100 * 65536 + 1), _U(16), _U(0x0000FFFF0000FFFF))
_OCTS = (_U(10000 * 2**32 + 1), _U(32))


def _eight_digits(w: np.ndarray, length: np.ndarray) -> np.ndarray:
    """:func:`_eight` of digits only, in place: the bytes before the token are masked off
    (leading zeros) and each step multiplies adjacent groups together (``10 * a + b``, then
    ``100 * ab + cd``, then ``10**4 * abcd + efgh``)."""
    d = w
    np.bitwise_and(d, _LOW[length], out=d)
    for mul, sh, mask in (_PAIRS, _QUADS):
        np.multiply(d, mul, out=d)
        np.right_shift(d, sh, out=d)
        np.bitwise_and(d, mask, out=d)
    np.multiply(d, _OCTS[0], out=d)
    np.right_shift(d, _OCTS[1], out=d)
    return d.view(np.int64)


_STEPS = ((_U(10), _U(8), _U(0x00FF00FF00FF00FF)), (_U(100), _U(16), _U(0x0000FFFF0000FFFF)),
          (_U(10000), _U(32), _U(0xFFFFFFFF)))


def ints(b: np.ndarray, start: np.ndarray, end: np.ndarray, check: bool = True) -> np.ndarray:
    """The integers ``-?[0-9]+`` at ``b[start[i]:end[i]]`` as int64 (ValueError otherwise;
    ``check=False``: the caller has made sure that the tokens have no other bytes)."""
    if len(start) == 0:
        return np.zeros(0, dtype=np.int64)
    neg = b[start] == 45  # '-'
    length = end - start - neg
    if length.min() < 1 or length.max() > _MAX_DIGITS:
        raise ValueError("an integer token that is empty or too long")
    w = _words(b)
    val = _eight(w[end], np.minimum(length, 8), check)
    long = np.flatnonzero(length > 8)
    if len(long):
        val[long] += _eight(w[end[long] - 8], length[long] - 8, check) * 100_000_000
    np.negative(val, out=val, where=neg)
    return val


def floats(b: np.ndarray, start: np.ndarray, end: np.ndarray,
           dot: np.ndarray | None = None) -> np.ndarray:
    """The floats at ``b[start[i]:end[i]]`` as float64, each exactly ``float(token)``
    (ValueError on a malformed token). ``dot``, when the caller knows it: the position of the
    ``.`` of each token that is a plain decimal (its other bytes are digits, and a leading
    ``-``), -1 for the others."""
    m = len(start)
    if m == 0:
        return np.zeros(0)
    vals = np.empty(m)
    if not _EXTENDED:
        done = np.zeros(m, dtype=bool)
    elif dot is None:
        done = _decimal(_right(b, end, end - start), end - start, vals)
    else:
        done = _plain(b, start, end, dot, vals)
    rest = np.flatnonzero(~done)
    if len(rest):
        length = end[rest] - start[rest]
        got = _fromstring(_left(b, start[rest], length), dtype=np.float64, sep=" ")
        if len(got) != len(rest):
            raise ValueError("a malformed float token")
        vals[rest] = got
    return vals


def _right(b: np.ndarray, end: np.ndarray, length: np.ndarray) -> np.ndarray:
    """The tokens right-aligned in rows of one width (at least 24), '0's in front."""
    width = max(int(length.max()), _DEC_WIDTH)
    bp = np.empty(len(b) + width, dtype=np.uint8)
    bp[:width] = 48
    bp[width:] = b
    grid = np.ndarray(shape=(len(b) + 1,), dtype=f"S{width}", buffer=bp, strides=(1,))[end]
    grid = grid.view(np.uint8).reshape(len(end), width)
    grid[np.arange(width)[::-1] >= length[:, None]] = 48
    return grid


def _left(b: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """The tokens left-aligned in rows of one width, blanks after each."""
    width = int(length.max()) + 1
    bp = np.empty(len(b) + width, dtype=np.uint8)
    bp[:len(b)] = b
    bp[len(b):] = 32
    rows = np.ndarray(shape=(len(b),), dtype=f"S{width}", buffer=bp, strides=(1,))[start]
    grid = rows.view(np.uint8).reshape(len(start), width)
    grid[np.arange(width) >= length[:, None]] = 32
    return grid


#: x87 extended precision: a 64-bit significand holds every integer below 2**64 and every
#: power of ten up to 10**27, and its division is correctly rounded
_EXTENDED = np.finfo(np.longdouble).nmant >= 63
_DEC_WIDTH = 24  # three words
_P10 = np.array([10**i for i in range(20)], dtype=np.longdouble)
_P10U = np.array([10**i for i in range(20)], dtype=np.uint64)


def _decimal(grid: np.ndarray, length: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Fill ``out`` for the plain decimal tokens ``-?digits[.digits]`` (at most 19 bytes
    besides the sign), and say which rows it filled. ``grid``: the tokens right-aligned, '0's
    in front. Exact: the digits make an integer ``M < 10**19`` and the value is ``M / 10**f``;
    both are exact in extended precision, the division rounds once to 64 bits, and rounding
    that to 53 bits gives ``float(token)`` unless the 64-bit result is exactly halfway
    between two doubles (double rounding may then differ: those rows are left out)."""
    w = grid.shape[1]
    is_dot = grid == 46
    ndot = is_dot.sum(axis=1)
    nodig = ((grid - np.uint8(48)) > 9).sum(axis=1)  # '-', '.', 'e', '+', ...
    neg = grid[np.arange(len(grid)), w - length] == 45
    ok = (nodig == ndot + neg) & (ndot <= 1) & (length - neg <= 19) & (length - neg > ndot)
    rows = np.flatnonzero(ok)
    g = grid[rows, w - _DEC_WIDTH:]  # the last 24 bytes; the rest are '0'
    frac = np.where(ndot[rows] == 1, _DEC_WIDTH - 1 - is_dot[rows, w - _DEC_WIDTH:].argmax(1),
                    0)
    g[g < 48] = 48  # '-' and '.' count as 0 digits
    words = g.view("<u8")  # [k, 3], the most significant digits first
    a = np.zeros(len(rows), dtype=np.uint64)
    for i, scale in enumerate((10**16, 10**8, 1)):
        d = words[:, i] - _ZEROS
        for mul, sh, mask in _STEPS:
            d = (d * mul + (d >> sh)) & mask
        a += d * _U(scale)
    # a = the digits, with those before the dot one place too far left
    low = a % _P10U[frac]
    mant = (a - low) // _U(10) * (ndot[rows] == 1) + np.where(ndot[rows] == 1, low, a)
    q = mant.astype(np.longdouble) / _P10[frac]
    x = q.astype(np.float64)
    r = np.abs(q - x.astype(np.longdouble))  # exact
    up = (np.nextafter(x, np.inf) - x).astype(np.longdouble)
    down = (x - np.nextafter(x, -np.inf)).astype(np.longdouble)
    good = ~((2 * r == up) | (2 * r == down))
    np.negative(x, out=x, where=neg[rows])
    out[rows[good]] = x[good]
    done = np.zeros(len(grid), dtype=bool)
    done[rows[good]] = True
    return done


_U8 = _U(100_000_000)


def _digits(w: np.ndarray, end: np.ndarray, length: np.ndarray) -> np.ndarray:
    """The value of the ``length`` (0 to 19) digits that end at each ``end`` as uint64 (the
    caller has made sure that they are digits)."""
    val = _eight(w[end], np.minimum(length, 8), check=False).view(_U)
    for i, scale in ((1, _U8), (2, _U8 * _U8)):
        more = np.flatnonzero(length > 8 * i)
        if len(more):
            val[more] += _eight(w[end[more] - 8 * i], np.minimum(length[more] - 8 * i, 8),
                                check=False).view(_U) * scale
    return val


#: x87 extended precision, stored little-endian: the first 8 bytes of each value are its
#: significand, with an explicit integer bit
_X87 = (np.finfo(np.longdouble).nmant == 63 and np.dtype(np.longdouble).itemsize in (12, 16)
        and np.little_endian)


def _plain(b: np.ndarray, start: np.ndarray, end: np.ndarray, dot: np.ndarray,
           out: np.ndarray) -> np.ndarray:
    """Like :func:`_decimal`, for the tokens whose ``.`` is at ``dot`` (-1: not a plain
    decimal): the digits before and after the dot are read in place, no row copies."""
    neg = b[start] == 45
    li = dot - start - neg  # digits before the dot
    lf = end - dot - 1  # and after it
    ok = (dot >= 0) & (li <= 8) & (li + lf <= 19) & (li + lf >= 1)
    rows = None if ok.all() else np.flatnonzero(ok)
    if rows is not None:
        start, end, dot, neg, li, lf = (a[rows] for a in (start, end, dot, neg, li, lf))
    w = _words(b)
    mant = _digits(w, dot, li)
    mant *= _P10U[lf]
    mant += _digits(w, end, lf)
    q = mant.astype(np.longdouble)
    q /= _P10[lf]
    x = q.astype(np.float64)
    if _X87:  # halfway between two doubles: the 11 bits that rounding drops are 100...0
        bits = q.view(_U)[::q.itemsize // 8] if q.itemsize == 16 else _x87_low(q)
        good = (bits & _U(0x7FF)) != _U(0x400)
    else:
        xl = x.astype(np.longdouble)
        t = 2 * q - xl  # a double exactly when q is halfway between x and its neighbour
        good = (q == xl) | (t.astype(np.float64).astype(np.longdouble) != t)
    np.negative(x, out=x, where=neg)
    done = np.zeros(len(out), dtype=bool)
    if rows is None:
        out[good] = x[good]
        done[:] = good
    else:
        out[rows[good]] = x[good]
        done[rows[good]] = True
    return done


def _x87_low(q: np.ndarray) -> np.ndarray:
    """The significands of 12-byte long doubles."""
    return np.ndarray((len(q),), dtype="<u8", buffer=q, strides=(q.itemsize,))
