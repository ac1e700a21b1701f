"""Value equality at every level: ``==`` compares values (never identity), ``hash`` agrees
with it, and a text parses back to an equal value: ``parse(to_text(x)) == x``."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from pccc.ir import parse, to_text
from pccc.passes import run_pipeline
from tests.strategies import circuits

STAGES = ["canonicalize,group-blocks{block-size=4,min-block=2,tolerance=0.5}",
          "partition-layers", "layout-params"]


def _levels(c):
    out, ir = [c], c
    for stage in STAGES:
        ir = run_pipeline(ir, stage)
        out.append(ir)
    return out


@given(data=st.data())
def test_parse_of_text_equals_the_value_at_every_level(data):
    c = data.draw(circuits(max_vars=4, max_n=3, dists=("indicator", "categorical", "gaussian")))
    for ir in _levels(c):
        back = parse(to_text(ir))
        assert back is not ir
        assert back == ir and not back != ir
        assert hash(back) == hash(ir)
        assert len({back, ir}) == 1


def _plan():
    from pccc.ir import CircuitBuilder

    b = CircuitBuilder(rng=1)
    x = [b.input(v, "categorical", n=2, card=3) for v in range(2)]
    return _levels(b.build(b.sum([b.product(x)], n=1)))[-1]


def test_plans_differ_in_any_array_or_field():
    plan = _plan()
    same = parse(to_text(plan))
    assert same == plan
    params = plan.params.copy()
    params[-1] += 0.5
    assert dataclasses.replace(plan, params=params) != plan
    assert dataclasses.replace(plan, meta=()) != plan
    sl = plan.layers[1]
    part = sl.partitions[0]
    moved = dataclasses.replace(part, node_start=part.node_start + 1)
    layers = (plan.layers[0], dataclasses.replace(sl, partitions=(moved,)))
    assert dataclasses.replace(plan, layers=layers) != plan
    pmap = {k: v for k, v in plan.param_map.items()}
    pmap.pop(sorted(pmap)[0])
    assert dataclasses.replace(plan, param_map=pmap) != plan
    assert plan != plan.layers[0] and plan != 3


def test_nan_parameters_compare_equal_to_themselves():
    plan = _plan()
    params = plan.params.copy()
    params[-1] = np.nan
    a = dataclasses.replace(plan, params=params)
    assert a == dataclasses.replace(plan, params=params.copy())
    assert parse(to_text(a)) == a
