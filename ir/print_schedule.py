"""Print an L4 :class:`~pccc.ir.schedule.KernelSchedule` as ``.pcir`` text a person can scan.

The header statement, then the input layers' rows, one section per sum layer (a comment line
with its parts, partitions, blocks, tiles, padding share and the bytes its blocks read) holding
one section per sum part (three comment lines: its kernel shape, blocks and sibling groups,
real tiles, fan-in, padding share, bytes read as index tables and weights, and its launches;
then its attributes, its counts and its arrays), the flow rows a backward pass zeroes, and the
two launch lists, one launch a line::

    pcir 1 L4
    schedule backend="triton" precision="tf32" programs=8 stride_tile=64 version=1
    rows num_node_slots=6 num_roots=1 root_slot=5
    // 1 sum part, 1 kernel shape; 3 forward and 5 backward launches
    input 0 node_start=1 n=2 param_size=1

    // sum layer 0: 1 part of 1 partition, 1 block, 1 tile, 0.0% pad, reads 36 B
    // part 0: b1_c4_f2_n1, 1 block (lone), 1 tile, fan-in 2
    //   0.0% pad, reads 36 B (index 20 B, weights 16 B)
    //   launches sum_fwd sum_bwd
    part 0 layer=0 partition=0 B=1 C=4 fanin=2 NC=1 write="atomic" em_store=false small=true
      counts tiles=1 chunks=1 weights=4
      blocks i64[1] = [0]
      ...
    flow_zero all
    forward
      input_fwd "input_fwd_bernoulli" input=0 bt=128 bn=16 warps=4
      sum_fwd "sum_fwd_b1_c4_f2_n1" part=0 bt=32 warps=4 fill=1
    backward
      ...

The comments are derived from the value (bytes as :func:`pccc.ir.schedule_cost.part_bytes`
counts them) and the parser (:mod:`pccc.ir.parse_schedule`) skips them. Arrays print as in
L3 (:class:`pccc.ir.print_plan.Arrays`: inline, wrapped at 100 characters with their index
ranges in the margin, elided or in a sidecar).
"""

from __future__ import annotations

import numpy as np

from pccc.ir.lexer import quote
from pccc.ir.print_plan import Arrays, fmt_bytes, plural
from pccc.ir.printer import header, register_printer
from pccc.ir.schedule import SCHEDULE_VERSION, KernelSchedule, Launch, SumPart
from pccc.ir.schedule_cost import part_bytes


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return quote(v)
    return str(v)


def launch_line(ln: Launch) -> str:
    """``kind ["kernel"] attr=value ... flag ...``: the fields that differ from their
    defaults, the kernel's name quoted after the kind, the true flags as bare words."""
    attrs = ln.attrs()
    words = [ln.kind] + ([quote(str(attrs.pop("kernel")))] if "kernel" in attrs else [])
    words += [f"{k}={v}" for k, v in attrs.items() if not isinstance(v, bool)]
    return " ".join(words + [k for k, v in attrs.items() if v is True])


def part_launches(s: KernelSchedule) -> list[list[Launch]]:
    """Per part, its launches: forward ones, then backward ones, each in order."""
    out: list[list[Launch]] = [[] for _ in s.parts]
    for ln in s.forward + s.backward:
        if 0 <= ln.part < len(out):
            out[ln.part].append(ln)
    return out


def part_header(i: int, p: SumPart, launches: list[Launch]) -> list[str]:
    """The comment lines over part ``i``: its shape and groups, its counts (blocks, tiles,
    fan-in, padding share, bytes read) and its launches."""
    groups = (f"{plural(p.groups, 'sibling group')} of {p.G}" if p.G > 1
              else "lone")
    index, weights = part_bytes(p)
    kinds = " ".join(ln.kind for ln in launches)
    return [f"// part {i}: {p.tag}, {plural(p.nb, 'block')} ({groups}), "
            f"{plural(p.tiles, 'tile')}, fan-in {p.fanin}",
            f"//   {p.padding():.1%} pad, reads {fmt_bytes(index + weights)} (index "
            f"{fmt_bytes(index)}, weights {fmt_bytes(weights)})",
            f"//   launches {kinds}"]


