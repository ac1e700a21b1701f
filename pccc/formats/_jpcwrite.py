"""Writing an L0 circuit as Juice ``.jpc`` text: node vectors become scalar nodes.

Numbers are written with ``repr(float)``, so they read back bit for bit. What the format cannot
say is rewritten into an equal distribution (see ``docs/formats.md``): a Bernoulli is a
2-value categorical (or a literal when ``p`` is 0 or 1), a categorical with zero entries is a
sum over indicators of its non-zero values, sum edges of weight 0 are left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from pccc.ir.analyses import reachable
from pccc.ir.circuit import Circuit, InputVector, ProductVector, SumVector
from pccc.ir.errors import PcccError

_HEADER = """c written by pccc
c ids of jpc nodes start at 0; children come before parents; the root is the last line
c L id vtree literal
c I id vtree variable value
c C id vtree variable {log-probability}+
c B id vtree variable trials log-p
c G id vtree variable mean std
c P id vtree number-of-children {child-id}+   (product)
c S id vtree number-of-children {child-id log-weight}+   (sum)
"""


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, text: str) -> int:
        """Append a node line; ``text`` has ``{}`` where the id goes. Returns the id."""
        nid = len(self.lines)
        self.lines.append(text.format(nid))
        return nid


def _fail(node: int, msg: str) -> PcccError:
    return PcccError(f"cannot write node %{node} as .jpc: {msg}")


def _sum_line(out: _Out, kids: list[int], w: np.ndarray, node: int) -> int:
    if not np.all(np.isfinite(w) & (w >= 0)):
        raise _fail(node, "weights must be finite and >= 0")
    nz = np.flatnonzero(w)
    if not len(nz):
        raise _fail(node, "a sum (or categorical) whose weights are all 0")
    body = " ".join(f"{kids[j]} {v!r}" for j, v in zip(nz.tolist(), np.log(w[nz]).tolist()))
    return out.add(f"S {{}} 0 {len(nz)} {body}")


def _indicator(out: _Out, var: int, value: int, card: int) -> int:
    if card == 2 and value in (0, 1):
        return out.add(f"L {{}} 0 {var + 1 if value else -(var + 1)}")
    return out.add(f"I {{}} 0 {var + 1} {value}")


def _categorical(out: _Out, nd: InputVector, row: np.ndarray, node: int) -> int:
    if np.all(row > 0):
        return out.add(f"C {{}} 0 {nd.var + 1} " + " ".join(map(repr, np.log(row).tolist())))
    kids = [out.add(f"I {{}} 0 {nd.var + 1} {v}") if p > 0 else -1
            for v, p in enumerate(row.tolist())]
    return _sum_line(out, kids, row, node)


def _logistic_table(row: np.ndarray, attrs: dict) -> np.ndarray:
    """A discrete logistic node's probabilities of its ``card`` values."""
    from pccc.ir import dists

    card = int(attrs["card"])
    lp = dists.get("discrete_logistic").log_prob(row[None], attrs, np.arange(card), 1)[:, 0]
    p = np.exp(lp - lp.max())
    return p / p.sum()


def _input_node(out: _Out, c: Circuit, node: int, nd: InputVector, r: int) -> int:
    attrs = nd.attr_dict()
    prm = c.param_of(node)
    var = nd.var
    if nd.dist == "indicator":
        return _indicator(out, var, int(attrs["values"][r]), int(attrs["card"]))
    assert prm is not None
    if nd.dist in ("categorical", "masked_categorical"):  # (masked values: probability 0)
        return _categorical(out, nd, prm[r], node)
    if nd.dist == "discrete_logistic":  # the same distribution, as its table over the bins
        return _categorical(out, nd, _logistic_table(prm[r], attrs), node)
    if nd.dist == "bernoulli":
        p = float(prm[r])
        if p in (0.0, 1.0):
            return _indicator(out, var, int(p), 2)
        return out.add(f"C {{}} 0 {var + 1} {math.log1p(-p)!r} {math.log(p)!r}")
    if nd.dist == "binomial":
        p, total = float(prm[r]), int(attrs["total"])
        if p in (0.0, 1.0):
            return _indicator(out, var, total if p else 0, total + 1)
        return out.add(f"B {{}} 0 {var + 1} {total} {math.log(p)!r}")
    if nd.dist == "gaussian":
        mean, std = (float(v) for v in prm[r])
        return out.add(f"G {{}} 0 {var + 1} {mean!r} {std!r}")
    raise _fail(node, f"distribution {nd.dist!r} has no .jpc spelling")


def lines(c: Circuit) -> Iterator[str]:
    """The text of ``c`` in chunks: the header comment, ``jpc N``, then the node lines."""
    keep = reachable(c)
    out = _Out()
    ids: dict[int, list[int]] = {}
    for i, nd in enumerate(c.nodes):
        if not keep[i]:
            continue
        if isinstance(nd, InputVector):
            ids[i] = [_input_node(out, c, i, nd, r) for r in range(nd.n)]
        elif isinstance(nd, ProductVector):
            table = nd.edge_table([c.nodes[ch].n for ch in nd.children])
            ids[i] = [out.add(f"P {{}} 0 {len(nd.children)} " + " ".join(
                str(ids[ch][e]) for ch, e in zip(nd.children, row))) for row in table.tolist()]
        else:
            assert isinstance(nd, SumVector)
            kids = [k for ch in nd.children for k in ids[ch]]
            w = c.params[nd.param]
            ids[i] = [_sum_line(out, kids, w[r], i) for r in range(nd.n)]
    root = ids[c.root]
    if len(root) != 1:
        raise PcccError(f"cannot write as .jpc: the root %{c.root} has {len(root)} nodes")
    if root[0] != len(out.lines) - 1:  # the root must be the last line
        raise PcccError("cannot write as .jpc: the root is not the last node")
    yield _HEADER
    yield f"jpc {len(out.lines)}\n"
    for k in range(0, len(out.lines), 4096):
        yield "\n".join(out.lines[k:k + 4096]) + "\n"
