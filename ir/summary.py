"""One-screen summaries of IR values of every level, for ``pccc info`` and ``pccc opt --stats``.

Every level starts with the rows of its circuit (L0-L2: variables, node vectors, nodes, edges,
parameters and their bytes, depth); L1 adds a row per tile shape (vectors, blocks, tiles,
padding share, weight bytes), L2 and L3 a table with a row per layer (sum partitions,
blocks, tiles, padding share, weight bytes; product partitions, elements, fan-in, padding
share), more than :data:`MAX_ROWS` layers grouped into ranges; L3 adds its buffers (node and
element slots per example, weights, input parameters, index tables). The counts are those of
:mod:`pccc.ir.stats`, so L2 and L3 agree on every layer.

Example::

    print("\\n".join(summary_lines(value)))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pccc.ir.analyses import counts
from pccc.ir.blocked import BlockedCircuit, split_root
from pccc.ir.circuit import Circuit, InputVector, SumVector
from pccc.ir.digest import circuit_digest
from pccc.ir.layered import LayeredCircuit
from pccc.ir.plan import PLAN_VERSION, KernelPlan, ProductLayer, SumLayer
from pccc.ir.print_plan import fmt_bytes, plural
from pccc.ir.schedule import (
    BACKWARD_KINDS,
    FORWARD_KINDS,
    PART_KINDS,
    KernelSchedule,
    Launch,
)
from pccc.ir.schedule_cost import BATCH, Cost, fmt_count, launch_cost, part_bytes, pass_costs
from pccc.ir.stats import (
    ProductStats,
    SumStats,
    blocked_stats,
    layer_stats,
    product_partition_stats,
    sum_partition_stats,
)

#: layers beyond this many are grouped into ranges of consecutive layers
MAX_ROWS = 16
#: kernels listed by FLOPs in an L4 summary
TOP_KERNELS = 6
#: the width of a row's label
LABEL = 14

Row = tuple[str, Any]


def rows_text(rows: Sequence[Row]) -> list[str]:
    """``label: value`` lines, the values aligned."""
    return [f"{label + ':':<{LABEL}}{value}" for label, value in rows]


def circuit_rows(c: Circuit) -> list[Row]:
    """Variables, node vectors, nodes, edges, parameters and depth of an L0 circuit."""
    k = counts(c)
    kinds = {"input": 0, "sum": 0, "product": 0}
    for nd in c.nodes:
        kinds["input" if isinstance(nd, InputVector) else
              "sum" if isinstance(nd, SumVector) else "product"] += 1
    pbytes = sum(int(a.nbytes) for a in c.params.values())
    return [
        ("variables", c.num_vars),
        ("node vectors", f"{k.vectors} (input {kinds['input']}, sum {kinds['sum']}, "
                         f"product {kinds['product']})"),
        ("nodes", f"{k.nodes} (input {k.input_nodes}, sum {k.sum_nodes}, "
                  f"product {k.product_nodes})"),
        ("edges", f"{k.edges} (sum {k.sum_edges}, product {k.product_edges})"),
        ("parameters", f"{k.params} ({fmt_bytes(pbytes)})"),
        ("depth", k.depth),
    ]


def _source_row(c: Circuit) -> Row:
    src, wrapped = split_root(c)
    extra = f"; root wrapped: %{len(src.nodes)}" if wrapped else ""
    return "source", f"sha256 {circuit_digest(src)[:16]}...{extra}"


def _blocked_rows(bc: BlockedCircuit) -> list[Row]:
    rows: list[Row] = []
    total = SumStats()
    for (B, C), st in sorted(blocked_stats(bc).items(), reverse=True):
        total.add(st)
        rows.append((f"  B={B} C={C}", f"{plural(st.vectors, 'vector')}, "
                                       f"{plural(st.blocks, 'block')}, "
                                       f"{plural(st.tiles, 'tile')}, {st.padding():.1%} pad, "
                                       f"weights {fmt_bytes(st.tile_bytes)}"))
    head = (f"{total.vectors} in {plural(len(rows), 'tile shape')}: {total.blocks} blocks, "
            f"{total.tiles} tiles, {total.padding():.1%} pad, weights "
            f"{fmt_bytes(total.tile_bytes)}")
    return [("sum vectors", head)] + rows


LayerRow = tuple[str, int, SumStats, int, ProductStats]
"""(layers, sum partitions, their counts, product partitions, their counts)"""


def _grouped(per_layer: list[tuple[int, SumStats, int, ProductStats]]) -> list[LayerRow]:
    """One row per layer, or per range of layers when there are more than MAX_ROWS."""
    n = len(per_layer)
    size = -(-n // MAX_ROWS) if n > MAX_ROWS else 1
    out: list[LayerRow] = []
    for lo in range(0, n, size):
        hi = min(n, lo + size)
        sums, prods, sp, pp = SumStats(), ProductStats(), 0, 0
        for ns, s, npp, p in per_layer[lo:hi]:
            sums.add(s)
            prods.add(p)
            sp, pp = sp + ns, pp + npp
        out.append((str(lo) if hi == lo + 1 else f"{lo}-{hi - 1}", sp, sums, pp, prods))
    return out


def layer_table(per_layer: list[tuple[int, SumStats, int, ProductStats]]) -> list[str]:
    """The per-layer table (sum side | product side) with a total row."""
    head = (f"{'layer':>7} {'parts':>5} {'blocks':>8} {'tiles':>9} {'pad':>6} {'weights':>10}"
            f" | {'parts':>5} {'elements':>9} {'fan-in':>6} {'pad':>6}")
    rows = _grouped(per_layer) + [("all",) + _total(per_layer)]  # type: ignore[operator]
    lines = [head]
    for name, sp, s, pp, p in rows:
        lines.append(f"{name:>7} {sp:>5} {s.blocks:>8} {s.grid:>9} {s.padding():>6.1%} "
                     f"{fmt_bytes(s.tile_bytes):>10} | {pp:>5} {p.elements:>9} {p.fanin:>6} "
                     f"{p.padding():>6.1%}")
    return lines


def _total(per_layer: list[tuple[int, SumStats, int, ProductStats]]
           ) -> tuple[int, SumStats, int, ProductStats]:
    sums, prods = SumStats(), ProductStats()
    for _, s, _, p in per_layer:
        sums.add(s)
        prods.add(p)
    return (sum(r[0] for r in per_layer), sums, sum(r[2] for r in per_layer), prods)


def _layered_table(lc: LayeredCircuit) -> list[str]:
    per = []
    for layer in lc.layers:
        s, p = layer_stats(lc, layer)
        per.append((len(layer.sums), s, len(layer.products), p))
    return layer_table(per)


def _plan_table(plan: KernelPlan) -> list[str]:
    per = []
    layers = plan.layers
    for prod, sl in zip(layers[0::2], layers[1::2]):
        assert isinstance(prod, ProductLayer) and isinstance(sl, SumLayer)
        s, p = SumStats(), ProductStats()
        for sp in sl.partitions:
            s.add(sum_partition_stats(plan, sp))
        for pp in prod.partitions:
            p.add(product_partition_stats(pp))
        per.append((len(sl.partitions), s, len(prod.partitions), p))
    return layer_table(per)


def _plan_rows(plan: KernelPlan) -> list[Row]:
    elems = max((ly.num_elem_slots for ly in plan.product_layers()), default=0)
    index = sum(int(a.nbytes) for ly in plan.input_layers for a in (ly.vars, ly.param_start))
    index += sum(int(pp.children.nbytes) for ly in plan.product_layers() for pp in ly.partitions)
    index += sum(sum(int(getattr(sp, n).nbytes) for n in ("node_start", "chunk_start",
                                                          "param_start", "num_chunks"))
                 for ly in plan.sum_layers() for sp in ly.partitions)
    inputs = ", ".join(f"{ly.dist} {ly.n}" for ly in plan.input_layers)
    roots = (f"root slot {plan.root_slot}" if plan.num_roots == 1 else
             f"{plan.num_roots} root slots from {plan.root_slot}")
    return [
        ("plan", f"KernelPlan v{PLAN_VERSION}: {plan.num_vars} vars, {roots}"),
        ("input layers", f"{len(plan.input_layers)} ({inputs})" if inputs else 0),
        ("node buffer", f"{plan.num_node_slots} slots ({fmt_bytes(4 * plan.num_node_slots)} per "
                        "example in float32)"),
        ("element buf.", f"{elems} slots at most ({fmt_bytes(4 * elems)} per example)"),
        ("weights", f"{len(plan.params)} ({fmt_bytes(plan.params.nbytes)}; "
                    f"{plan.reserved_params} reserved, {len(plan.group_size)} groups)"),
        ("input params", f"{len(plan.input_params)} ({fmt_bytes(plan.input_params.nbytes)})"),
        ("index tables", f"{fmt_bytes(index + plan.param_group.nbytes)} (param_group "
                         f"{fmt_bytes(plan.param_group.nbytes)})"),
        ("param map", f"{plural(len(plan.param_map), 'key')} "
                          f"({len(plan.input_param_keys)} of inputs)"),
    ]


def _schedule_rows(s: KernelSchedule, batch: int) -> list[Row]:
    grid = sum(p.nb * p.NC * p.B * p.C for p in s.parts)
    pad = 1.0 - sum(p.weights for p in s.parts) / grid if grid else 0.0
    index = sum(part_bytes(p)[0] for p in s.parts)
    weights = sum(part_bytes(p)[1] for p in s.parts)
    inputs = ", ".join(f"{r.n} x {r.param_size}" for r in s.inputs)
    zero = ("all rows" if s.flow_zero is None else
            f"{int(s.flow_zero[:, 1].sum())} rows in {plural(len(s.flow_zero), 'tile')}")
    return [
        ("level", f"L4 kernel schedule ({s.backend}, {s.precision}; programs {s.programs}, "
                  f"stride tile {s.stride_tile})"),
        ("node rows", f"{s.num_node_slots} (+1: -inf); {plural(s.num_roots, 'root')} from "
                      f"{s.root_slot}"),
        ("input layers", f"{len(s.inputs)} (nodes x parameters: {inputs})" if inputs else 0),
        ("sum parts", f"{len(s.parts)} in {plural(len(s.layer_parts()), 'layer')}, "
                      f"{plural(len(s.shapes()), 'kernel shape')}; "
                      f"{sum(p.G > 1 for p in s.parts)} with sibling groups, "
                      f"{sum(p.write == 'atomic' for p in s.parts)} adding atomically"),
        ("blocks", f"{sum(p.nb for p in s.parts)} ("
                   f"{plural(sum(p.tiles for p in s.parts), 'tile')}), "
                   f"{pad:.1%} pad; index {fmt_bytes(index)}, weights {fmt_bytes(weights)}"),
        ("flows zeroed", zero),
        ("flows", "in the node rows (one writer per row)" if s.flows_in_nodes() else
                  "in a flow buffer"),
        ("cost model", f"batch {batch}, float32 values, int32 indices (docs/ir.md)"),
    ]


def _cost_row(name: str, launches: int | str, blocks: int | str, c: Cost) -> str:
    inten = f"{c.flops / c.bytes:.1f}" if c.bytes else "-"
    return (f"{name:<26}{launches:>7}{blocks:>8} {fmt_count(c.flops, 'FLOP'):>11} "
            f"{fmt_bytes(c.bytes):>10} {inten:>7}")


def _launch_blocks(s: KernelSchedule, ln: Launch) -> int:
    return s.parts[ln.part].nb if ln.part >= 0 else 0


def _blocks(kind: str, n: int, b: int, c: Cost) -> tuple[int, int | str, Cost]:
    """A table row's launches, blocks (``-`` for kinds that run no sum blocks), cost."""
    return n, b if kind in PART_KINDS else "-", c


