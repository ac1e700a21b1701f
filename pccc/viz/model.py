"""The drawing model: a picture is boxes on rows, arrows between them, and a title.

Every view (:mod:`pccc.viz.circuit_view`, :mod:`pccc.viz.layers_view`, ...) builds a
:class:`Picture`; the writers turn one into DOT text (:mod:`pccc.viz.dot`) or draw it
(:mod:`pccc.viz.render`). A box's ``rank`` is its row, counted from the bottom (inputs at 0, the
root on the highest row); arrows point the way values flow, from a child to its parent.

Example::

    pic = Picture("two boxes", (Box("a", ("input",), "input", 0), Box("b", ("sum",), "sum", 1)),
                  (Arrow("a", "b", "0.5"),))
"""

from __future__ import annotations

from dataclasses import dataclass

#: fill colour of each kind of box (DOT and matplotlib alike)
COLORS: dict[str, str] = {
    "input": "#d9f0d3",
    "sum": "#cfe2f3",
    "product": "#fde9c9",
    "group": "#eeeeee",
    "kernel": "#e8dcf2",
}


@dataclass(frozen=True)
class Box:
    """One box of a picture."""

    id: str
    """the name arrows use (letters, digits and ``_``)"""
    lines: tuple[str, ...]
    """the text, one entry per line"""
    kind: str
    """a key of :data:`COLORS`"""
    rank: int
    """the row, from the bottom (0)"""
    bold: bool = False
    """drawn with a heavier border (the root)"""


@dataclass(frozen=True)
class Arrow:
    """An arrow from box ``src`` to box ``dst`` (the way values flow)."""

    src: str
    dst: str
    label: str = ""


@dataclass(frozen=True)
class Picture:
    """Boxes, arrows and a title; ``notes`` are further title lines (a collapse says so here)."""

    title: str
    boxes: tuple[Box, ...]
    arrows: tuple[Arrow, ...]
    notes: tuple[str, ...] = ()

    def heading(self) -> list[str]:
        """The title and the notes, one line each."""
        return [self.title, *self.notes]


def scope_text(variables: frozenset[int] | set[int], width: int = 24) -> str:
    """A scope for a label: ``{3}``, ``{0..783}``, ``{0, 2, 5..9}``, or, when that is longer
    than ``width`` characters, ``12 vars in {0..40}``."""
    vs = sorted(variables)
    if not vs:
        return "{}"
    runs: list[tuple[int, int]] = []
    for v in vs:
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    parts = [str(a) if a == b else f"{a}, {b}" if b == a + 1 else f"{a}..{b}" for a, b in runs]
    text = "{" + ", ".join(parts) + "}"
    if len(text) <= width:
        return text
    return f"{len(vs)} vars in {{{vs[0]}..{vs[-1]}}}"


def count_text(n: int, word: str) -> str:
    """``1 layer``, ``12,345 node vectors`` (thousands separated)."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {_plural(word)}"


def _plural(word: str) -> str:
    head, _, last = word.rpartition(" ")
    if last.endswith("y") and last[-2:-1] not in "aeiou":
        many = last[:-1] + "ies"
    else:
        many = last + "es" if last.endswith(("s", "sh", "ch", "x")) else last + "s"
    return f"{head} {many}" if head else many
