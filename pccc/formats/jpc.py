"""Juice ``.jpc`` circuits (ProbabilisticCircuits.jl's text format), plain or gzipped.

Grammar (one node per line, children before parents, the root last; ``c`` lines are comments)::

    jpc N                                   N = number of node lines
    L id vtree lit                          literal: variable |lit| (1-based), X = 1 if lit > 0
    I id vtree var value                    indicator X_var == value (values 0-based)
    C id vtree var lp_0 ... lp_{K-1}        categorical, log-probabilities
    B id vtree var N logp                   binomial with N trials and log p
    G id vtree var mean std                 gaussian
    P id vtree k c_1 ... c_k                product
    S id vtree k c_1 lw_1 ... c_k lw_k      sum, log-weights

Juice's own header comment swaps the words sum and product; ``P`` is a product, ``S`` a sum.
The vtree field is read and ignored (written as 0). Reading builds one IR node per line; see
``docs/formats.md`` for how the IR's distributions are written back.

Every file is first read by a vectorized path (:mod:`pccc.formats._fastjpc`); anything it is
not sure of is re-read by the line-by-line reader below, which is the definition of the format
and gives every error its ``file:line:col``.
"""

from __future__ import annotations

import gzip
from functools import partial
from pathlib import Path
from typing import IO

import numpy as np

from pccc.formats import register_reader, register_writer
from pccc.formats._assemble import Rows, assemble, with_source
from pccc.formats._textio import LineSource, read_bytes
from pccc.ir.circuit import Circuit
from pccc.ir.limits import MAX_VALUES
from pccc.ir.source import Arrays, SourceMap

_INPUT_TAGS = {b"L": 4, b"I": 5, b"B": 6, b"G": 6}


def _header(src: LineSource, it) -> tuple[int, int]:
    toks = next(it, None)
    if toks is None:
        raise src.fail("no jpc header (only comments)", line=1)
    if toks[0] != b"jpc":
        raise src.fail(f"expected the header 'jpc N', got {src.text(0)!r}", 0)
    src.count(2)
    return src.integer(1, "node count"), src.lineno


def _child(src: LineSource, ids: dict[int, int], k: int) -> int:
    cid = src.integer(k, "child id")
    try:
        return ids[cid]
    except KeyError:
        raise src.fail(f"child {cid} is not defined on an earlier line (undefined id or a "
                       f"cycle)", k) from None


def _input(src: LineSource, rows: Rows, tag: bytes) -> int:
    toks = src.tokens
    if tag == b"C":
        if len(toks) < 5:
            raise src.fail(f"C line: expected at least 5 fields, got {len(toks)}", len(toks))
    else:
        src.count(_INPUT_TAGS[tag])
    i = rows.input()
    inp = rows.inputs
    if tag == b"L":
        inp.indicator(i, *src.literal(3))
        return i
    var = src.variable(3)
    if tag == b"I":
        inp.indicator(i, var, src.integer(4, "value", hi=MAX_VALUES - 1))
    elif tag == b"C":
        if len(toks) - 4 > MAX_VALUES:
            raise src.fail(f"C line: {len(toks) - 4} values; a variable has at most "
                           f"{MAX_VALUES}", MAX_VALUES + 4)
        inp.categorical(i, var, [src.number(k, "log-probability") for k in range(4, len(toks))])
    elif tag == b"B":
        inp.binomial(i, var, src.integer(4, "trials", hi=MAX_VALUES - 1),
                     src.logprob(5, "log p"))
    else:
        std = src.number(5, "std")
        if std <= 0:
            raise src.fail(f"std: {src.text(5)} is not positive", 5)
        inp.gaussian(i, var, src.number(4, "mean"), std)
    return i


def _inner(src: LineSource, rows: Rows, ids: dict[int, int], tag: bytes) -> int:
    k = src.integer(3, "number of children", lo=1)
    per = 1 if tag == b"P" else 2
    src.count(4 + per * k)
    kids = [_child(src, ids, 4 + per * j) for j in range(k)]
    if tag == b"P":
        return rows.product(kids)
    return rows.sum(kids, [src.number(5 + 2 * j, "log-weight") for j in range(k)])


def parse_lines(data: bytes, name: str) -> Circuit:
    """The line-by-line reader: the definition of the format, with located errors."""
    src = LineSource(data, name)
    it = iter(src)
    count, hline = _header(src, it)
    rows = Rows()
    ids: dict[int, int] = {}
    for toks in it:
        tag = toks[0]
        if tag not in _INPUT_TAGS and tag not in (b"C", b"P", b"S"):
            raise src.fail(f"unknown node tag {src.text(0)!r} (expected L, I, C, B, G, P or S)")
        nid = src.integer(1, "node id")
        if nid in ids:
            raise src.fail(f"node id {nid} is defined twice", 1)
        src.integer(2, "vtree id")
        rows.mark(src.lineno, nid)
        ids[nid] = (_input(src, rows, tag) if tag not in (b"P", b"S")
                    else _inner(src, rows, ids, tag))
    if len(rows) != count:
        raise src.fail(f"the header announces {count} nodes but the file has {len(rows)} "
                       f"(truncated file?)", line=hline)
    if not len(rows):
        raise src.fail("no nodes", line=hline)
    return with_source(assemble(rows.table()), rows.source(name))


def read(path: Path) -> Circuit:
    """Read a ``.jpc`` or ``.jpc.gz`` file (gzip is recognized by its magic number)."""
    data = read_bytes(path)
    from pccc.formats import _fastjpc

    circuit = _fastjpc.parse(data)
    if circuit is None:
        return parse_lines(data, str(path))
    return with_source(circuit, SourceMap(str(path), partial(_node_lines, path)))


def _node_lines(path: Path) -> Arrays:
    """Line, id and element of each node of a file the fast reader accepted: one node per
    line after the header, no comment or blank line among them (read again, on demand)."""
    src = LineSource(read_bytes(path), str(path))
    lines, ids = [], []
    for toks in src:
        if toks[0] != b"jpc":
            lines.append(src.lineno)
            ids.append(int(toks[1]))
    return np.array(lines, np.int64), np.array(ids, np.int64), np.full(len(ids), -1, np.int64)


def _write_gz(circuit: Circuit, f: IO[bytes]) -> None:
    with gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:
        write(circuit, gz)  # type: ignore[arg-type]


def write(circuit: Circuit, f: IO[bytes]) -> None:
    """Write ``circuit`` as Juice text; vectors are expanded into scalar nodes."""
    from pccc.formats._jpcwrite import lines

    for chunk in lines(circuit):
        f.write(chunk.encode())


register_reader(".jpc", read)
register_reader(".jpc.gz", read)
register_writer(".jpc", write)
register_writer(".jpc.gz", _write_gz)
