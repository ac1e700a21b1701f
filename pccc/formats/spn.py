"""Juice/Libra ``.spn`` files (sum-product networks over discrete variables), read only.

Grammar (ids are implicit: node ``i`` is the ``i``-th node line, 0-based)::

    (2 2 ... 2)                   the domain size of each variable
    v var value                   indicator X_var == value (both 0-based)
    * c_1 c_2 ...                 product
    + c_1 lw_1 c_2 lw_2 ...       sum, log-weights
    EOF

Juice reads Boolean domains only; pccc reads any domain size ``>= 1`` and gives each indicator
its variable's domain size as cardinality.
"""

from __future__ import annotations

from pathlib import Path

from pccc.formats import register_reader
from pccc.formats._assemble import Rows, assemble, with_source
from pccc.formats._textio import LineSource, read_bytes
from pccc.ir.circuit import Circuit
from pccc.ir.limits import MAX_VALUES, MAX_VARS


def _domains(src: LineSource, toks: list[bytes]) -> list[int]:
    line = b" ".join(toks)
    if not (line.startswith(b"(") and line.endswith(b")")):
        raise src.fail("expected the domain line '(2 2 ... 2)'")
    inner = line[1:-1].split()
    if not inner:
        raise src.fail("the domain line lists no variables")
    src.tokens = inner  # size k sits in the line's token k (the first one after its '(')
    if len(inner) > MAX_VARS:
        raise src.fail(f"the domain line lists {len(inner)} variables; the limit is {MAX_VARS}",
                       MAX_VARS)
    return [src.integer(k, "domain size", lo=1, hi=MAX_VALUES) for k in range(len(inner))]


def _child(src: LineSource, k: int, n: int) -> int:
    c = src.integer(k, "child id")
    if c >= n:
        raise src.fail(f"child {c} is not an earlier node (there are {n} so far: undefined id "
                       f"or a cycle)", k)
    return c


def _node(src: LineSource, rows: Rows, toks: list[bytes], doms: list[int]) -> None:
    tag, n = toks[0], len(rows)
    rows.mark(src.lineno, n)  # (ids are implicit: the node's position)
    if tag == b"v":
        src.count(3)
        var = src.integer(1, "variable")
        if var >= len(doms):
            raise src.fail(f"variable {var} is not in the domain line ({len(doms)} variables)",
                           1)
        value = src.integer(2, "value")
        if value >= doms[var]:
            raise src.fail(f"value {value} outside the domain 0..{doms[var] - 1}", 2)
        rows.inputs.indicator(rows.input(), var, value, card=doms[var])
    elif tag == b"*":
        if len(toks) < 2:
            raise src.fail("a product without children", 1)
        rows.product([_child(src, k, n) for k in range(1, len(toks))])
    elif tag == b"+":
        if len(toks) < 3 or len(toks) % 2 == 0:
            raise src.fail(f"a sum needs pairs 'child log-weight', got {len(toks) - 1} fields",
                           len(toks))
        kids = [_child(src, k, n) for k in range(1, len(toks), 2)]
        rows.sum(kids, [src.number(k, "log-weight") for k in range(2, len(toks), 2)])
    else:
        raise src.fail(f"unknown node tag {src.text(0)!r} (expected v, * or +)")


def parse_lines(data: bytes, name: str) -> Circuit:
    """Read SPN text; errors carry ``file:line:col``."""
    src = LineSource(data, name, comment=None)
    it = iter(src)
    toks = next(it)  # read_bytes refused empty files
    doms = _domains(src, toks)
    rows = Rows()
    ended = False
    for toks in it:
        if ended:
            raise src.fail("text after EOF")
        if toks == [b"EOF"]:
            ended = True
            continue
        _node(src, rows, toks, doms)
    if not ended:
        raise src.fail("missing the final 'EOF' line (truncated file?)", line=src.lineno + 1)
    if not len(rows):
        raise src.fail("no nodes before EOF", line=src.lineno)
    rows.inputs.card.update({v: max(d, rows.inputs.card.get(v, 0)) for v, d in enumerate(doms)})
    table = rows.table()
    table.num_vars = len(doms)
    return with_source(assemble(table), rows.source(name))


def read(path: Path) -> Circuit:
    """Read a ``.spn`` or ``.spn.gz`` file."""
    return parse_lines(read_bytes(path), str(path))


register_reader(".spn", read)
register_reader(".spn.gz", read)
