"""PackedParams: the packed store of scalar sum weights behaves as the dict store it replaces."""

from __future__ import annotations

import numpy as np
import pytest

from pccc.formats import _fastjpc, jpc
from pccc.ir.circuit import Circuit, PackedParams, padded_keys
from pccc.ir.printer import to_text


def _store() -> tuple[PackedParams, dict[str, np.ndarray]]:
    head = {"p003": np.array([[0.25, 0.75]]), "p010": np.array([0.5])}
    ids = np.array([4, 7, 120])
    ptr = np.array([0, 2, 5, 6])
    buf = np.arange(6, dtype=np.float64) / 10
    packed = PackedParams(head, "w", 3, ids, ptr, buf)
    plain = {**head, "w004": buf[0:2].reshape(1, 2), "w007": buf[2:5].reshape(1, 3),
             "w120": buf[5:6].reshape(1, 1)}
    return packed, plain


def test_packed_store_is_the_dict_store():
    packed, plain = _store()
    assert list(packed) == list(plain) == sorted(plain)
    assert len(packed) == len(plain)
    assert [k for k, _ in packed.items()] == list(plain)
    for (k, v), w in zip(packed.items(), packed.values()):
        assert v.shape == plain[k].shape and np.array_equal(v, plain[k])
        assert np.array_equal(w, plain[k])
        assert np.array_equal(packed[k], plain[k]) and not packed[k].flags.writeable
        assert k in packed and packed.get(k) is not None
    assert dict(packed).keys() == plain.keys()


@pytest.mark.parametrize("key", ["w4", "w0004", "w005", "w121", "w999", "x004", "p004", "",
                                 "w", "w-01", "w+04", "w 04", "w\u0660\u0660\u0664", 4, None])
def test_packed_store_refuses_other_keys(key):
    packed, _ = _store()
    assert key not in packed
    assert packed.get(key) is None
    with pytest.raises(KeyError):
        packed[key]


def test_packed_store_checks_its_parts():
    buf = np.zeros(3)
    with pytest.raises(ValueError, match="increasing ids"):
        PackedParams({}, "w", 2, np.array([3, 3]), np.array([0, 1, 3]), buf)
    with pytest.raises(ValueError, match="increasing ids"):
        PackedParams({}, "w", 1, np.array([3, 10]), np.array([0, 1, 3]), buf)
    with pytest.raises(ValueError, match="offsets"):
        PackedParams({}, "w", 2, np.array([3, 4]), np.array([0, 1, 2]), buf)
    with pytest.raises(ValueError, match="sort before"):
        PackedParams({"z": np.zeros(1)}, "w", 2, np.array([3, 4]), np.array([0, 1, 3]), buf)
    with pytest.raises(ValueError, match="prefix"):
        PackedParams({}, "ww", 2, np.array([3, 4]), np.array([0, 1, 3]), buf)


def test_padded_keys():
    assert padded_keys("w", np.array([0, 7, 42, 999]), 3) == ["w000", "w007", "w042", "w999"]
    assert padded_keys("p", np.array([], dtype=np.int64), 3) == []


JPC = """c a small circuit
jpc 6
L 0 0 1
L 1 0 -1
L 2 0 2
P 3 0 2 0 2
S 4 0 2 3 -0.5 1 -1.25
S 5 0 2 4 -0.1 3 -2.5
"""


def test_a_read_circuit_has_a_packed_store_and_stays_equal_to_a_plain_one():
    c = _fastjpc.parse(JPC.encode())
    assert c is not None and isinstance(c.params, PackedParams)
    assert c == jpc.parse_lines(JPC.encode(), "x.jpc")
    plain = Circuit(c.nodes, dict(c.params), c.num_vars, c.root)
    assert not isinstance(plain.params, PackedParams)
    assert c == plain and plain == c
    assert to_text(c) == to_text(plain)
    assert np.array_equal(c.params["w4"], np.exp([[-0.5, -1.25]]))
    again = Circuit(c.nodes, c.params, c.num_vars, c.root)  # kept as it is
    assert again.params is c.params
    w = c.with_params({"w5": np.array([[0.5, 0.5]])})
    assert np.array_equal(w.params["w5"], [[0.5, 0.5]]) and np.array_equal(w.params["w4"],
                                                                          c.params["w4"])
