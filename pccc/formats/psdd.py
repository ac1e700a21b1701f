"""PSDD files (``.psdd``, ``.psdd.gz``): probabilistic sentential decision diagrams, read only.

Grammar (children before parents, the root last; ``c`` lines are comments)::

    psdd N                                  N >= the number of node lines (N optional)
    L id vtree lit                          literal: variable |lit| (1-based), X = 1 if lit > 0
    T id vtree var logp                     Bernoulli leaf: log P(X_var = 1)
    D id vtree k {prime sub logw}*k         decision: sum over k elements of prime x sub

A decision node becomes a sum vector over ``k`` product vectors ``prime x sub`` (``n = 1``).
Real files have ids that are not contiguous, sorted or starting at 0, Java-style floats
(``-8.76E-4``), trailing spaces and repeated literal nodes. Their header count is the number of
SDD nodes the writer held, often more than the lines; it is checked as far as it can be: it
must not be below the number of node lines, and every ``D`` and ``T`` node but the root must
be used by a later node, which a file that lost lines (its root's above all) breaks.
Literal nodes are deduplicated: one
indicator node per literal, whatever id and vtree node the file gives it (see
``docs/formats.md``). The ``.vtree`` file beside a PSDD is not needed and not read.
"""

from __future__ import annotations

from pathlib import Path

from pccc.formats import register_reader
from pccc.formats._assemble import Rows, assemble, with_source
from pccc.formats._textio import LineSource, read_bytes
from pccc.ir.circuit import Circuit


class _Reader:
    def __init__(self, src: LineSource):
        self.src = src
        self.rows = Rows()
        self.ids: dict[int, int] = {}
        self.literals: dict[tuple[int, int], int] = {}
        #: D and T nodes no later node has used so far: id -> line
        self.unused: dict[int, int] = {}
        self.lines = 0

    def node(self, k: int) -> int:
        src = self.src
        nid = src.integer(k, "node id")
        self.unused.pop(nid, None)
        try:
            return self.ids[nid]
        except KeyError:
            raise src.fail(f"node {nid} is not defined on an earlier line (undefined id or a "
                           f"cycle)", k) from None

    def literal(self) -> int:
        src = self.src
        src.count(4)
        lit = src.literal(3)
        i = self.literals.get(lit)
        if i is None:
            i = self.literals[lit] = self.rows.input()
            self.rows.inputs.indicator(i, *lit)
        return i

    def true_node(self) -> int:
        src = self.src
        src.count(5)
        var = src.variable(3)
        logp = src.logprob(4, "log P(X = 1)")
        i = self.rows.input()
        self.rows.inputs.bernoulli(i, var, logp)
        return i

    def decision(self) -> int:
        src = self.src
        k = src.integer(3, "number of elements", lo=1)
        src.count(4 + 3 * k)
        prods, logw = [], []
        line, nid = src.lineno, int(src.tokens[1])
        for j in range(k):
            at = 4 + 3 * j
            prime, sub = self.node(at), self.node(at + 1)
            logw.append(src.number(at + 2, "log-weight"))
            self.rows.mark(line, nid, j)
            prods.append(self.rows.product([prime, sub]))
        self.rows.mark(line, nid)
        return self.rows.sum(prods, logw)

    def line(self, toks: list[bytes]) -> None:
        src = self.src
        tag = toks[0]
        if tag not in (b"L", b"T", b"D"):
            raise src.fail(f"unknown node tag {src.text(0)!r} (expected L, T or D)")
        nid = src.integer(1, "node id")
        if nid in self.ids:
            raise src.fail(f"node id {nid} is defined twice", 1)
        src.integer(2, "vtree id")
        make = {b"L": self.literal, b"T": self.true_node, b"D": self.decision}[tag]
        self.rows.mark(src.lineno, nid)
        self.ids[nid] = make()
        self.lines += 1
        if tag != b"L":
            self.unused[nid] = src.lineno

    def check_counts(self, count: int | None, hline: int, root: int) -> None:
        """The header count and the node lines agree: the count (which PSDD writers set to
        their number of SDD nodes) is at least the number of node lines, and every D and T
        node but the root is used by a later node (a file that lost lines, the root's most of
        all, leaves nodes that nothing uses)."""
        src = self.src
        if count is not None and count < self.lines:
            raise src.fail(f"the header announces {count} nodes but the file has {self.lines} "
                           "node lines", line=hline)
        self.unused.pop(root, None)
        if self.unused:
            nid, line = min(self.unused.items(), key=lambda kv: kv[1])
            raise src.fail(f"node {nid} is used by no later node, and is not the root (the "
                           "last line): lines are missing (a truncated file, or a lost root "
                           "line?)", line=line)


def parse_lines(data: bytes, name: str) -> Circuit:
    """Read PSDD text; errors carry ``file:line:col``."""
    src = LineSource(data, name)
    it = iter(src)
    toks = next(it, None)
    if toks is None:
        raise src.fail("no psdd header (only comments)", line=1)
    if toks[0] != b"psdd":
        raise src.fail(f"expected the header 'psdd N', got {src.text(0)!r}")
    if len(toks) > 2:
        raise src.fail("the header is 'psdd N' (or 'psdd')", 2)
    hline = src.lineno
    count = src.integer(1, "node count") if len(toks) == 2 else None  # (optional in Juice)
    r = _Reader(src)
    last = root = -1
    for toks in it:
        r.line(toks)
        root = int(toks[1])
        last = r.ids[root]
    if last < 0:
        raise src.fail("no nodes after the header", line=src.lineno)
    r.check_counts(count, hline, root)
    if last != len(r.rows) - 1:
        # the root is a literal that was seen before: give it a node of its own at the end
        r.rows.sum([last], [0.0])
    return with_source(assemble(r.rows.table()), r.rows.source(name))


def read(path: Path) -> Circuit:
    """Read a ``.psdd`` or ``.psdd.gz`` file."""
    return parse_lines(read_bytes(path), str(path))


register_reader(".psdd", read)
register_reader(".psdd.gz", read)
