"""The L4 verifier: a schedule's launches are well formed and its row accesses are ordered.

:func:`verify_schedule` checks, in this order:

- **structure**: every launch kind is one of its pass, names an existing part or input layer,
  and a kernel named after its part's shape; tiles are powers of two; each part's sibling
  table indexes its blocks once each; the parts of one partition never share a block;
- **launches per part**: one ``sum_fwd`` and one ``sum_bwd``; ``sum_eflow`` exactly where the
  part has sibling groups, after its ``sum_bwd`` (the last launch that reads the children's
  values writes their flows: see :func:`pccc.ir.schedule.flows_in_nodes`), with the part's
  write mode; a ``flow_ratio`` before any kernel that
  reads its ratios; each input layer launched once forward and once backward;
- **node rows, forward**: every row a launch reads (``kids`` of a ``sum_fwd``) is written by an
  earlier launch (rows 0 and ``NEG`` hold their constants from the start), no row is written
  twice, and the root rows are written;
- **flow rows, backward**: a stored row has one write in the whole pass; a row added to is
  zeroed by an earlier ``flow_zero``; no row is written after a launch read it (its flow is
  complete before it is read).

Errors name the launch (``backward launch 7 (sum_eflow part 3)``) or the part.

Example::

    verify_schedule(sched)   # raises VerifyError
"""

from __future__ import annotations

import numpy as np

from pccc.ir.errors import VerifyError
from pccc.ir.schedule import (
    BACKWARD_KINDS,
    FORWARD_KINDS,
    INPUT_KINDS,
    PART_KINDS,
    WRITE_MODES,
    KernelSchedule,
    Launch,
    SumPart,
)

_TILE_FIELDS = ("bt", "bn", "kt")


def _where(section: str, i: int, ln: Launch) -> str:
    return f"{section} launch {i} ({ln.title()})"


def _check_launch(s: KernelSchedule, section: str, i: int, ln: Launch) -> None:
    where = _where(section, i, ln)
    kinds = FORWARD_KINDS if section == "forward" else BACKWARD_KINDS
    if ln.kind not in kinds:
        raise VerifyError(f"{where}: kind {ln.kind!r} is not a {section} launch")
    if ln.kind in PART_KINDS:
        if not 0 <= ln.part < len(s.parts):
            raise VerifyError(f"{where}: no part {ln.part} ({len(s.parts)} parts)")
        p = s.parts[ln.part]
        want = "flow_ratio" if ln.kind == "flow_ratio" else p.kernel(ln.kind)
        if ln.kernel != want:
            raise VerifyError(f"{where}: kernel {ln.kernel!r}, the part's shape needs {want!r}")
    elif ln.part >= 0:
        raise VerifyError(f"{where}: a {ln.kind} launch names no part")
    if ln.kind in INPUT_KINDS:
        if not 0 <= ln.input < len(s.inputs):
            raise VerifyError(f"{where}: no input layer {ln.input} ({len(s.inputs)} layers)")
    elif ln.input >= 0:
        raise VerifyError(f"{where}: a {ln.kind} launch names no input layer")
    for name in _TILE_FIELDS:
        v = getattr(ln, name)
        if v and v & (v - 1) or v < 0:
            raise VerifyError(f"{where}: {name}={v} is not a power of two")
    if ln.kind in ("input_fwd", "input_bwd", "input_cat_dot", "sum_fwd", "sum_eflow",
                   "sum_bwd", "flow_ratio") and ln.bt < 1:
        raise VerifyError(f"{where}: no column tile (bt)")


def _check_part(s: KernelSchedule, i: int, p: SumPart) -> None:
    where = f"part {i} ({p.tag})"
    if p.write not in WRITE_MODES:
        raise VerifyError(f"{where}: write mode {p.write!r} (modes: {', '.join(WRITE_MODES)})")
    if p.nb == 0 or p.sib.ndim != 2 or p.sib.shape[1] < 1:
        raise VerifyError(f"{where}: no blocks, or a sibling table of shape {p.sib.shape}")
    live = p.sib[p.sib >= 0]
    if p.sib.min() < -1 or (len(live) and live.max() >= p.nb):
        raise VerifyError(f"{where}: its sibling table indexes blocks outside 0..{p.nb - 1}")
    if len(live) != p.nb or len(np.unique(live)) != p.nb:
        raise VerifyError(f"{where}: its sibling table holds {len(live)} entries for "
                          f"{p.nb} blocks (each block once)")
    if (p.sib[:, 0] < 0).any():
        raise VerifyError(f"{where}: a sibling group starts with padding")
    if p.layer > 0 and i and s.parts[i - 1].layer > p.layer:
        raise VerifyError(f"{where}: sum layer {p.layer} after layer {s.parts[i - 1].layer}")
    if p.rows.ndim != 2 or p.rows.shape[1] != 2 or p.kids.ndim != 2 or p.kids.shape[1] != 3:
        raise VerifyError(f"{where}: rows must be [k, 2] and kids [m, 3] runs")
    if not (0 <= p.chunks <= p.tiles <= p.nb * p.NC and 0 <= p.weights <= p.tiles * p.B * p.C):
        raise VerifyError(f"{where}: counts tiles={p.tiles} chunks={p.chunks} "
                          f"weights={p.weights} out of range (chunks <= tiles <= {p.nb} blocks "
                          f"x {p.NC} chunks, weights <= tiles x {p.B * p.C})")


