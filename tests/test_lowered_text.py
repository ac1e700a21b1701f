"""L1, L2 and L3 text: print and parse round trips (inline, sidecar ``.npz``, elided), located
parse errors, and the verifiers of each level."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pccc.ir import ParseError, VerifyError
from pccc.ir.blocked import BlockedCircuit, verify_blocked
from pccc.ir.layered import Layer, LayeredCircuit, ProductGroup, verify_layered
from pccc.ir.parse_lowered import parse_any
from pccc.ir.plan_verify import verify_plan
from pccc.ir.print_lowered import lowered_text_npz, write_pcir_any
from pccc.ir.printer import to_text
from pccc.passes import run_pipeline
from tests.strategies import circuits

STAGES = ["canonicalize,group-blocks{block-size=4,min-block=2,tolerance=0.5}",
          "partition-layers", "layout-params"]


def _levels(c):
    out, ir = [], c
    for stage in STAGES:
        ir = run_pipeline(ir, stage)
        out.append(ir)
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_print_parse_round_trip_at_every_level(data, tmp_path_factory):
    c = data.draw(circuits(max_vars=4, max_n=3, dists=("indicator", "categorical", "gaussian")))
    folder = tmp_path_factory.mktemp("rt")
    for ir in _levels(c):
        text = to_text(ir)
        back = parse_any(text)
        assert back == ir
        assert to_text(back) == text
        side, arrays = lowered_text_npz(ir, "side.npz")
        np.savez(folder / "side.npz", **arrays)
        assert parse_any(side, base_dir=folder) == ir
        elided = to_text(ir, elide_above=2)
        shape_only = parse_any(elided, allow_elided=True)
        assert shape_only.level == ir.level
        if "elided" in elided:
            with pytest.raises(ParseError, match="elided"):
                parse_any(elided)


def test_write_pcir_any_picks_inline_or_sidecar(tmp_path):
    from pccc.ir import CircuitBuilder

    b = CircuitBuilder(rng=0)
    x = [b.input(v, "categorical", n=32, card=8) for v in range(2)]
    c = b.build(b.sum([b.sum([b.product(x)], n=32)], n=1))
    for ir in _levels(c):
        write_pcir_any(ir, tmp_path / f"{ir.level}.pcir", inline_below=100)
        assert (tmp_path / f"{ir.level}.npz").exists()
        back = parse_any((tmp_path / f"{ir.level}.pcir").read_text(), base_dir=tmp_path)
        assert back == ir


@pytest.mark.parametrize("text, where", [
    ("pcir 1 L1\ncircuit num_vars=1 root=%0\n%0 = input bernoulli n=1 var=0\nblocks B=1 [%0]\n",
     "4:1: missing attribute 'C'"),
    ("pcir 1 L2\ncircuit num_vars=1\n%0 = input bernoulli n=1 var=0\nlayer 1\n",
     "4:7: expected layer 0, got 1"),
    ("pcir 1 L2\ncircuit num_vars=1\n%0 = input bernoulli n=1 var=0\nlayer 0\n  sums B=1 C=1 "
     "[3]\n", "5:16: expected a list of sum vectors"),
    ("pcir 1 L3\nplan num_node_slots=1 num_vars=0 reserved_params=1 root_slot=0 version=1\n"
     "var_cards i64[2] = [1]\n", "3:20: array of shape (1,), declared (2,)"),
    ("pcir 1 L3\nplan num_node_slots=1 num_vars=0 reserved_params=1 root_slot=0 version=9\n",
     "plan version 9"),
])
def test_parse_errors_carry_a_location(text, where):
    with pytest.raises(ParseError, match=where.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[")):
        parse_any(text, file="x.pcir")


def _small_levels():
    from pccc.ir import CircuitBuilder

    b = CircuitBuilder(rng=2)
    x = [b.input(v, "categorical", n=2, card=3) for v in range(3)]
    p = b.product([b.sum([x[0]], n=2), x[1]])
    return _levels(b.build(b.sum([b.product([b.sum([p], n=2), x[2]])], n=1)))


def test_verifiers_catch_broken_lowered_ir():
    l1, l2, plan = _small_levels()
    verify_blocked(l1)
    verify_layered(l2)
    verify_plan(plan)
    some = next(iter(l1.blocks))
    with pytest.raises(VerifyError, match="without a block shape"):
        verify_blocked(BlockedCircuit(l1.circuit, {k: v for k, v in l1.blocks.items()
                                                   if k != some}))
    swapped = LayeredCircuit(l2.blocked, tuple(reversed(l2.layers)))
    with pytest.raises(VerifyError, match="reads %"):
        verify_layered(swapped)
    first = l2.layers[0]
    short = Layer(first.sums, (ProductGroup(1, 99),))
    with pytest.raises(VerifyError, match="cover"):
        verify_layered(LayeredCircuit(l2.blocked, (short,) + l2.layers[1:]))
    with pytest.raises(VerifyError, match="root slot"):
        verify_plan(dataclasses.replace(plan, root_slot=plan.num_node_slots + 3))
    sl = plan.layers[1]
    part = sl.partitions[0]
    bad = dataclasses.replace(part, chunk_start=part.chunk_start + 10_000)
    layers = list(plan.layers)
    layers[1] = dataclasses.replace(sl, partitions=(bad,) + sl.partitions[1:])
    with pytest.raises(VerifyError, match="chunk_start"):
        verify_plan(dataclasses.replace(plan, layers=tuple(layers)))
