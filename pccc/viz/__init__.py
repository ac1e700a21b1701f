"""Pictures of circuits: node vectors (L0), the layer schedule (L2), the kernel plan (L3).

:func:`draw` builds the picture of a circuit at a level (:mod:`pccc.viz.levels`) and returns
its DOT text as a :class:`Drawing`, a ``str`` that a notebook displays as SVG; with ``out`` it
also writes the picture, in the format of the extension (``.dot``, ``.svg``, ``.png``,
``.pdf``; :mod:`pccc.viz.render`). ``pccc viz`` is the same on the command line.

- L0 (:mod:`pccc.viz.circuit_view`): a box per node vector with its kind, size and scope;
  above ``max_nodes`` vectors, a box per depth, and the title says so.
- L2 and L3 (:mod:`pccc.viz.layers_view`): the inputs, then per layer its product partitions
  under its sum partitions, arrows labelled with the factors read and the sum edges; above
  ``max_nodes`` boxes, ranges of layers.

Example::

    import pccc.viz
    text = pccc.viz.draw("model.jpc")                       # the DOT text (shown in notebooks)
    pccc.viz.draw(circuit, "hclt-layers.svg", level="L2")   # written with dot or matplotlib
"""

from __future__ import annotations

import os
from typing import Any

from pccc.ir.errors import PcccError
from pccc.viz.dot import dot_text
from pccc.viz.levels import LEVELS, picture_of, read_value
from pccc.viz.model import Arrow, Box, Picture
from pccc.viz.render import ENGINES, FORMATS, choose_engine, format_of, picture_bytes, write_picture

__all__ = ["ENGINES", "FORMATS", "LEVELS", "Arrow", "Box", "Drawing", "Picture", "dot_text",
           "draw", "picture_of", "write_picture"]


class Drawing(str):
    """The DOT text of a picture; in a notebook it shows as the picture (SVG drawn by
    Graphviz or matplotlib, see :func:`pccc.viz.render.choose_engine`)."""

    picture: Picture
    """what the text draws"""

    def __new__(cls, picture: Picture) -> Drawing:
        obj = super().__new__(cls, dot_text(picture))
        obj.picture = picture
        return obj

    def svg(self, engine: str = "auto") -> str:
        """The picture as SVG text."""
        return picture_bytes(self.picture, "svg", engine).decode()

    def save(self, path: str | os.PathLike[str], engine: str = "auto") -> None:
        """Write the picture (format by extension, atomically)."""
        write_picture(self.picture, path, engine)

    def _repr_svg_(self) -> str | None:
        try:
            return self.svg()
        except PcccError:  # (nothing draws here: the notebook shows the text)
            return None


def draw(circuit_or_path: Any, out: str | os.PathLike[str] | None = None, level: str = "L0",
         max_nodes: int = 200, *, engine: str = "auto", pipeline: str | None = None) -> Drawing:
    """Draw a circuit at a level, and write the picture to ``out`` if given.

    Args:
        circuit_or_path: an L0 :class:`~pccc.ir.Circuit`, an IR value of level L1 to L3, a
            compiled module, or a file (any format :func:`pccc.load` reads, or ``.pccm``).
        out: the file to write; its extension picks the format (:data:`FORMATS`).
        level: ``L0`` (node vectors), ``L2`` (layer schedule) or ``L3`` (kernel plan).
        max_nodes: the most boxes drawn one by one; above it, vectors are grouped by depth
            (L0) or layers into ranges (L2, L3), and the title states the grouping.
        engine: ``auto``, ``dot`` or ``matplotlib`` (:data:`ENGINES`): what draws SVG, PNG
            and PDF (``auto``: Graphviz's ``dot`` when on the PATH, else matplotlib).
        pipeline: the passes that lower the circuit for L2 and L3 (default: ``training``, or
            a compiled module's own pipeline).

    Returns:
        the DOT text of the picture, as a :class:`Drawing`.

    Raises:
        PcccError: an unreadable input, an unknown level or extension, no engine that can
            draw ``out``'s format.
    """
    if out is not None:
        fmt = format_of(out)
        if fmt != "dot":
            choose_engine(engine)
        from pccc.files import check_output

        check_output(out)
    picture = picture_of(read_value(circuit_or_path), level, max_nodes=max_nodes,
                         pipeline=pipeline)
    drawing = Drawing(picture)
    if out is not None:
        write_picture(picture, out, engine)
    return drawing