def _check_blocks(s: KernelSchedule) -> None:
    seen: dict[tuple[int, int], tuple[int, np.ndarray]] = {}
    for i, p in enumerate(s.parts):
        key = (p.layer, p.partition)
        if key in seen:
            j, blocks = seen[key]
            both = np.intersect1d(blocks, p.blocks)
            if len(both):
                raise VerifyError(f"part {i} ({p.tag}): block {int(both[0])} of layer "
                                  f"{p.layer} partition {p.partition} is part {j}'s too")
            seen[key] = (i, np.concatenate([blocks, p.blocks]))
        else:
            seen[key] = (i, p.blocks)


def _check_backward_launch(s: KernelSchedule, i: int, ln: Launch,
                           count: dict[str, list[int]]) -> None:
    """A part's backward launch against the part and the part's launches before it."""
    p = s.parts[ln.part]
    where = _where("backward", i, ln)
    if ln.kind in ("sum_eflow", "sum_bwd") and count["sum_eflow"][ln.part]:
        raise VerifyError(f"{where}: after the part's sum_eflow")
    if ln.kind == "sum_eflow" and p.G == 1:
        raise VerifyError(f"{where}: the part has no sibling groups")
    if ln.kind == "sum_bwd" and ln.scatter != (p.G == 1):
        raise VerifyError(f"{where}: scatter={str(ln.scatter).lower()}, but the part "
                          f"{'has' if p.G > 1 else 'has no'} sibling groups")
    if ln.kind == "sum_eflow" and not count["sum_bwd"][ln.part]:
        raise VerifyError(f"{where}: before the part's sum_bwd, which reads the children's "
                          f"values that the element flows may replace")
    if (ln.kind == "sum_eflow" or ln.kind == "sum_bwd" and ln.ratio) \
            and not count["flow_ratio"][ln.part]:
        raise VerifyError(f"{where}: reads flow ratios no flow_ratio launch made")
    if ln.kind in ("sum_eflow", "sum_bwd") and ln.atomic != (p.write == "atomic"):
        raise VerifyError(f"{where}: atomic={str(ln.atomic).lower()} for a part whose "
                          f"element flows are {p.write}")


def _check_part_launches(s: KernelSchedule) -> None:
    """One forward and one backward kernel per part; eflow where it has sibling groups;
    ratios made before they are read; each input layer launched both ways."""
    for section, launches in (("forward", s.forward), ("backward", s.backward)):
        for i, ln in enumerate(launches):
            _check_launch(s, section, i, ln)
    count = {k: [0] * len(s.parts) for k in PART_KINDS}
    for i, ln in enumerate(s.backward):
        if ln.kind in PART_KINDS:
            _check_backward_launch(s, i, ln, count)
            count[ln.kind][ln.part] += 1
    for ln in s.forward:
        if ln.kind == "sum_fwd":
            count["sum_fwd"][ln.part] += 1
    for kind, per in count.items():
        for j, n in enumerate(per):
            if n > 1 or (n == 0 and (kind in ("sum_fwd", "sum_bwd") or
                                     kind == "sum_eflow" and s.parts[j].G > 1)):
                raise VerifyError(f"part {j} ({s.parts[j].tag}): {n} {kind} launches "
                                  f"(one expected)")
    for section, kinds in (("forward", ("input_fwd",)),
                           ("backward", ("input_bwd", "input_cat_dot"))):
        launches = s.forward if section == "forward" else s.backward
        got = sorted(ln.input for ln in launches if ln.kind in kinds)
        if got != list(range(len(s.inputs))):
            raise VerifyError(f"{section}: input layers launched {got}, expected each of "
                              f"0..{len(s.inputs) - 1} once")


