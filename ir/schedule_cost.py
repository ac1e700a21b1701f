"""Predicted FLOPs and bytes of an L4 schedule's launches: a cost model counted from the specs.

Every count is of one launch over a batch of ``b`` columns (:data:`BATCH` by default), with
device values float32 and index entries int32 (:data:`WORD` bytes each). For a sum part of
``nb`` blocks of ``B`` rows, chunks of ``C`` elements, fan-in ``F``, ``T`` real tiles
(:attr:`~pccc.ir.schedule.SumPart.tiles`: padding chunks are skipped), ``K`` element chunks
computed once per sibling group (:attr:`~pccc.ir.schedule.SumPart.chunks`) and ``W`` weights;
for an input layer of ``n`` nodes of ``P`` parameters each:

============== ============================================= ==================================
kind           FLOPs                                         words moved
============== ============================================= ==================================
input_fwd      ``n b``                                       ``3 n b`` (value, parameter, row)
sum_fwd        ``b (T (2BC + CF + C + B) + nb B)``           ``T B C + b T C F + b nb B``
flow_zero      0                                             ``b rows`` (all: every node row)
root_flows     0                                             ``b roots``
flow_ratio     ``2 b nb B``                                  ``3 b nb B``
sum_eflow      ``b (2 T B C + K C (2F + 2))``                ``T B C + b T B + 2 b K C F``
sum_bwd        ``b T (2BC + CF + C [+ 2BC + CF] [+ 2B])``    ``2 T B C + b T C F + b T B r
                                                             [+ b T C F]``
input_bwd      ``n b``                                       ``3 n b``
input_cat_dot  ``2 n P b``                                   ``2 n b + n P``
em_update      ``5 (sum W + sum n P)``                       ``4 (sum W + sum n P)``
============== ============================================= ==================================

- ``sum_fwd``: per real tile the mix of a ``B x C`` weight tile with the ``C x b`` elements
  (``2BC`` per column), the elements as sums of ``F`` children, their ``exp`` and the rescale
  of the ``B`` accumulators; a ``log`` per written row. Words: the tiles' weights, ``F``
  children rows per element of each tile, the rows written.
- ``sum_bwd``: per tile the weight gradients (a ``B x C`` dot over the batch) and the tile's
  elements recomputed; with ``scatter`` (lone blocks) the element flows too (a second dot and
  ``F`` children per element, their flow rows written: the bracketed terms); without
  ``ratio`` the flow ratios recomputed (``2B``). Words: the weights read and their gradients
  written, the children rows, the ratio rows (``r = 1``) or value and flow rows (``r = 2``).
- ``sum_eflow``: per tile of each sibling the transposed mix of its ratios; per element chunk
  of each group the elements recomputed and their flows scattered to ``F`` children.
- ``em_update`` is no launch of the schedule: the weight update that follows the backward pass
  of an EM step, a group sum and a normalization per weight (``W``, tied weights once per
  read) and per input parameter. The EM step is the forward, the backward and the update.

Exp and log count one FLOP each; padding children are counted as read (an upper bound), and
caches are ignored (every read goes to memory). :func:`launch_cost` is the one place these
formulas live.

Example::

    for ln in sched.forward:
        print(ln.title(), launch_cost(sched, ln))
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pccc.ir.errors import PcccError
from pccc.ir.schedule import KernelSchedule, Launch, SumPart

#: the batch columns costs are counted for unless told
BATCH = 512
#: bytes of a device value (float32) and of an index entry (int32)
WORD = 4


@dataclass(frozen=True)
class Cost:
    """FLOPs and bytes of one launch or of several."""

    flops: int = 0
    bytes: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.flops + other.flops, self.bytes + other.bytes)


def total(costs: Iterable[Cost]) -> Cost:
    """The sum of ``costs``."""
    out = Cost()
    for c in costs:
        out = out + c
    return out


def _sum_cost(kind: str, p: SumPart, ln: Launch, b: int) -> tuple[int, int]:
    """(FLOPs, words) of a sum part's launch (the module docstring's table)."""
    B, C, F, T, K, nb = p.B, p.C, p.fanin, p.tiles, p.chunks, p.nb
    if kind == "sum_fwd":
        return (b * (T * (2 * B * C + C * F + C + B) + nb * B),
                T * B * C + b * T * C * F + b * nb * B)
    if kind == "flow_ratio":
        return 2 * b * nb * B, 3 * b * nb * B
    if kind == "sum_eflow":
        return (b * (2 * T * B * C + K * C * (2 * F + 2)),
                T * B * C + b * T * B + 2 * b * K * C * F)
    per = 2 * B * C + C * F + C  # sum_bwd
    words = 2 * T * B * C + b * T * C * F + b * T * B * (1 if ln.ratio else 2)
    if ln.scatter:
        per += 2 * B * C + C * F
        words += b * T * C * F
    if not ln.ratio:
        per += 2 * B
    return b * T * per, words


def launch_cost(s: KernelSchedule, ln: Launch, batch: int = BATCH) -> Cost:
    """The predicted FLOPs and bytes of launch ``ln`` of ``s`` over ``batch`` columns (the
    module docstring's table).

    Raises:
        PcccError: an unknown kind, or a part or input layer the schedule does not have.
    """
    b = batch
    if ln.kind in ("sum_fwd", "flow_ratio", "sum_eflow", "sum_bwd"):
        if not 0 <= ln.part < len(s.parts):
            raise PcccError(f"{ln.title()}: no such part (the schedule has {len(s.parts)})")
        flops, words = _sum_cost(ln.kind, s.parts[ln.part], ln, b)
    elif ln.kind in ("input_fwd", "input_bwd", "input_cat_dot"):
        if not 0 <= ln.input < len(s.inputs):
            raise PcccError(f"{ln.title()}: no such input layer (the schedule has "
                            f"{len(s.inputs)})")
        n, P = s.inputs[ln.input].n, s.inputs[ln.input].param_size
        if ln.kind == "input_cat_dot":
            flops, words = 2 * n * P * b, 2 * n * b + n * P
        else:
            flops, words = n * b, 3 * n * b
    elif ln.kind == "flow_zero":
        rows = s.num_node_slots + 1 if s.flow_zero is None else int(s.flow_zero[:, 1].sum())
        flops, words = 0, b * rows
    elif ln.kind == "root_flows":
        flops, words = 0, b * s.num_roots
    else:
        raise PcccError(f"no cost model for launch kind {ln.kind!r}")
    return Cost(flops, WORD * words)


def em_update_cost(s: KernelSchedule) -> Cost:
    """The weight update of an EM step (not a launch of the schedule: see the module
    docstring): 5 FLOPs and 4 words per weight and per input parameter."""
    n = sum(p.weights for p in s.parts) + sum(r.n * r.param_size for r in s.inputs)
    return Cost(5 * n, WORD * 4 * n)


def pass_costs(s: KernelSchedule, batch: int = BATCH) -> dict[str, Cost]:
    """The totals of ``forward``, ``backward``, ``em_update`` and ``em_step`` (forward,
    backward and update)."""
    fwd = total(launch_cost(s, ln, batch) for ln in s.forward)
    bwd = total(launch_cost(s, ln, batch) for ln in s.backward)
    em = em_update_cost(s)
    return {"forward": fwd, "backward": bwd, "em_update": em, "em_step": fwd + bwd + em}


def part_bytes(p: SumPart) -> tuple[int, int]:
    """(index table bytes, weight bytes) a part's blocks read: ``node_start`` and
    ``num_chunks`` per block, ``chunk_start`` and ``param_start`` per block and chunk (padding
    included), ``sib`` per entry; the real tiles' ``B x C`` weights."""
    index = p.nb * (2 + 2 * p.NC) + p.groups * p.G
    return WORD * index, WORD * p.tiles * p.B * p.C


def fmt_count(n: float, unit: str) -> str:
    """``812 FLOP``, ``4.1 kFLOP``, ``1.2 MFLOP``, ``3.0 GFLOP``, ``7.5 TFLOP``."""
    for prefix in ("", "k", "M", "G", "T"):
        if n < 1000 or prefix == "T":
            return f"{int(n)} {unit}" if not prefix else f"{n:.1f} {prefix}{unit}"
        n /= 1000
    raise AssertionError
