"""Loading data sets: ``.npy``, ``.npz`` and comma-separated text, checked against a circuit.

Data is a 2-D array ``[N, V]``, one column per variable. Discrete data comes back as int64 with
``-1`` for a missing value; when a variable is continuous (or, with no circuit, a value is not an
integer) it comes back as float64 with NaN for a missing value.

Text files (``.data``, ``.csv``, ``.txt``, each optionally ``.gz``) hold one example per line,
values separated by commas; ``?`` or an empty field is missing; blank lines are skipped. A
value is ASCII digits with an optional ``-``, fraction and exponent (the grammar is in
``docs/formats.md``); anything else is refused. Errors are :class:`~pccc.ir.errors.DataError`
naming the file, the row and the column, both counted from 1 (text files also give the line).
On a continuous variable ``-1`` is a value; only NaN (or ``?``) marks it missing.

Example::

    x = load_data("train.data.gz", circuit)   # int64 [N, V], -1 = missing
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from pathlib import Path

import numpy as np

from pccc.ir.circuit import Circuit
from pccc.ir.errors import DataError
from pccc.ir.npzio import NpyError, NpzReader, load_npy

#: extensions of text data (each may also end in ``.gz``)
TEXT_SUFFIXES = (".data", ".csv", ".txt")
SUFFIXES = (".npy", ".npz", *TEXT_SUFFIXES)


def _error(name: str, message: str, row: int | None = None, col: int | None = None,
           line: int | None = None) -> DataError:
    """A DataError with ``row``/``col``/``line`` (1-based) in the message and as attributes."""
    where = name
    if row is not None:
        where += f": row {row}" + (f" (line {line})" if line is not None else "")
        if col is not None:
            where += f", column {col}"
        where += " (counting from 1)"
    err = DataError(f"{where}: {message}")
    err.row, err.col, err.line = row, col, line  # type: ignore[attr-defined]
    return err


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise _error(str(path), f"broken gzip data ({e})") from None
    return data


#: a value of a text data file: ASCII digits, an optional '-', a fraction and an exponent
_NUMBER = r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
#: a field: a number, '?' or nothing (missing), with blanks around it
_FIELD = rf"[ \t]*(?:{_NUMBER}|\?)?[ \t]*"
#: rows of fields, one per line (the data grammar of docs/formats.md)
_ROWS = re.compile(rf"(?:{_FIELD}(?:,{_FIELD})*\n)*{_FIELD}(?:,{_FIELD})*")
_NUMBER_RE = re.compile(_NUMBER)


def _parse_slow(name: str, rows: list[str], line_of: np.ndarray) -> np.ndarray:
    """Field by field: the authority on what is valid, and where an error is."""
    out = np.empty((len(rows), rows[0].count(",") + 1))
    for r, text in enumerate(rows):
        for c, field in enumerate(text.split(",")):
            f = field.strip(" \t")
            if f in ("", "?"):
                out[r, c] = np.nan
            elif _NUMBER_RE.fullmatch(f):
                out[r, c] = float(f)
            else:
                raise _error(name, f"not a number: {f!r} (a value is ASCII digits with an "
                                   "optional '-', fraction and exponent; '?' or an empty field "
                                   "is missing)", r + 1, c + 1, int(line_of[r]))
    return out


_FAST_BYTES = np.zeros(256, dtype=bool)
_FAST_BYTES[list(b"0123456789,\n?-")] = True


def _lines(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop blank lines from ``b`` (which ends in a newline): the bytes left, and the 1-based
    line number of each remaining line."""
    nl = np.flatnonzero(b == 10)
    starts = np.concatenate(([0], nl[:-1] + 1))
    empty = nl == starts
    if not empty.any():
        return b, np.arange(1, nl.size + 1)
    keep = np.ones(b.size, dtype=bool)
    keep[nl[empty]] = False
    return b[keep], np.flatnonzero(~empty) + 1


def _parse_one_char(b: np.ndarray, shape: tuple[int, int]) -> np.ndarray | None:
    """The common case of one-character fields (binary and small discrete data): every line is
    ``d,d,...,d``, so the bytes form a ``[rows, 2 * cols]`` grid read with two slices."""
    rows, cols = shape
    if b.size != rows * cols * 2:
        return None
    grid = b.reshape(rows, 2 * cols)
    if not (np.all(grid[:, 1:-1:2] == 44) and np.all(grid[:, -1] == 10)):
        return None
    vals = grid[:, 0::2]
    miss = vals == 63
    if not np.all(((vals >= 48) & (vals <= 57)) | miss):
        return None
    out = vals.astype(np.float64) - 48.0
    out[miss] = np.nan
    return out