def _expand(runs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, writes)`` of ``(first, count[, writes])`` runs."""
    runs = np.asarray(runs, np.int64)
    if not len(runs):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    count = runs[:, 1]
    k = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    rows = np.repeat(runs[:, 0], count) + k
    writes = np.repeat(runs[:, 2], count) if runs.shape[1] > 2 else np.ones(len(rows), np.int64)
    return rows, writes


def _in_range(s: KernelSchedule, rows: np.ndarray, what: str) -> None:
    bad = rows[(rows < 1) | (rows >= s.num_node_slots)]
    if len(bad):
        raise VerifyError(f"{what}: row {int(bad[0])} is outside the node rows 1.."
                          f"{s.num_node_slots - 1}")


def _forward_rows(s: KernelSchedule) -> None:
    writer = np.full(s.num_node_slots + 1, -2, np.int64)  # -2: unwritten, -1: a constant
    writer[[0, s.neg]] = -1
    for i, ln in enumerate(s.forward):
        where = _where("forward", i, ln)
        if ln.kind == "input_fwd":
            inp = s.inputs[ln.input]
            rows = np.arange(inp.node_start, inp.node_start + inp.n)
        else:
            p = s.parts[ln.part]
            read, _ = _expand(p.kids)
            _in_range(s, read, where)
            unset = read[writer[read] == -2]
            if len(unset):
                raise VerifyError(f"{where}: reads node row {int(unset[0])} before any launch "
                                  f"writes it")
            rows, _ = _expand(p.rows)
        _in_range(s, rows, where)
        again = rows[writer[rows] != -2]
        if len(again):
            r = int(again[0])
            by = "holds a constant" if writer[r] == -1 else f"forward launch {writer[r]} " \
                 "wrote it"
            raise VerifyError(f"{where}: writes node row {r} a second time ({by})")
        writer[rows] = i
    roots = np.arange(s.root_slot, s.root_slot + s.num_roots)
    if (writer[roots] < 0).any():
        raise VerifyError(f"forward: root row {int(roots[writer[roots] < 0][0])} is never "
                          f"written")


class _Flows:
    """The backward pass's flow rows: who zeroed, stored, added and read each."""

    def __init__(self, s: KernelSchedule):
        n = s.num_node_slots + 1
        self.s = s
        self.zeroed = np.full(n, -1, np.int64)
        self.stored = np.full(n, -1, np.int64)
        self.added = np.full(n, -1, np.int64)
        self.read = np.full(n, -1, np.int64)

    def write(self, where: str, i: int, rows: np.ndarray, writes: np.ndarray, atomic: bool
              ) -> None:
        late = rows[self.read[rows] >= 0]
        if len(late):
            r = int(late[0])
            raise VerifyError(f"{where}: writes flow row {r} after backward launch "
                              f"{self.read[r]} read it")
        if atomic:
            cold = rows[self.zeroed[rows] < 0]
            if len(cold):
                raise VerifyError(f"{where}: adds to flow row {int(cold[0])}, which no earlier "
                                  f"flow_zero zeroes")
            mixed = rows[self.stored[rows] >= 0]
            if len(mixed):
                r = int(mixed[0])
                raise VerifyError(f"{where}: adds to flow row {r}, which backward launch "
                                  f"{self.stored[r]} stores")
            self.added[rows] = i
            return
        twice = rows[(writes > 1) | (self.stored[rows] >= 0) | (self.added[rows] >= 0)]
        if len(twice):
            r = int(twice[0])
            other = self.stored[r] if self.stored[r] >= 0 else self.added[r]
            by = f"backward launch {other} writes it too" if other >= 0 else \
                "the launch writes it more than once"
            raise VerifyError(f"{where}: stores flow row {r}, which has another writer ({by})")
        self.stored[rows] = i

    def reads(self, i: int, rows: np.ndarray) -> None:
        first = self.read[rows] < 0
        self.read[rows[first]] = i


def _backward_rows(s: KernelSchedule) -> None:
    f = _Flows(s)
    for i, ln in enumerate(s.backward):
        where = _where("backward", i, ln)
        if ln.kind == "flow_zero":
            if s.flow_zero is None:
                f.zeroed[:] = i
            else:
                rows, _ = _expand(s.flow_zero)
                _in_range(s, rows, where)
                f.zeroed[rows] = i
        elif ln.kind == "root_flows":
            roots = np.arange(s.root_slot, s.root_slot + s.num_roots)
            f.write(where, i, roots, np.ones(len(roots), np.int64), False)
        elif ln.kind in INPUT_KINDS:
            inp = s.inputs[ln.input]
            f.reads(i, np.arange(inp.node_start, inp.node_start + inp.n))
        else:
            p = s.parts[ln.part]
            if ln.kind == "flow_ratio" or ln.kind == "sum_bwd":
                f.reads(i, _expand(p.rows)[0])
            if ln.kind == "sum_eflow" or (ln.kind == "sum_bwd" and ln.scatter):
                rows, writes = _expand(p.kids)
                f.write(where, i, rows, writes, ln.atomic)
    if s.flow_zero is not None and not any(ln.kind == "flow_zero" for ln in s.backward) \
            and len(s.flow_zero):
        raise VerifyError("backward: flow rows to zero but no flow_zero launch")


def verify_schedule(s: KernelSchedule) -> None:
    """Check a schedule (see the module docstring).

    Raises:
        VerifyError: the first problem found, naming the launch or the part.
    """
    if s.programs < 1 or s.stride_tile < 1:
        raise VerifyError(f"schedule: programs={s.programs}, stride_tile={s.stride_tile} "
                          "must be positive")
    for i, p in enumerate(s.parts):
        _check_part(s, i, p)
    _check_blocks(s)
    _check_part_launches(s)
    _forward_rows(s)
    _backward_rows(s)
