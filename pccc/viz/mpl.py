"""A :class:`~pccc.viz.model.Picture` drawn with networkx and matplotlib (no Graphviz).

Boxes sit on the rows of their ranks, bottom-up. The order within a row comes from a few
barycentre sweeps over the networkx graph (each box moves towards the mean position of its
neighbours on other rows), which keeps most arrows short and uncrossed. Sizes are computed
from the text (a monospace font), in inches, and the axes span the figure one data unit per
inch, so arrows can be clipped exactly at the box borders.

Example::

    data = draw_bytes(picture, "svg")     # the bytes of an SVG file
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from pccc.viz.model import COLORS, Picture

#: text size in the boxes (points) and the width and height of one character (inches)
FONT_SIZE = 8.0
CHAR_W = 0.64 * FONT_SIZE / 72  # (DejaVu Sans Mono's 0.602 em, and hinting)
LINE_H = 1.3 * FONT_SIZE / 72
#: padding inside a box, gaps between boxes and rows, margin around the picture (inches)
PAD, GAP_X, GAP_Y, MARGIN = 0.08, 0.3, 0.55, 0.3
#: the most pixels a raster image has on its longer side (the resolution drops to fit)
MAX_PIXELS = 12000
SWEEPS = 4


@dataclass
class _Placed:
    x: float
    y: float
    w: float
    h: float


Point = tuple[float, float]
Route = tuple[Point, Point, float, float]
"""where an arrow starts and ends, its bend (``arc3``'s ``rad``), and how far along it its
label goes (0 to 1)"""


def _size(lines: tuple[str, ...]) -> tuple[float, float]:
    width = max((len(s) for s in lines), default=1)
    return width * CHAR_W + 2 * PAD, len(lines) * LINE_H + 2 * PAD


def _rows(picture: Picture, graph: Any) -> list[list[str]]:
    """The box ids of each row, bottom-up, in barycentre order."""
    ranks = sorted({b.rank for b in picture.boxes})
    rows = [[b.id for b in picture.boxes if b.rank == r] for r in ranks]
    widths = {b.id: _size(b.lines)[0] for b in picture.boxes}
    for sweep in range(SWEEPS):
        x = _centres(rows, widths)
        upward = sweep % 2 == 0
        near = graph.predecessors if upward else graph.successors
        for r in range(1, len(rows)) if upward else range(len(rows) - 2, -1, -1):
            rows[r].sort(key=lambda box: _mean([x[n] for n in near(box)], x[box]))
            x.update(_centres([rows[r]], widths))
    return rows


def _mean(xs: list[float], default: float) -> float:
    return sum(xs) / len(xs) if xs else default


def _centres(rows: list[list[str]], widths: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for row in rows:
        total = sum(widths[b] for b in row) + GAP_X * (len(row) - 1)
        left = -total / 2
        for b in row:
            out[b] = left + widths[b] / 2
            left += widths[b] + GAP_X
    return out


def layout(picture: Picture) -> dict[str, _Placed]:
    """Where each box goes: centre, width and height, in inches (y up from the bottom row)."""
    import networkx as nx

    graph = nx.MultiDiGraph()
    graph.add_nodes_from(b.id for b in picture.boxes)
    graph.add_edges_from((a.src, a.dst) for a in picture.arrows)
    rows = _rows(picture, graph)
    by_id = {b.id: b for b in picture.boxes}
    widths = {b.id: _size(b.lines)[0] for b in picture.boxes}
    x = _centres(rows, widths)
    placed: dict[str, _Placed] = {}
    bottom = 0.0
    for row in rows:
        height = max(_size(by_id[b].lines)[1] for b in row)
        for b in row:
            w, h = _size(by_id[b].lines)
            placed[b] = _Placed(x[b], bottom + height / 2, w, h)
        bottom += height + GAP_Y
    return placed


def _clip(a: _Placed, b: _Placed) -> tuple[Point, Point]:
    """The segment between the centres of ``a`` and ``b``, cut at both borders."""
    dx, dy = b.x - a.x, b.y - a.y

    def out_of(p: _Placed) -> float:  # the part of the segment inside box p
        tx = (p.w / 2) / abs(dx) if dx else float("inf")
        ty = (p.h / 2) / abs(dy) if dy else float("inf")
        return min(tx, ty, 0.5)

    ta, tb = out_of(a), 1 - out_of(b)
    return (a.x + ta * dx, a.y + ta * dy), (a.x + tb * dx, a.y + tb * dy)


def _route(a: _Placed, b: _Placed, rows: list[list[_Placed]], ys: list[float]) -> Route:
    """Where an arrow from ``a`` to ``b`` starts and ends, and its bend (``arc3``'s ``rad``).

    An arrow between boxes on neighbouring rows is straight, cut at both borders. One that
    passes rows of a single box each (a column of layers: the boxes would sit on its path)
    leaves and enters at the right borders and bends around the widest box it passes, its
    label 70% of the way (so that labels of arrows into one box part); any other bends a
    little more the more rows it passes (``rad`` up to 0.6).
    """
    lo, hi = sorted((ys.index(a.y), ys.index(b.y)))
    between = rows[lo + 1:hi]
    if between and all(len(r) == 1 for r in between):
        p, q = (a.x + a.w / 2, a.y), (b.x + b.w / 2, b.y)
        edge = max(r[0].x + r[0].w / 2 for r in between)
        need = edge - (p[0] + q[0]) / 2 + 0.15 + 0.12 * len(between)
        return p, q, 2 * need / (q[1] - p[1]), 0.7
    p, q = _clip(a, b)
    return p, q, min(0.6, 0.12 * len(between)), 0.5


def _label_at(route: Route) -> Point:
    """Where an arrow's label goes on its curve, matplotlib's ``arc3``: a quadratic Bezier
    curve whose control point lies ``rad`` times the chord's length off the chord's middle."""
    (px, py), (qx, qy), rad, t = route
    cx, cy = (px + qx) / 2 + rad * (qy - py), (py + qy) / 2 - rad * (qx - px)
    u = 1 - t
    return (u * u * px + 2 * t * u * cx + t * t * qx, u * u * py + 2 * t * u * cy + t * t * qy)


def _routes(picture: Picture, placed: dict[str, _Placed]) -> list[Route]:
    ys = sorted({p.y for p in placed.values()})
    rows: list[list[_Placed]] = [[] for _ in ys]
    for p in placed.values():
        rows[ys.index(p.y)].append(p)
    return [_route(placed[a.src], placed[a.dst], rows, ys) for a in picture.arrows]


def _draw(picture: Picture) -> Any:
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    placed = layout(picture)
    routes = _routes(picture, placed)
    heading = picture.heading()
    label_w = 6.5 / 72 * 0.6  # (inches per character of an arrow's label)
    xs = [x for p in placed.values() for x in (p.x - p.w / 2, p.x + p.w / 2)]
    xs += [_label_at(r)[0] + s * label_w * len(a.label) / 2
           for a, r in zip(picture.arrows, routes) for s in (-1, 1)]
    left, right = min(xs, default=0.0) - MARGIN, max(xs, default=0.0) + MARGIN
    top = max((p.y + p.h / 2 for p in placed.values()), default=0.0)
    width = max(right - left, 0.11 * max(len(s) for s in heading) + 2 * MARGIN)
    height = top + 0.2 * len(heading) + 0.15 + 2 * MARGIN
    centre = (left + right) / 2
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(centre - width / 2, centre + width / 2)
    ax.set_ylim(-MARGIN, height - MARGIN)
    ax.set_axis_off()
    for arrow, route in zip(picture.arrows, routes):
        p, q, rad, _ = route
        ax.add_patch(FancyArrowPatch(p, q, arrowstyle="-|>", mutation_scale=8, lw=0.7,
                                     color="#555555", shrinkA=0, shrinkB=0, zorder=1,
                                     connectionstyle=f"arc3,rad={rad:.4f}"))
        if arrow.label:
            ax.text(*_label_at(route), arrow.label, fontsize=6.5, ha="center",
                    va="center", color="#333333", zorder=3,
                    bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none",
                          "alpha": 0.85})
    by_id = {b.id: b for b in picture.boxes}
    for box_id, at in placed.items():
        box = by_id[box_id]
        ax.add_patch(FancyBboxPatch((at.x - at.w / 2 + PAD, at.y - at.h / 2 + PAD),
                                    at.w - 2 * PAD, at.h - 2 * PAD, boxstyle=f"round,pad={PAD}",
                                    fc=COLORS.get(box.kind, COLORS["group"]), ec="#333333",
                                    lw=2.0 if box.bold else 0.7, zorder=2))
        ax.text(at.x, at.y, "\n".join(box.lines), ha="center", va="center", family="monospace",
                fontsize=FONT_SIZE, linespacing=1.15, zorder=4,
                multialignment="left" if len(box.lines) > 2 else "center")
    ax.text(centre, height - MARGIN - 0.1, "\n".join(heading), ha="center", va="top",
            fontsize=10)
    return fig


#: metadata that would make two drawings of one picture differ (dates, versions)
_METADATA: dict[str, dict[str, Any]] = {
    "svg": {"Date": None, "Creator": None},
    "png": {"Software": None},
    "pdf": {"CreationDate": None, "Creator": None, "Producer": None},
}


def draw_bytes(picture: Picture, fmt: str) -> bytes:
    """The file of ``picture`` in format ``fmt`` (``svg``, ``png``, ``pdf``)."""
    import matplotlib

    fig = _draw(picture)
    w, h = fig.get_size_inches()
    dpi = min(96.0, MAX_PIXELS / max(w, h))
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "pccc", "svg.fonttype": "none"}):
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=_METADATA.get(fmt))
    return buf.getvalue()
