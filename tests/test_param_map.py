"""``KernelPlan.param_map`` (``ir.plan.ParamMap``): an immutable mapping whose regular entries
are kept as their rule (``ir.plan.Offsets``). Every entry, however it is read, gives the
offsets where the plan's flat buffers hold that source parameter array; a rule's bounds are
those of its array; equality, copies and pickling treat rules and arrays alike."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pccc.ir.errors import VerifyError
from pccc.ir.plan import Offsets, ParamMap
from pccc.ir.plan_verify import verify_plan
from pccc.passes import compile_plan
from tests.strategies import ALL_DISTS, circuits


def _flat(plan, key):
    return plan.input_params if key in plan.input_param_keys else plan.params


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_every_entry_points_at_its_source_values(data):
    c = data.draw(circuits(max_vars=4, dists=ALL_DISTS))
    plan = compile_plan(c)
    pm = plan.param_map
    assert isinstance(pm, ParamMap) and list(pm) == sorted(pm)
    for key in data.draw(st.permutations(list(pm))):
        idx = pm[key]
        assert idx.shape == c.params[key].shape and not idx.flags.writeable
        np.testing.assert_array_equal(_flat(plan, key)[idx], c.params[key])
        np.testing.assert_array_equal(idx, pm.get(key))
    # the other ways to read the map agree, and so do copies; arrays equal rules
    made = dict(pm.items())
    assert made.keys() == set(pm)
    for other in (pickle.loads(pickle.dumps(pm)), copy.deepcopy(pm), ParamMap(made), made):
        assert set(other) == set(pm) and other == pm and pm == other
        for key in pm:
            np.testing.assert_array_equal(other[key], pm[key])


@settings(max_examples=200, deadline=None)
@given(start=st.integers(0, 50), n=st.integers(0, 9), m=st.integers(0, 9),
       B=st.integers(1, 4), C=st.integers(1, 4), extra=st.integers(0, 2))
def test_a_rule_makes_its_tiles_and_bounds_them(start, n, m, B, C, extra):
    """A tiled rule against a direct construction: the array written tile by tile into a
    flat buffer, each tile row-major (``nc`` chunks per block row, padding between)."""
    nc = -(-m // C) + extra
    nb = -(-n // B)
    flat = np.full(start + nb * nc * B * C, -1, np.int64)
    for i in range(n):
        for j in range(m):
            at = start + ((i // B) * nc + j // C) * B * C + (i % B) * C + j % C
            flat[at] = i * max(m, 1) + j
    rule = Offsets(start, (n, m), (B, C, nc))
    idx = rule.array()
    assert idx.shape == (n, m) and idx.dtype == np.int64 and not idx.flags.writeable
    np.testing.assert_array_equal(flat[idx], np.arange(n * m).reshape(n, m))
    if n * m:
        assert rule.bounds() == (int(idx.min()), int(idx.max()) + 1)
    whole = Offsets(start, (n, m))
    np.testing.assert_array_equal(whole.array(), start + np.arange(n * m).reshape(n, m))
    assert whole.bounds() == (start, start + n * m)


def test_read_only_and_unequal_maps():
    pm = ParamMap({"b": Offsets(2, (2, 3)), "a": np.zeros(2, np.int64)})
    assert list(pm) == ["a", "b"] and len(pm) == 2 and "b" in pm and "z" not in pm
    assert isinstance(pm.entry("b"), Offsets) and pm.get("zz", 5) == 5
    with pytest.raises(TypeError):
        pm["a"] = np.zeros(2)  # type: ignore[index]
    with pytest.raises(TypeError):
        pm._entries = {}  # type: ignore[misc]
    with pytest.raises(ValueError):
        pm["a"][0] = 1
    assert pm == {"a": [0, 0], "b": [[2, 3, 4], [5, 6, 7]]}
    assert pm != ParamMap({"a": np.zeros(2, np.int64), "b": Offsets(3, (2, 3))})
    assert pm != ParamMap({"a": np.zeros(2, np.int64), "b": Offsets(2, (3, 2))})
    assert pm != ParamMap({"a": np.zeros(2, np.int64)})
    assert pm != 3


def test_the_verifier_bounds_rules_without_making_them():
    from tests.test_triton_backend import _dense_circuit

    plan = compile_plan(_dense_circuit(n=4))
    key = next(k for k in plan.param_map if k not in plan.input_param_keys)
    rule = plan.param_map.entry(key)
    assert isinstance(rule, Offsets)
    verify_plan(plan)
    past = dataclasses.replace(rule, start=rule.start + len(plan.params))
    bad = dataclasses.replace(plan, param_map=ParamMap({**{
        k: plan.param_map.entry(k) for k in plan.param_map}, key: past}))
    with pytest.raises(VerifyError, match=f"param_map\\[{key!r}\\]"):
        verify_plan(bad)


def test_plan_asdict():
    from tests.test_triton_backend import _dense_circuit

    plan = compile_plan(_dense_circuit(n=4))
    d = dataclasses.asdict(plan)
    assert set(d["param_map"]) == set(plan.param_map)
    for key in plan.param_map:
        np.testing.assert_array_equal(d["param_map"][key], plan.param_map[key])


def test_a_plan_carries_no_hidden_state_and_copies_are_checked_again():
    """``compile_plan``, ``check_once`` and a backend leave a plan's attributes its fields:
    what they remember lives beside it. A copy (another object) is checked afresh, groups
    included: a wrong group size in it is found."""
    import pccc
    from pccc.ir.plan_verify import check_once
    from tests.test_triton_backend import _dense_circuit

    plan = compile_plan(_dense_circuit(n=4))
    check_once(plan)
    model = pccc.compile(_dense_circuit(n=4), backend="torch")
    for p in (plan, model.plan):
        assert set(vars(p)) == {f.name for f in dataclasses.fields(p)}
    bad = plan.group_size.copy()
    bad[0] += 1
    with pytest.raises(VerifyError, match="group_size"):
        check_once(dataclasses.replace(plan, group_size=bad))
