"""L4 ``KernelSchedule``: a backend's kernel launches for one L3 plan, as a value.

The Triton backend lowers a :class:`~pccc.ir.plan.KernelPlan` into the kernels it launches
(pass ``schedule-kernels``); the schedule states every choice it made, and the device runtime
(:class:`pccc.backends.triton.runtime.DevicePlan`) carries it out with no choice of its own.

**Sum parts.** Each sum partition of the plan is cut into :class:`SumPart` s: its blocks
grouped by kernel shape ``(B, C, fan-in, chunks)`` (one compiled kernel per shape), then into
lone blocks and *sibling groups* (blocks that read the same elements: the row blocks of one sum
vector). A part with sibling groups gets its element flows summed over each group and
scattered once (``sum_eflow``); a part of lone blocks scatters them in its backward kernel
(``sum_bwd``). A *small* part (few weights) keeps all its blocks as lone blocks: one backward
launch. Element flows are **stored** into the node-flow rows of the children where every such
row has one writer in the whole backward pass, else **added atomically** into rows the pass
zeroes first (``flow_zero``: those rows as ``(first, count)`` tiles, or ``all``).

**Launches.** ``forward`` and ``backward`` list the launches in order. Each names its kernel,
its part (``part``) or input layer (``input``) and its tiles: ``bt`` batch columns per program
(``fill > 0``: halved, down to 16, while ``fill * ceil(width / bt) < programs`` for a buffer of
``width`` columns, so launches too small for the card get more programs), ``bn`` rows per
program, ``warps`` (0: Triton's default), ``max_splits`` (backward kernels: the batch tiles are
split among at most this many programs per block, never more than there are tiles). Kinds:

- forward: ``input_fwd`` (an input layer's log-probabilities), ``sum_fwd`` (a part's nodes,
  its product layer fused in);
- backward: ``flow_zero`` (zero the flow rows atomics add to), ``root_flows`` (flow 1, or the
  caller's, into the root rows), ``flow_ratio`` (a part's flow ratios into scratch),
  ``sum_eflow`` (a part's element flows, summed per sibling group, into its children's rows),
  ``sum_bwd`` (a part's weight gradients and EM flows; ``scatter``: its element flows too;
  ``ratio``: reads the ratios ``flow_ratio`` made), ``input_bwd`` (an input layer's statistics
  by atomics), ``input_cat_dot`` (categorical statistics as one-hot GEMMs over runs of ``nb``
  nodes of one variable, ``kt`` values per tile).

**Counts.** Each part states what its text's comments and the cost model
(:mod:`pccc.ir.schedule_cost`) need beyond its arrays: ``tiles`` (its blocks' real tiles),
``chunks`` (element chunks computed once per sibling group) and ``weights`` (the real tiles'
entries that hold a weight); each input layer its ``param_size``. :mod:`pccc.ir.summary`
prints them for ``pccc info``.

**Slots.** Each part lists the node rows its blocks write (``rows``, ``(first, count)`` runs:
the forward writes them, the backward reads their flows) and the node rows its elements read
(``kids``, ``(first, count, writes)`` runs: the forward reads them; the backward scatters
element flows into them, ``writes`` times per row and pass). Row ``num_node_slots`` (``NEG``)
holds ``-inf`` and row 0 log 1: no forward writes them. Where every row has one writer
(:meth:`KernelSchedule.flows_in_nodes`) a backward may keep the flows in the node rows.
:func:`pccc.ir.schedule_verify.verify_schedule` checks that every row is written before it is
read, that no stored row has a second writer, and that every row added to is zeroed first.

Example::

    from pccc.passes import run_pipeline
    sched = run_pipeline(plan, "schedule-kernels{programs=528}")
    print(pccc.ir.to_text(sched))
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from pccc.ir.plan import ValueEq, _ro

SCHEDULE_VERSION = 1

#: launch kinds of the forward and of the backward pass
FORWARD_KINDS = ("input_fwd", "sum_fwd")
BACKWARD_KINDS = ("flow_zero", "root_flows", "flow_ratio", "sum_eflow", "sum_bwd", "input_bwd",
                  "input_cat_dot")
#: kinds that name a sum part (``part=``) and kinds that name an input layer (``input=``)
PART_KINDS = ("sum_fwd", "flow_ratio", "sum_eflow", "sum_bwd")
INPUT_KINDS = ("input_fwd", "input_bwd", "input_cat_dot")
#: element flows of a part: stored (each child row has one writer) or added atomically
WRITE_MODES = ("store", "atomic")
#: the fan-in up to which blocks share one kernel (children loads unrolled; padding skipped)
NARROW = 8


def shape_tag(B: int, C: int, fanin: int, NC: int | None) -> str:
    """The name suffix of a sum kernel shape: ``b32_c32_f2_n4`` (``b32_c32_f2`` without
    ``NC``)."""
    return f"b{B}_c{C}_f{fanin}" + ("" if NC is None else f"_n{NC}")


def sum_kernel(kind: str, B: int, C: int, fanin: int, NC: int) -> str:
    """The kernel a part's launch of ``kind`` names: ``sum_fwd_b32_c32_f2_n4``, whose loop over
    the chunks has a compile-time bound; the backward kernels (``sum_bwd_b32_c32_f2``,
    ``sum_eflow_...``) take a chunk per program and read ``NC`` (their chunk tables' row
    length) at run time, so parts that differ only in it share them."""
    return f"{kind}_{shape_tag(B, C, fanin, NC if kind == 'sum_fwd' else None)}"


@dataclass(frozen=True, eq=False)
class InputRows(ValueEq):
    """The node rows an input layer writes: ``node_start .. node_start + n - 1``."""

    node_start: int
    """first node row"""
    n: int
    """nodes of the layer"""
    param_size: int
    """parameters per node"""


@dataclass(frozen=True, eq=False)
class SumPart(ValueEq):
    """Blocks of one sum partition that run as one kernel of one shape."""

    layer: int
    """sum layer (0 for the first sum layer of the plan)"""
    partition: int
    """partition of that layer"""
    B: int
    """rows per block"""
    C: int
    """elements per chunk"""
    fanin: int
    """children read per element (the most any element of the blocks has)"""
    NC: int
    """chunks per block, padding included"""
    blocks: np.ndarray
    """int64 ``[nb]``: the partition's blocks that this part runs"""
    sib: np.ndarray
    """int64 ``[groups, G]``: indices into ``blocks`` of each sibling group (-1: padding);
    ``G == 1``: lone blocks"""
    small: bool
    """few weights: lone blocks, flow ratios inline where at most two chunks"""
    write: str
    """element flows ``store`` d or added (``atomic``)"""
    em_store: bool
    """its EM flows may be stored (not added) after an EM step: its backward programs hold
    whole batches and none of its weights is another chunk's too"""
    rows: np.ndarray
    """int64 ``[k, 2]``: ``(first, count)`` runs of the node rows its blocks write"""
    kids: np.ndarray
    """int64 ``[m, 3]``: ``(first, count, writes)`` runs of the node rows its elements read"""
    tiles: int
    """real tiles of its blocks (chunks that hold elements; padding chunks are skipped)"""
    chunks: int
    """element chunks computed once per sibling group (lone blocks: ``tiles``)"""
    weights: int
    """entries of its real tiles that hold a weight (a tied weight once per read)"""

    def __post_init__(self) -> None:
        for name in ("blocks", "sib", "rows", "kids"):
            object.__setattr__(self, name, _ro(getattr(self, name)))

    @property
    def tag(self) -> str:
        return shape_tag(self.B, self.C, self.fanin, self.NC)

    def kernel(self, kind: str) -> str:
        """The name of its kernel of launch kind ``kind`` (:func:`sum_kernel`)."""
        return sum_kernel(kind, self.B, self.C, self.fanin, self.NC)

    @property
    def nb(self) -> int:
        return int(self.blocks.shape[0])

    @property
    def G(self) -> int:
        """blocks per sibling group (1: lone blocks)"""
        return int(self.sib.shape[1])

    @property
    def groups(self) -> int:
        return int(self.sib.shape[0])

    def padding(self) -> float:
        """The share of its grid's entries (``nb x NC`` tiles of ``B x C``) that holds no
        weight, as in L3 (:mod:`pccc.ir.stats`)."""
        grid = self.nb * self.NC * self.B * self.C
        return 1.0 - self.weights / grid if grid else 0.0

    @property
    def wide(self) -> bool:
        """products wider than :data:`NARROW`: a loop over children, not unrolled code"""
        return self.fanin > NARROW

    @property
    def uses_dot(self) -> bool:
        """tensor-core tiles (both dimensions at least 16)"""
        return self.B >= 16 and self.C >= 16

    @property
    def transposed(self) -> bool:
        """the forward accumulates ``[BT, B]`` (tensor-core blocks under 64 rows)"""
        return self.uses_dot and self.B < 64


