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
    """``w[i]`` = the 8 bytes ``b[i - 8:i]`` as a little-endian uint64 (``b`` is padded in
    front with 8 spaces, so ``i`` may be 0)."""
    bp = np.empty(len(b) + _PAD, dtype=np.uint8)
    bp[:_PAD] = 32
    bp[_PAD:] = b
    return np.ndarray(shape=(len(b) + 1,), dtype="<u8", buffer=bp, strides=(1,))


def _eight(w: np.ndarray, length: np.ndarray, check: bool = True) -> np.ndarray:
    """The value of the last ``length`` (1 to 8) bytes of each word; ValueError unless they
    are all ASCII digits (``check=False``: the caller has made sure of that)."""
    shift = length.astype(_U)
    np.subtract(_U(8), shift, out=shift)
    np.left_shift(shift, _U(3), out=shift)
    x = np.right_shift(w, shift)  # drop the bytes before the token ...
    np.left_shift(x, shift, out=x)
    fill = np.left_shift(_ALL, shift)  # ... and make them '0'
    np.bitwise_not(fill, out=fill)
    np.bitwise_and(fill, _ZEROS, out=fill)
    np.bitwise_or(x, fill, out=x)
    if check and (np.any((x & _HIGH) != _ZEROS) or np.any(((x + _SIX) & _HIGH) != _ZEROS)):
        raise ValueError("a non-digit in an integer token")
    d, t = x, fill
    np.subtract(d, _ZEROS, out=d)
    for mul, sh, mask in _STEPS:
        np.right_shift(d, sh, out=t)
        np.multiply(d, mul, out=d)
        np.add(d, t, out=d)
        np.bitwise_and(d, mask, out=d)
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


def floats(b: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The floats at ``b[start[i]:end[i]]`` as float64, each exactly ``float(token)``
    (ValueError on a malformed token)."""
    m = len(start)
    if m == 0:
        return np.zeros(0)
    length = end - start
    width = max(int(length.max()), _DEC_WIDTH)
    # each token right-aligned in a row of ``width`` bytes, '0's in front
    bp = np.empty(len(b) + width, dtype=np.uint8)
    bp[:width] = 48
    bp[width:] = b
    grid = np.ndarray(shape=(len(b) + 1,), dtype=f"S{width}", buffer=bp, strides=(1,))[end]
    grid = grid.view(np.uint8).reshape(m, width)
    grid[np.arange(width)[::-1] >= length[:, None]] = 48
    vals = np.empty(m)
    done = _decimal(grid, length, vals) if _EXTENDED else np.zeros(m, dtype=bool)
    rest = np.flatnonzero(~done)
    if len(rest):
        got = _fromstring(_left(b, start[rest], length[rest]), dtype=np.float64, sep=" ")
        if len(got) != len(rest):
            raise ValueError("a malformed float token")
        vals[rest] = got
    return vals


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
