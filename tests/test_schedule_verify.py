"""The L4 verifier refuses hand-broken schedules with a message that names the launch or part,
and the parser refuses broken text with its line."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from pccc.ir import parse, to_text
from pccc.ir.errors import ParseError, VerifyError
from pccc.ir.schedule import KernelSchedule, Launch
from pccc.ir.schedule_verify import verify_schedule
from pccc.passes.schedule_kernels import schedule_kernels
from tests.test_schedule import _plan, _sibling_plan


@pytest.fixture(scope="module")
def sched() -> KernelSchedule:
    """Two sum layers; sibling groups and lone blocks; no small parts."""
    s = schedule_kernels(_sibling_plan(), small_part=0)
    verify_schedule(s)
    return s


@pytest.fixture(scope="module")
def shared() -> KernelSchedule:
    """A plan whose leaves 2 and 3 feed two products each: atomic parts and rows to zero."""
    from pccc.ir import CircuitBuilder
    from pccc.passes import compile_plan

    b = CircuitBuilder(rng=np.random.default_rng(0))
    leaves = [b.input(v, "categorical", n=32, card=5) for v in range(4)]
    left = b.sum([b.product([leaves[0], leaves[1]])], n=32)
    right = b.sum([b.product([leaves[2], leaves[3]]), b.product([leaves[3], leaves[2]])], n=32)
    s = schedule_kernels(compile_plan(b.build(b.sum([b.product([left, right])], n=1),
                                              num_vars=4)))
    assert s.flow_zero is not None and len(s.flow_zero)
    assert {p.write for p in s.parts} == {"store", "atomic"}
    return s


def _refused(s: KernelSchedule, pattern: str) -> str:
    with pytest.raises(VerifyError) as e:
        verify_schedule(s)
    assert re.search(pattern, str(e.value)), str(e.value)
    return str(e.value)


def _index(launches: tuple[Launch, ...], kind: str, part: int | None = None) -> int:
    return next(i for i, ln in enumerate(launches)
                if ln.kind == kind and (part is None or ln.part == part))


def test_child_backward_before_parent_scatter(sched: KernelSchedule) -> None:
    """The lower layer's backward moved to the front: its flows are read before the upper
    layer's element flows reach them."""
    bwd = list(sched.backward)
    low = [i for i, ln in enumerate(bwd) if ln.part >= 0 and sched.parts[ln.part].layer == 0]
    moved = [bwd[i] for i in low]
    rest = [ln for i, ln in enumerate(bwd) if i not in low]
    order = rest[:2] + moved + rest[2:]
    msg = _refused(dataclasses.replace(sched, backward=tuple(order)),
                   r"backward launch \d+ \((sum_eflow|sum_bwd) part \d+\): writes flow row \d+ "
                   r"after backward launch \d+ read it")
    assert "part" in msg


def test_store_to_a_shared_row(shared: KernelSchedule) -> None:
    """An atomic part switched to stores: a row with two writers stored."""
    i = next(i for i, p in enumerate(shared.parts) if p.write == "atomic")
    parts = list(shared.parts)
    parts[i] = dataclasses.replace(parts[i], write="store")
    bwd = tuple(dataclasses.replace(ln, atomic=False) if ln.part == i else ln
                for ln in shared.backward)
    _refused(dataclasses.replace(shared, parts=tuple(parts), backward=bwd),
             rf"\(sum_(eflow|bwd) part {i}\): stores flow row \d+, which has another writer")


def test_add_to_a_row_never_zeroed(shared: KernelSchedule) -> None:
    zero = np.asarray(shared.flow_zero)[1:]
    _refused(dataclasses.replace(shared, flow_zero=zero),
             r"adds to flow row \d+, which no earlier flow_zero zeroes")
    no_launch = tuple(ln for ln in shared.backward if ln.kind != "flow_zero")
    _refused(dataclasses.replace(shared, backward=no_launch), r"which no earlier flow_zero")


def test_zero_after_the_adds(shared: KernelSchedule) -> None:
    bwd = list(shared.backward)
    z = bwd.pop(_index(shared.backward, "flow_zero"))
    _refused(dataclasses.replace(shared, backward=tuple(bwd + [z])),
             r"adds to flow row \d+, which no earlier flow_zero zeroes")


def test_forward_reads_before_writes(sched: KernelSchedule) -> None:
    fwd = list(sched.forward)
    sums = [ln for ln in fwd if ln.kind == "sum_fwd"]
    order = [ln for ln in fwd if ln.kind != "sum_fwd"] + sums[::-1]
    _refused(dataclasses.replace(sched, forward=tuple(order)),
             r"forward launch \d+ \(sum_fwd part \d+\): reads node row \d+ before any launch "
             r"writes it")
    no_inputs = tuple(ln for ln in fwd if ln.kind != "input_fwd")
    _refused(dataclasses.replace(sched, forward=no_inputs), r"input layers launched \[\]")


def test_a_part_launched_twice(sched: KernelSchedule) -> None:
    fwd = sched.forward + (sched.forward[-1],)
    _refused(dataclasses.replace(sched, forward=fwd),
             rf"part {sched.forward[-1].part} \(b\d+_c\d+_f\d+_n\d+\): 2 sum_fwd launches")