@dataclass(frozen=True)
class Launch:
    """One kernel launch (or host step) of a pass; see the module docstring for the kinds."""

    kind: str
    """one of :data:`FORWARD_KINDS` or :data:`BACKWARD_KINDS`"""
    part: int = -1
    """the sum part (kinds in :data:`PART_KINDS`)"""
    input: int = -1
    """the input layer (kinds in :data:`INPUT_KINDS`)"""
    kernel: str = ""
    """the generated module's function ("" for a host step)"""
    bt: int = 0
    """batch columns per program"""
    bn: int = 0
    """rows per program"""
    warps: int = 0
    """warps per program (0: Triton's default)"""
    fill: int = 0
    """programs per column tile for the fill rule (0: ``bt`` fixed)"""
    max_splits: int = 0
    """backward: most programs a block's batch tiles are split among"""
    nb: int = 0
    """``input_cat_dot``: nodes per run"""
    kt: int = 0
    """``input_cat_dot``: values per tile"""
    ratio: bool = False
    """``sum_bwd``: reads the ratios of a ``flow_ratio`` launch (else recomputes them)"""
    scatter: bool = False
    """``sum_bwd``: scatters the element flows itself"""
    atomic: bool = False
    """element flows added atomically (else stored)"""

    def attrs(self) -> dict[str, object]:
        """The fields that differ from their defaults, in declaration order (``kind`` aside)."""
        out: dict[str, object] = {}
        for f in fields(self)[1:]:
            v = getattr(self, f.name)
            if v != f.default:
                out[f.name] = v
        return out

    def title(self) -> str:
        """``sum_bwd part 3`` / ``input_fwd input 0`` / ``flow_zero``: for messages."""
        if self.part >= 0:
            return f"{self.kind} part {self.part}"
        if self.input >= 0:
            return f"{self.kind} input {self.input}"
        return self.kind