def layer_header(s: KernelSchedule, layer: int, idx: list[int]) -> str:
    """The comment line over a sum layer's parts: parts, partitions, blocks, tiles, padding
    share, bytes read."""
    ps = [s.parts[i] for i in idx]
    grid = sum(p.nb * p.NC * p.B * p.C for p in ps)
    pad = 1.0 - sum(p.weights for p in ps) / grid if grid else 0.0
    read = sum(sum(part_bytes(p)) for p in ps)
    return (f"// sum layer {layer}: {plural(len(ps), 'part')} of "
            f"{plural(len({p.partition for p in ps}), 'partition')}, "
            f"{plural(sum(p.nb for p in ps), 'block')}, "
            f"{plural(sum(p.tiles for p in ps), 'tile')}, "
            f"{pad:.1%} pad, reads {fmt_bytes(read)}")


def _part_lines(i: int, p: SumPart, launches: list[Launch], arr: Arrays) -> list[str]:
    head = (f"part {i} layer={p.layer} partition={p.partition} B={p.B} C={p.C} "
            f"fanin={p.fanin} NC={p.NC} write={quote(p.write)} "
            f"em_store={_value(p.em_store)} small={_value(p.small)}")
    lines = part_header(i, p, launches) + [head]
    lines.append(f"  counts tiles={p.tiles} chunks={p.chunks} weights={p.weights}")
    for name in ("blocks", "sib", "rows", "kids"):
        lines += arr.stmt(name, getattr(p, name), "  ")
    return lines


def schedule_lines(s: KernelSchedule, arr: Arrays) -> list[str]:
    """The statements of a schedule's text, after its header line."""
    lines = [f"schedule backend={quote(s.backend)} precision={quote(s.precision)} "
             f"programs={s.programs} stride_tile={s.stride_tile} version={SCHEDULE_VERSION}",
             f"rows num_node_slots={s.num_node_slots} num_roots={s.num_roots} "
             f"root_slot={s.root_slot}"]
    lines.append(f"// {plural(len(s.parts), 'sum part')}, "
                 f"{plural(len(s.shapes()), 'kernel shape')}; "
                 f"{len(s.forward)} forward and {len(s.backward)} backward launches")
    for k, inp in enumerate(s.inputs):
        lines.append(f"input {k} node_start={inp.node_start} n={inp.n} "
                     f"param_size={inp.param_size}")
    launches = part_launches(s)
    for layer, idx in enumerate(s.layer_parts()):
        if idx:
            lines += ["", layer_header(s, layer, idx)]
        for k, i in enumerate(idx):
            lines += ([""] if k else []) + _part_lines(i, s.parts[i], launches[i], arr)
    lines.append("")
    if s.flow_zero is None:
        lines.append("flow_zero all")
    else:
        lines += arr.stmt("flow_zero", np.asarray(s.flow_zero))
    for name, launch_list in (("forward", s.forward), ("backward", s.backward)):
        lines.append(name)  # (a launch line stays under 100 characters)
        lines += ["  " + launch_line(ln) for ln in launch_list]
    return lines


def print_schedule(s: KernelSchedule, *, elide_above: int | None = None) -> str:
    """The text of a schedule (arrays above ``elide_above`` elements as their shape only)."""
    return header("L4") + "\n" + "\n".join(schedule_lines(s, Arrays(elide_above))) + "\n"


def schedule_text_npz(s: KernelSchedule, sidecar: str) -> tuple[str, dict[str, np.ndarray]]:
    """The text of a schedule whose arrays go to the sidecar ``sidecar``, and those arrays."""
    arr = Arrays(sidecar=sidecar)
    return header("L4") + "\n" + "\n".join(schedule_lines(s, arr)) + "\n", arr.saved


register_printer("L4", print_schedule)