def _parse_bytes(b: np.ndarray) -> np.ndarray | None:
    """Integer fields of comma/newline separated bytes: float64 (NaN = ``?`` or empty), or
    None when some field is not a plain integer (the slower paths decide then)."""
    sep = (b == 44) | (b == 10)
    seppos = np.flatnonzero(sep)
    nf = seppos.size
    fstart = np.concatenate(([0], seppos[:-1] + 1))
    flen = seppos - fstart
    fid = np.cumsum(sep, dtype=np.int64) - sep
    dpos = np.flatnonzero((b >= 48) & (b <= 57))
    dfid = fid[dpos]
    ndig = np.bincount(dfid, minlength=nf)
    if ndig.max(initial=0) > 15:  # beyond exact float64 integers
        return None
    first = np.cumsum(ndig) - ndig
    place = ndig[dfid] - 1 - (np.arange(dpos.size) - first[dfid])
    val = np.bincount(dfid, weights=(b[dpos] - 48.0) * 10.0 ** place, minlength=nf)
    nq = np.bincount(fid[b == 63], minlength=nf)
    neg = b[np.minimum(fstart, b.size - 1)] == 45
    plain = (ndig > 0) & (flen == ndig + neg)
    miss = ((flen == 1) & (nq == 1)) | (flen == 0)
    if not np.all(plain | miss):
        return None
    # float64 always: with no digit at all, numpy's bincount returns int64 despite the weights
    val = np.where(neg, -val, val).astype(np.float64)
    val[miss] = np.nan
    return val


