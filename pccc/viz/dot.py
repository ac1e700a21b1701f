"""A :class:`~pccc.viz.model.Picture` as Graphviz DOT text.

The text depends on the picture alone (boxes and arrows in the picture's order, no ids of
objects, no dates), so the same circuit always gives the same file. Values flow bottom-up
(``rankdir=BT``); Graphviz chooses the rows itself (the boxes' ranks guide the matplotlib
drawing only).

Example::

    text = dot_text(picture)      # 'digraph pccc {\\n  graph [...]\\n ...}\\n'
"""

from __future__ import annotations

from pccc.viz.model import COLORS, Picture

FONT = "Helvetica"


def quote(text: str) -> str:
    """A DOT string: double quotes, with ``\\``, ``"`` and line breaks escaped (a line break
    becomes ``\\n``, a centred line)."""
    body = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{body}"'


def dot_text(picture: Picture) -> str:
    """The DOT text of ``picture`` (one statement a line, ending with a newline)."""
    out = ["digraph pccc {",
           f"  graph [rankdir=BT, labelloc=t, fontname={quote(FONT)}, fontsize=12, "
           f"label={quote(chr(10).join(picture.heading()))}];",
           f'  node [shape=box, style="rounded,filled", fontname={quote(FONT)}, fontsize=10];',
           f"  edge [fontname={quote(FONT)}, fontsize=9, color=\"#555555\"];"]
    for box in picture.boxes:
        attrs = [f"label={quote(chr(10).join(box.lines))}",
                 f"fillcolor={quote(COLORS.get(box.kind, COLORS['group']))}"]
        if box.bold:
            attrs.append("penwidth=2.5")
        out.append(f"  {box.id} [{', '.join(attrs)}];")
    for arrow in picture.arrows:
        label = f" [label={quote(arrow.label)}]" if arrow.label else ""
        out.append(f"  {arrow.src} -> {arrow.dst}{label};")
    out.append("}")
    return "\n".join(out) + "\n"
