"""Semantic preservation, parametrized over the pass registry.

On random circuits and random data (hypothesis), for every registered pass and every prefix of
the default and training pipelines: the reference evaluation before and after agrees, the
output verifies, and the input IR is left unchanged. The L0 reference evaluator is the oracle.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pccc.backends.reference import log_likelihood
from pccc.backends.reference.lowered import evaluate_any
from pccc.ir.printer import to_text
from pccc.passes import compile_plan, run_pipeline
from pccc.passes.manager import verify_any
from pccc.passes.pipeline import NAMED, expand, format_pipeline, parse_pipeline
from pccc.passes.registry import all_passes
from tests.strategies import circuits, data_for

SMALL = settings(max_examples=25, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: how each pass's input is reached from L0, and option sets worth running it with
_BEFORE = {"L0": "", "L1": "canonicalize,group-blocks{block-size=2,min-block=2,tolerance=0.6}",
           "L2": "canonicalize,group-blocks{block-size=4,min-block=2,tolerance=0.6},"
                 "partition-layers"}
_VARIANTS = {
    "canonicalize": ["", "{collapse-sums=true,merge-identical=true,merge-sum-chains=true}"],
    "group-blocks": ["", "{block-size=2,min-block=2,tolerance=0.9}"],
    "partition-layers": ["", "{tolerance=0.0,max-partitions=1}"],
    "layout-params": ["", "{threads=2}"],
}
PASSES = [p for p in all_passes() if p.input_level in _BEFORE]


def _agree(ir, x, ref):
    np.testing.assert_allclose(evaluate_any(ir, x), ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("info", PASSES, ids=[p.name for p in PASSES])
@SMALL
@given(data=st.data())
def test_pass_preserves_semantics(info, data):
    c = data.draw(circuits(max_vars=4, max_n=3, normalized=data.draw(st.booleans())))
    x = data.draw(data_for(c, n_rows=4))
    ref = log_likelihood(c, x)
    before = run_pipeline(c, _BEFORE[info.input_level]) if _BEFORE[info.input_level] else c
    text = to_text(before)
    for variant in _VARIANTS.get(info.name, [""]):
        out = run_pipeline(before, info.name + variant, verify=False)
        verify_any(out)
        assert out.level == info.output_level
        _agree(out, x, ref)
    assert to_text(before) == text, "the pass modified its input"


@pytest.mark.parametrize("name", sorted(NAMED))
@SMALL
@given(data=st.data())
def test_every_prefix_of_the_named_pipelines(name, data):
    c = data.draw(circuits(max_vars=4, max_n=3, dists=("indicator", "categorical",
                                                         "bernoulli", "gaussian")))
    x = data.draw(data_for(c, n_rows=4))
    ref = log_likelihood(c, x)
    steps = parse_pipeline(name)
    for k in range(1, len(steps) + 1):
        out = run_pipeline(c, steps[:k], verify=True)
        _agree(out, x, ref)


@SMALL
@given(data=st.data())
def test_training_plan_keeps_every_source_parameter(data):
    c = data.draw(circuits(max_vars=4, max_n=3, tie_prob=0.5))
    plan = compile_plan(c, training=True)
    src = plan.source_params()
    assert set(src) == set(c.params)
    for key, arr in c.params.items():
        np.testing.assert_array_equal(src[key], arr)
    # every flat weight belongs to one source entry: tied vectors share storage
    sums = [k for k in plan.param_map if k not in plan.input_param_keys]
    used = np.concatenate([plan.param_map[k].ravel() for k in sums]) if sums else np.zeros(0)
    assert len(np.unique(used)) == len(used)
    assert np.all(plan.param_group[used] >= 0)
    assert np.all(plan.param_group[np.setdiff1d(np.arange(len(plan.params)), used)] == -1)


@SMALL
@given(data=st.data())
def test_em_groups_are_the_source_sum_rows(data):
    c = data.draw(circuits(max_vars=3, max_n=3))
    plan = compile_plan(c)
    for key in plan.param_map:
        if key in plan.input_param_keys:
            continue
        groups = plan.param_group[plan.param_map[key]]  # [n, m]
        assert np.all(groups == groups[:, :1])          # one group per row
        assert len(set(groups[:, 0])) == groups.shape[0]
        assert np.all(plan.group_size[groups[:, 0]] == groups.shape[1])


def test_inference_pipeline_may_drop_parameters():
    from pccc.ir import CircuitBuilder

    b = CircuitBuilder(rng=0)
    x = [b.input(0, "bernoulli") for _ in range(3)]
    inner = b.sum(x[:2], n=2)
    outer = b.sum([inner, x[2]], n=1)
    c = b.build(outer)
    assert len(compile_plan(c, training=False).param_map) < len(c.params)
    assert len(compile_plan(c, training=True).param_map) == len(c.params)


def test_named_pipelines_expand_and_round_trip():
    for name, text in NAMED.items():
        steps = parse_pipeline(name)
        assert format_pipeline(steps) == format_pipeline(parse_pipeline(text))
        assert parse_pipeline(format_pipeline(steps))[-1].info.output_level == "L3"
    assert [n for n, _ in expand("training")] == [
        "canonicalize", "group-blocks", "partition-layers", "layout-params"]