@dataclass(frozen=True, eq=False)
class KernelSchedule(ValueEq):
    """The L4 schedule of one plan for one backend; see the module docstring."""

    backend: str
    """the backend that runs it"""
    num_node_slots: int
    """node rows of the plan; row ``num_node_slots`` (NEG) holds ``-inf``"""
    root_slot: int
    """first root row"""
    num_roots: int
    """root rows"""
    precision: str
    """tile precision of the dot products"""
    programs: int
    """programs a launch aims for (the target's multiprocessors, 4 each)"""
    stride_tile: int
    """buffer widths are multiples of this many columns (every ``bt`` divides it)"""
    inputs: tuple[InputRows, ...]
    """per input layer of the plan, its node rows"""
    parts: tuple[SumPart, ...]
    """the sum parts, sum layer by sum layer"""
    flow_zero: np.ndarray | None
    """int64 ``[tiles, 2]`` ``(first, count)``: the flow rows a backward pass zeroes (the
    rows atomics add to); None: the whole buffer"""
    forward: tuple[Launch, ...]
    """the forward pass's launches, in order"""
    backward: tuple[Launch, ...]
    """the backward pass's launches, in order"""

    level = "L4"

    def __post_init__(self) -> None:
        if self.flow_zero is not None:
            object.__setattr__(self, "flow_zero", _ro(self.flow_zero))

    @property
    def neg(self) -> int:
        """the ``-inf`` row"""
        return self.num_node_slots

    def shapes(self) -> list[tuple[int, int, int, int]]:
        """The distinct sum kernel shapes ``(B, C, fanin, NC)``, sorted."""
        return sorted({(p.B, p.C, p.fanin, p.NC) for p in self.parts})

    def layer_parts(self) -> list[list[int]]:
        """Per sum layer, the indices of its parts in order."""
        out: list[list[int]] = []
        for i, p in enumerate(self.parts):
            while len(out) <= p.layer:
                out.append([])
            out[p.layer].append(i)
        return out

    @property
    def first_sum_row(self) -> int:
        """the first row past every input layer's (node rows below it are input nodes')"""
        return first_sum_row(self.inputs)

    def flows_in_nodes(self) -> bool:
        """Whether a backward pass may keep its flows in the node rows, over the values
        (the flow buffer then goes unused): :func:`one_writer_per_row`."""
        return one_writer_per_row(self.parts, self.inputs, self.num_node_slots,
                                  self.root_slot, self.num_roots)


def first_sum_row(inputs: tuple[InputRows, ...] | list[InputRows]) -> int:
    """The first node row past every input layer's."""
    return max([inp.node_start + inp.n for inp in inputs] + [1])


def one_writer_per_row(parts: tuple[SumPart, ...] | list[SumPart],
                       inputs: tuple[InputRows, ...] | list[InputRows], num_node_slots: int,
                       root_slot: int, num_roots: int) -> bool:
    """Whether every node row but row 0, ``NEG`` (``num_node_slots``) and the roots receives
    exactly one element flow in a backward pass, the roots none, and every input row lies
    below every sum row. A backward may then keep its flows in the node rows, over the
    values: the one writer of a row is the last launch to read its value (its parent part's
    ``sum_bwd``, or ``sum_eflow`` after it), and it reads the value just before it writes
    the flow: an input row takes the flow, a sum row ``log f - s``, all that its flow ratios
    need of both (``NEG``'s padding elements rewrite its ``-inf``)."""
    writes = np.zeros(num_node_slots + 1, np.int64)
    for p in parts:
        for first, count, w in p.kids:
            writes[first: first + count] += w
    want = np.ones_like(writes)
    want[[0, num_node_slots]] = 0
    want[root_slot: root_slot + num_roots] = 0
    sums = [int(p.rows[:, 0].min()) for p in parts if len(p.rows)]
    return bool(np.array_equal(writes, want)) and \
        first_sum_row(inputs) <= min(sums, default=num_node_slots)