def _parse_text(name: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Float64 ``[N, V]`` (NaN = missing) and the 1-based line of each row.

    Three paths, fastest first: a byte-level numpy parse of integer data; ``np.loadtxt`` for
    numbers in general; a field-by-field loop, which is what reports a bad value's location.
    """
    b = np.frombuffer(data, dtype=np.uint8)
    b = b[b != 13]
    if b.size == 0 or b[-1] != 10:
        b = np.append(b, np.uint8(10))
    fast = bool(_FAST_BYTES[b].all())
    if not fast:
        b[(b == 32) | (b == 9)] = 32  # keep blanks; only whole-blank lines are dropped below
        text = bytes(b).decode("utf-8", errors="replace")
        keep = [i for i, ln in enumerate(text.split("\n")[:-1]) if ln.strip()]
        rows = [ln for ln in text.split("\n")[:-1] if ln.strip()]
        line_of = np.asarray(keep, dtype=np.int64) + 1
        commas = np.fromiter((r.count(",") for r in rows), dtype=np.int64, count=len(rows))
    else:
        b, line_of = _lines(b)
        ccum = np.cumsum(b == 44, dtype=np.int64)[b == 10]
        commas = np.diff(np.concatenate(([0], ccum)))
    if commas.size == 0:
        raise _error(name, "no data rows")
    bad = np.flatnonzero(commas != commas[0])
    if bad.size:
        r = int(bad[0])
        raise _error(name, f"{commas[r] + 1} columns, but row 1 has {commas[0] + 1}",
                     r + 1, None, int(line_of[r]))
    shape = (commas.size, int(commas[0]) + 1)
    if fast:
        grid = _parse_one_char(b, shape)
        if grid is not None:
            return grid, line_of
    vals = _parse_bytes(b) if fast else None
    if vals is not None:
        return vals.reshape(shape), line_of
    if fast:
        rows = bytes(b).decode("ascii").split("\n")[:-1]
    return _parse_general(name, rows, line_of, shape), line_of


def _parse_general(name: str, rows: list[str], line_of: np.ndarray, shape: tuple[int, int]
                   ) -> np.ndarray:
    body = "\n".join(rows)
    if _ROWS.fullmatch(body) is None:  # outside the grammar: the slow path says where
        return _parse_slow(name, rows, line_of)
    body = body.replace("?", "nan")
    body = body.replace(",,", ",nan,").replace(",,", ",nan,")
    body = body.replace("\n,", "\nnan,").replace(",\n", ",nan\n")
    body = ("nan" + body if body.startswith(",") else body)
    body = (body + "nan" if body.endswith(",") else body)
    try:
        x = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.float64, ndmin=2,
                       comments=None)
        if x.shape == shape:
            return x
    except ValueError:
        pass
    return _parse_slow(name, rows, line_of)


def _load_array(path: Path, key: str | None) -> np.ndarray:
    """The array of a ``.npy`` file, or array ``key`` (default: the first) of a ``.npz``;
    numbers only, never pickle (:mod:`pccc.ir.npzio`)."""
    name = str(path)
    try:
        if path.name.lower().endswith(".npy"):
            return load_npy(path)
        with NpzReader(path) as z:
            if not z.files:
                raise _error(name, "no arrays in the .npz file")
            if key is None:
                key = z.files[0]
            if key not in z.files:
                raise _error(name, f"no array {key!r} (has: {', '.join(z.files)})")
            return z.array(key)
    except NpyError as e:
        raise _error(name, f"cannot read as {path.suffix}: {e}") from None
    except IsADirectoryError:
        raise _error(name, "a folder, not a data file") from None
    except OSError as e:
        raise _error(name, f"cannot read ({e.strerror or e})") from None


def _to_float(name: str, x: np.ndarray) -> np.ndarray:
    """Float64 with NaN for missing (``-1`` in integer arrays)."""
    if x.ndim != 2:
        raise _error(name, f"expected a 2-D array [examples, variables], got shape {x.shape}")
    if x.dtype.kind == "u" and x.size and int(x.max()) > np.iinfo(np.int64).max:
        r, c = (int(i) for i in np.argwhere(x > np.iinfo(np.int64).max)[0])
        raise _error(name, f"value {int(x[r, c])} is out of range (missing values are -1 in "
                           "an integer array)", r + 1, c + 1)
    if np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_:
        xi = x.astype(np.int64)
        out = xi.astype(np.float64)
        out[xi == -1] = np.nan
        return out
    if np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float64)
    raise _error(name, f"unsupported array type {x.dtype} (integers or floats)")


def _check(name: str, x: np.ndarray, circuit: Circuit, line_of: np.ndarray | None) -> None:
    if x.shape[1] != circuit.num_vars:
        raise _error(name, f"{x.shape[1]} columns, but the circuit has {circuit.num_vars} "
                           "variables", 1, None, None if line_of is None else int(line_of[0]))
    cards = circuit.var_cards()
    hi = np.array([np.inf if cards.get(v) is None else cards[v] for v in range(x.shape[1])])
    discrete = np.array([cards.get(v) is not None for v in range(x.shape[1])])
    seen = ~np.isnan(x)
    with np.errstate(invalid="ignore"):
        bad = seen & discrete[None, :] & ((x != np.floor(x)) | (x < -1) | (x >= hi[None, :]))
        bad |= seen & ~np.isfinite(x)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        v = x[r, c]
        shown = int(v) if np.isfinite(v) and v == np.floor(v) else float(v)
        dom = f"0..{int(hi[c]) - 1}" if discrete[c] else "finite numbers"
        raise _error(name, f"value {shown} is outside the domain {dom} of variable {c}",
                     r + 1, c + 1, None if line_of is None else int(line_of[r]))


def _finish(x: np.ndarray, circuit: Circuit | None, name: str) -> np.ndarray:
    """Int64 with -1 = missing when every value is an integer of a discrete variable."""
    seen = ~np.isnan(x)
    if np.any(np.isinf(x)):
        r, c = (int(i) for i in np.argwhere(np.isinf(x))[0])
        raise _error(name, f"value {x[r, c]} is not finite", r + 1, c + 1)
    cards = circuit.var_cards() if circuit is not None else {}
    continuous = any(cards.get(v, 0) is None for v in range(x.shape[1]))
    integral = bool(np.all(x[seen] == np.floor(x[seen])))
    if continuous or not integral:
        if circuit is not None:
            disc = np.array([cards.get(v) is not None for v in range(x.shape[1])])
            x = np.where(disc[None, :] & (x == -1), np.nan, x)
        return x
    with np.errstate(invalid="ignore"):
        if circuit is None and np.any(seen & (x < -1)):
            r, c = (int(i) for i in np.argwhere(seen & (x < -1))[0])
            raise _error(name, f"negative value {int(x[r, c])} (only -1, missing)", r + 1, c + 1)
    out = np.where(seen, x, -1).astype(np.int64)
    return out


def load_data(path: str | Path, circuit: Circuit | None = None, *, key: str | None = None
              ) -> np.ndarray:
    """Load a data set, checked against ``circuit`` when one is given.

    Args:
        path: a ``.npy``, ``.npz`` or comma-separated text file (``.data``, ``.csv``, ``.txt``,
            optionally gzipped as ``.gz``).
        circuit: when given, the number of columns must equal its ``num_vars`` and each value
            must lie in its variable's domain (``Circuit.var_cards``).
        key: the array of a ``.npz`` file (default: the first one).

    Returns:
        int64 ``[N, V]`` with ``-1`` = missing, or float64 with NaN = missing when some
        variable is continuous.

    Raises:
        DataError: naming the file, and the row and column of a bad value.
    """
    p = Path(path)
    name = str(p)
    low = p.name.lower()
    base = low[:-3] if low.endswith(".gz") else low
    if not base.endswith(SUFFIXES) or (low.endswith(".gz") and base.endswith((".npy", ".npz"))):
        raise _error(name, f"unknown data format (use {', '.join(SUFFIXES)}; text may be .gz)")
    if not p.exists():
        raise _error(name, "no such file")
    line_of = None
    if base.endswith((".npy", ".npz")):
        x = _to_float(name, _load_array(p, key))
    else:
        x, line_of = _parse_text(name, _read_bytes(p))
    if x.shape[0] == 0:
        raise _error(name, "no data rows")
    if circuit is not None:
        _check(name, x, circuit, line_of)
    return _finish(x, circuit, name)