def test_two_parts_write_one_row(sched: KernelSchedule) -> None:
    parts = list(sched.parts)
    parts[1] = dataclasses.replace(parts[1], rows=parts[0].rows)
    _refused(dataclasses.replace(sched, parts=tuple(parts)),
             r"\(sum_fwd part 1\): writes node row \d+ a second time \(forward launch \d+ "
             r"wrote it\)")


def test_structure_mutations(sched: KernelSchedule) -> None:
    g = next(i for i, p in enumerate(sched.parts) if p.G > 1)
    p = sched.parts[g]

    def with_part(**changes: object) -> KernelSchedule:
        parts = list(sched.parts)
        parts[g] = dataclasses.replace(p, **changes)
        return dataclasses.replace(sched, parts=tuple(parts))

    sib = p.sib.copy()
    sib[0, 0] = p.nb
    _refused(with_part(sib=sib), rf"part {g} .*indexes blocks outside 0..{p.nb - 1}")
    sib = p.sib.copy()
    sib[0, 1] = sib[0, 0]
    _refused(with_part(sib=sib), rf"part {g} .*entries for {p.nb} blocks")
    _refused(with_part(write="maybe"), r"write mode 'maybe'")
    other = next(i for i, q in enumerate(sched.parts)
                 if i != g and (q.layer, q.partition) == (p.layer, p.partition))
    _refused(with_part(blocks=sched.parts[other].blocks[:1].repeat(p.nb)),
             r"of layer \d+ partition \d+ is part \d+'s too|each block once")


def test_launch_mutations(sched: KernelSchedule) -> None:
    g = next(i for i, p in enumerate(sched.parts) if p.G > 1)

    def with_bwd(kind: str, **changes: object) -> KernelSchedule:
        bwd = list(sched.backward)
        i = _index(sched.backward, kind, g)
        bwd[i] = dataclasses.replace(bwd[i], **changes)
        return dataclasses.replace(sched, backward=tuple(bwd))

    _refused(with_bwd("sum_bwd", kernel="sum_bwd_b1_c1_f9"),
             rf"\(sum_bwd part {g}\): kernel 'sum_bwd_b1_c1_f9', the part's shape needs")
    _refused(with_bwd("sum_bwd", bt=48), r"bt=48 is not a power of two")
    _refused(with_bwd("sum_bwd", scatter=True), r"scatter=true, but the part has sibling")
    _refused(with_bwd("sum_eflow", atomic=not sched.backward[
        _index(sched.backward, "sum_eflow", g)].atomic), r"atomic=\w+ for a part whose")
    _refused(with_bwd("sum_bwd", part=len(sched.parts)), rf"no part {len(sched.parts)}")
    no_ratio = tuple(ln for ln in sched.backward if not (ln.kind == "flow_ratio"
                                                         and ln.part == g))
    _refused(dataclasses.replace(sched, backward=no_ratio),
             rf"\(sum_bwd part {g}\): reads flow ratios no flow_ratio launch made")
    no_eflow = tuple(ln for ln in sched.backward if not (ln.kind == "sum_eflow"
                                                         and ln.part == g))
    _refused(dataclasses.replace(sched, backward=no_eflow),
             rf"part {g} \(.*\): 0 sum_eflow launches \(one expected\)")
    bwd = list(sched.backward)
    i, j = _index(bwd, "sum_bwd", g), _index(bwd, "sum_eflow", g)
    bwd[i], bwd[j] = bwd[j], bwd[i]
    _refused(dataclasses.replace(sched, backward=tuple(bwd)),
             rf"\(sum_eflow part {g}\): before the part's sum_bwd, which reads the children's")
    fwd_in_bwd = sched.backward + (sched.forward[0],)
    _refused(dataclasses.replace(sched, backward=fwd_in_bwd),
             r"kind 'input_fwd' is not a backward launch")


def test_parse_errors_name_the_line() -> None:
    text = to_text(schedule_kernels(_plan("wide")))
    lines = text.splitlines()
    k = next(i for i, ln in enumerate(lines) if ln.strip().startswith("sum_bwd"))
    bad = "\n".join(lines[:k] + [lines[k].replace("sum_bwd", "sum_bwdx", 1)] + lines[k + 1:])
    with pytest.raises(ParseError, match=rf":{k + 1}:\d+: unknown backward launch 'sum_bwdx'"):
        parse(bad)
    bad = "\n".join(lines[:k] + [lines[k] + " splits=3"] + lines[k + 1:])
    with pytest.raises(ParseError, match=rf":{k + 1}:\d+: unknown launch attribute 'splits'"):
        parse(bad)
    j = next(i for i, ln in enumerate(lines) if ln.startswith("part 1"))
    bad = "\n".join(lines[:j] + [lines[j].replace("part 1", "part 2", 1)] + lines[j + 1:])
    with pytest.raises(ParseError, match=rf":{j + 1}:\d+: part 2 out of order"):
        parse(bad)