def schedule_lines(s: KernelSchedule, batch: int = BATCH) -> list[str]:
    """The L4 summary: the schedule's rows, a table of launches, blocks, predicted FLOPs and
    bytes per kind of launch (:mod:`pccc.ir.schedule_cost`) with each pass's totals, and the
    :data:`TOP_KERNELS` kernels that do the most FLOPs."""
    lines = rows_text(_schedule_rows(s, batch))
    lines.append(f"{'kind':<25}{'launches':>8}{'blocks':>8} {'FLOPs':>11} {'bytes':>10} "
                 f"{'FLOP/B':>7}")
    kinds: dict[str, tuple[int, int, Cost]] = {}
    kernels: dict[str, tuple[int, int, Cost]] = {}
    for ln in s.forward + s.backward:
        c, nb = launch_cost(s, ln, batch), _launch_blocks(s, ln)
        for table, key in ((kinds, ln.kind), (kernels, ln.kernel or ln.kind)):
            n, b, tot = table.get(key, (0, 0, Cost()))
            table[key] = (n + 1, b + nb, tot + c)
    for kind in FORWARD_KINDS + BACKWARD_KINDS:
        if kind in kinds:
            lines.append(_cost_row(kind, *_blocks(kind, *kinds[kind])))
    n_fwd, n_bwd = len(s.forward), len(s.backward)
    for name, cost in pass_costs(s, batch).items():
        counts: dict[str, int | str] = {"forward": n_fwd, "backward": n_bwd,
                                         "em_update": "-", "em_step": n_fwd + n_bwd}
        launches = counts[name]
        lines.append(_cost_row(f"= {name.replace('_', ' ')}", launches, "", cost))
    top = sorted(kernels.items(), key=lambda kv: -kv[1][2].flops)[:TOP_KERNELS]
    lines.append(f"kernels by FLOPs ({len(top)} of {len(kernels)}):")
    lines += [_cost_row("  " + name, *_blocks("sum_fwd" if v[1] else "", *v))
              for name, v in top]
    return lines


def summary_lines(value: Any, batch: int = BATCH) -> list[str]:
    """The summary of an IR value of any level (see the module docstring); ``batch``: the
    examples an L4 schedule's cost model counts per pass."""
    level = getattr(value, "level", None)
    if level == "L0":
        return rows_text([("level", "L0 circuit")] + circuit_rows(value))
    if level == "L1":
        return rows_text([("level", "L1 blocked"), _source_row(value.circuit)]
                         + circuit_rows(value.circuit) + _blocked_rows(value))
    if level == "L2":
        rows: list[Row] = [("level", "L2 layered"), _source_row(value.circuit)]
        rows += circuit_rows(value.circuit)
        rows.append(("layers", f"{len(value.layers)} ({sum(len(ly.sums) for ly in value.layers)}"
                               f" sum and {sum(len(ly.products) for ly in value.layers)} "
                               "product partitions)"))
        return rows_text(rows) + _layered_table(value)
    if level == "L3":
        rows = [("level", "L3 kernel plan")]
        rows += _plan_rows(value)
        rows.append(("layers", len(value.sum_layers())))
        return rows_text(rows) + _plan_table(value)
    if level == "L4":
        return schedule_lines(value, batch)
    raise TypeError(f"not an IR value: {type(value).__name__}")
