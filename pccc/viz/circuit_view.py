"""The L0 picture: node vectors with their kind, size and scope, or layers of them by depth.

Up to ``max_nodes`` node vectors, every vector is a box (``%7 sum [16]`` over its scope,
``{0..783}``) one row under its lowest parent (:func:`rows_from_top`), and every child of
a vector is an arrow from the child to it, labelled with the weight of a scalar sum edge or
the ``n x m`` edges between a sum vector and a child vector. Above ``max_nodes`` the vectors
of each depth are collapsed into one box (a range of depths when there are more than
``max_nodes`` depths), which counts them by kind with their nodes, and arrows between the boxes
count the vector edges they stand for; the title says how much was collapsed.

Example::

    pic = circuit_picture(circuit, max_nodes=200)
"""

from __future__ import annotations

from pccc.ir.analyses import counts, depths, scopes
from pccc.ir.circuit import Circuit, InputVector, ProductVector, SumVector
from pccc.viz.model import Arrow, Box, Picture, count_text, scope_text


def _title(c: Circuit) -> str:
    k = counts(c)
    return (f"L0 circuit: {count_text(k.vectors, 'node vector')}, {count_text(k.nodes, 'node')}, "
            f"{count_text(k.edges, 'edge')}, {count_text(c.num_vars, 'variable')}")


def _vector_lines(c: Circuit, i: int, scope: frozenset[int]) -> tuple[str, ...]:
    nd = c.nodes[i]
    kind = f"input {nd.dist}" if isinstance(nd, InputVector) else nd.kind
    return (f"%{i} {kind} [{nd.n}]", scope_text(scope))


def _edge_label(c: Circuit, parent: int, child: int, pos: int) -> str:
    nd = c.nodes[parent]
    if not isinstance(nd, SumVector):
        return ""
    m = c.nodes[child].n
    if nd.n == 1 and m == 1:  # a scalar edge: its weight
        offset = sum(c.nodes[ch].n for ch in nd.children[:pos])
        return f"{float(c.params[nd.param][0, offset]):.3g}"
    return f"{nd.n}x{m}"


def circuit_picture(c: Circuit, *, max_nodes: int = 200) -> Picture:
    """The picture of an L0 circuit (see the module docstring)."""
    if len(c.nodes) > max_nodes:
        return _collapsed(c, max_nodes)
    sc = scopes(c)
    rows = rows_from_top(c)
    boxes = tuple(Box(f"v{i}", _vector_lines(c, i, sc[i]), nd.kind, rows[i], bold=i == c.root)
                  for i, nd in enumerate(c.nodes))
    arrows = tuple(Arrow(f"v{ch}", f"v{i}", _edge_label(c, i, ch, pos))
                   for i, nd in enumerate(c.nodes) for pos, ch in enumerate(nd.children))
    return Picture(_title(c), boxes, arrows)


def rows_from_top(c: Circuit) -> list[int]:
    """The row of each vector, counted from the bottom: one row under its lowest parent (the
    longest path from the root; the root, and any vector without parents, on the top row), so
    that an input sits right under the product that reads it."""
    down = [0] * len(c.nodes)
    for i in range(len(c.nodes) - 1, -1, -1):
        for ch in c.nodes[i].children:
            down[ch] = max(down[ch], down[i] + 1)
    top = max(down, default=0)
    return [top - d for d in down]


def _group_of_depth(dp: list[int], max_nodes: int) -> tuple[list[int], int]:
    """The group of each depth (consecutive depths merged when there are more than
    ``max_nodes``) and the number of groups."""
    n = max(dp, default=0) + 1
    size = -(-n // max_nodes) if n > max_nodes else 1
    return [d // size for d in range(n)], -(-n // size)


def _group_lines(c: Circuit, members: list[int], depth_text: str,
                 scope_sizes: list[int]) -> tuple[str, ...]:
    lines = [f"{depth_text}: {count_text(len(members), 'node vector')}"]
    for kind, cls in (("input", InputVector), ("product", ProductVector), ("sum", SumVector)):
        mine = [i for i in members if isinstance(c.nodes[i], cls)]
        if mine:
            nodes = sum(c.nodes[i].n for i in mine)
            lines.append(f"{len(mine):,} {kind} ({count_text(nodes, 'node')})")
    widest = max(scope_sizes[i] for i in members)
    lines.append(f"scopes up to {count_text(widest, 'var')}")
    return tuple(lines)


def scope_sizes(c: Circuit) -> list[int]:
    """The number of variables below each node vector of a smooth, decomposable circuit
    (a product adds its children's, a sum takes its widest child's), without building the
    scopes."""
    out: list[int] = []
    for nd in c.nodes:
        if isinstance(nd, InputVector):
            out.append(1)
        elif isinstance(nd, ProductVector):
            out.append(sum(out[ch] for ch in nd.children))
        else:
            out.append(max(out[ch] for ch in nd.children))
    return out


def _collapsed(c: Circuit, max_nodes: int) -> Picture:
    dp = depths(c)
    group, num_groups = _group_of_depth(dp, max_nodes)
    members: list[list[int]] = [[] for _ in range(num_groups)]
    for i, d in enumerate(dp):
        members[group[d]].append(i)
    sizes = scope_sizes(c)
    root_group = group[dp[c.root]]
    between: dict[tuple[int, int], int] = {}
    inside = [0] * num_groups
    for i, nd in enumerate(c.nodes):
        for ch in nd.children:
            a, b = group[dp[ch]], group[dp[i]]
            if a == b:
                inside[a] += 1
            else:
                between[a, b] = between.get((a, b), 0) + 1
    boxes = []
    for g, mine in enumerate(members):
        if not mine:
            continue
        lo, hi = min(dp[i] for i in mine), max(dp[i] for i in mine)
        text = f"depth {lo}" if lo == hi else f"depths {lo}-{hi}"
        kind = "input" if all(isinstance(c.nodes[i], InputVector) for i in mine) else "group"
        lines = _group_lines(c, mine, text, sizes)
        if inside[g]:
            lines += (f"{count_text(inside[g], 'edge')} inside",)
        boxes.append(Box(f"g{g}", lines, kind, g, bold=g == root_group))
    arrows = tuple(Arrow(f"g{a}", f"g{b}", count_text(k, "edge"))
                   for (a, b), k in sorted(between.items()))
    unit = "depth" if num_groups == max(dp, default=0) + 1 else "range of depths"
    note = (f"collapsed: {count_text(len(c.nodes), 'node vector')} into "
            f"{count_text(len(boxes), 'layer')} by {unit} (more than {max_nodes:,} vectors; "
            "arrows count vector edges)")
    return Picture(_title(c), tuple(boxes), arrows, (note,))
