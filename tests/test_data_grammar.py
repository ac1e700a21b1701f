"""The data grammar (docs/formats.md): ASCII digits, '?' or an empty field for missing, and a
located error for anything else; integer arrays hold -1 for missing and nothing out of range."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pccc.data import load_data
from pccc.ir import CircuitBuilder, DataError


def _circuit(gauss: bool = False):
    b = CircuitBuilder()
    a = b.input(0, "categorical", card=12)
    c = b.input(1, "gaussian" if gauss else "bernoulli")
    return b.build(b.sum([b.product([a, c])]))


@pytest.mark.parametrize("field", [
    "\u0661", "\uff11", "1_0", "0_1", "-?", "?-", "??", "nan", "NaN", "inf", "-inf", "+1",
    "1e", "--1", "1-", "0x1", "1 2", "\u00a01", "٣", "1.0.0", "e5", ".", "-",
])
@pytest.mark.parametrize("gauss", [False, True], ids=["discrete", "continuous"])
def test_a_field_outside_the_grammar_is_located(tmp_path, field, gauss):
    p = tmp_path / "x.csv"
    p.write_text(f"1,0\n3,{field}\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"x.csv: row 2 \(line 2\), column 2 \(counting from 1\)"):
        load_data(p, _circuit(gauss))


@pytest.mark.parametrize("text,want", [
    ("1,0\n2, ? \n", [[1, 0], [2, -1]]),
    ("1,0\n2,\n", [[1, 0], [2, -1]]),
    ("1,-1\n?,1\n", [[1, -1], [-1, 1]]),
    ("1, 1 \n 11 ,0\n", [[1, 1], [11, 0]]),
    ("1.0,0\n2e0,1\n", [[1, 0], [2, 1]]),
])
def test_fields_in_the_grammar(tmp_path, text, want):
    p = tmp_path / "x.csv"
    p.write_text(text)
    np.testing.assert_array_equal(load_data(p, _circuit()), want)


def test_continuous_fields(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("1,-1\n2,?\n3,-2.5e-3\n4,.5\n")
    x = load_data(p, _circuit(gauss=True))
    np.testing.assert_array_equal(x, [[1, -1.0], [2, np.nan], [3, -2.5e-3], [4, 0.5]])


def test_unsigned_all_ones_is_not_missing(tmp_path):
    x = np.array([[1, 0], [2, 2**64 - 1]], dtype=np.uint64)
    np.save(tmp_path / "u.npy", x)
    with pytest.raises(DataError, match=r"u.npy: row 2, column 2 .*out of range"):
        load_data(tmp_path / "u.npy", _circuit())
    with pytest.raises(DataError, match=r"u.npy: row 2, column 2"):
        load_data(tmp_path / "u.npy")


_ALPHABET = st.sampled_from([*"0123456789?-.eE, \t", "\u0661", "_", "+", "x", "n", "a", "i",
                             "f"])


@settings(max_examples=200)
@given(st.lists(st.text(_ALPHABET, max_size=6), min_size=2, max_size=2), st.booleans())
def test_accepted_fields_are_exactly_the_grammar(tmp_path_factory, fields, gauss):
    import re

    p = tmp_path_factory.mktemp("g") / "x.csv"
    p.write_text("0,0\n" + ",".join(fields) + "\n", encoding="utf-8")
    number = r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
    cells = ",".join(fields).split(",")
    ok = len(cells) == 2 and all(re.fullmatch(rf"[ \t]*(?:{number}|\?)?[ \t]*", f)
                                 for f in cells)
    try:
        x = load_data(p, _circuit(gauss))
    except DataError as e:
        assert str(e).startswith(str(p))
        if ok:  # in the grammar, refused only for its value
            assert "outside the domain" in str(e) or "not finite" in str(e)
        return
    assert ok, fields
    assert x.shape == (2, 2)
