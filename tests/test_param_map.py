"""``KernelPlan.param_map`` made lazily (``ir.plan.ParamMap``): every entry, however it is
read, gives the offsets where the plan's flat buffers hold that source parameter array."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pccc.ir.plan import ParamMap
from pccc.passes import compile_plan
from tests.strategies import ALL_DISTS, circuits


def _flat(plan, key):
    return plan.input_params if key in plan.input_param_keys else plan.params


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_every_entry_points_at_its_source_values(data):
    c = data.draw(circuits(max_vars=4, dists=ALL_DISTS))
    plan = compile_plan(c)
    keys = list(plan.param_map)
    for key in data.draw(st.permutations(keys)):  # entries made one by one, in any order
        idx = plan.param_map[key]
        assert idx.shape == c.params[key].shape and not idx.flags.writeable
        np.testing.assert_array_equal(_flat(plan, key)[idx], c.params[key])
    # the other ways to read the map agree with the entries made by []
    again = compile_plan(c).param_map
    made = dict(again.items())
    assert made.keys() == set(keys)
    for key in keys:
        np.testing.assert_array_equal(made[key], plan.param_map[key])
    for other in (pickle.loads(pickle.dumps(plan.param_map)), copy.deepcopy(plan.param_map)):
        assert set(other) == set(keys)
        for key in keys:
            np.testing.assert_array_equal(other[key], plan.param_map[key])


def test_read_only_dict_rebuilt_and_maker_failures():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise MemoryError("no room")
        return np.arange(3)

    pm = ParamMap({"a": np.zeros(2)}, {"b": flaky, "c": lambda: np.ones(4)})
    assert len(pm) == 3 and "b" in pm and calls == []  # keys, len, in: nothing made
    with pytest.raises(MemoryError):
        pm["b"]
    np.testing.assert_array_equal(pm["b"], np.arange(3))  # the failed maker ran again
    np.testing.assert_array_equal(pm.get("c"), np.ones(4))
    assert pm.get("zz", 5) == 5
    with pytest.raises(TypeError):
        pm["a"] = np.zeros(2)
    with pytest.raises(TypeError):
        pm.update({})
    rebuilt = ParamMap([(k, v) for k, v in pm.items()])  # as dataclasses.asdict does
    assert set(rebuilt) == set(pm) and all(np.array_equal(rebuilt[k], pm[k]) for k in pm)


def test_concurrent_reads_make_an_entry_once():
    calls = []
    pm = ParamMap({}, {"k": lambda: calls.append(1) or np.arange(5)})
    out: list[int] = []
    threads = [threading.Thread(target=lambda: out.append(int(pm["k"].sum())))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == [10] * 8 and calls == [1]


def test_plan_asdict():
    from tests.test_triton_backend import _dense_circuit

    plan = compile_plan(_dense_circuit(n=4))
    d = dataclasses.asdict(plan)
    assert set(d["param_map"]) == set(plan.param_map)
