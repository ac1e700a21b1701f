"""Malformed .pcir text and data files fail with located errors, never with a crash."""

from __future__ import annotations

import os

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pccc.data import load_data
from pccc.ir import DataError, ParseError, VerifyError, parse, to_text, verify
from tests.strategies import ALL_DISTS, circuits

_PIECES = ["%", "@", "[", "]", "(", ")", ",", "=", "\n", " ", "0", "-1", "1.5", "nan", "inf",
           '"', "x", "%9", "@w", "[[0]]", "n=", "param", "input", "sum", "#", "f64[1]", "1e400"]


@st.composite
def mutated(draw):
    text = to_text(draw(circuits(max_vars=3, dists=ALL_DISTS)))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 8)))
        text = text[:i] + draw(st.sampled_from(["", *_PIECES])) + text[j:]
    return text


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 150)))
@given(mutated())
def test_mutated_text_parses_or_fails_with_a_location(text):
    try:
        c = parse(text, file="m.pcir")
    except ParseError as e:
        assert str(e).startswith("m.pcir:") and e.line >= 1 and e.col >= 1
        return
    try:
        verify(c)
    except VerifyError as e:
        assert str(e)


_CELLS = ["0", "1", "2", "?", "", " ", "-1", "-2", "1.5", "x", "1e3", "nan", "inf", "3 4"]


@settings(max_examples=100)
@given(st.lists(st.lists(st.sampled_from(_CELLS), min_size=1, max_size=4), min_size=1,
                max_size=5), st.sampled_from(["\n", "\r\n"]))
def test_any_small_text_loads_or_fails_with_a_location(tmp_path_factory, rows, nl):
    from pccc.ir import CircuitBuilder

    b = CircuitBuilder()
    kids = [b.input(v, "categorical", card=3) for v in range(3)]
    c = b.build(b.sum([b.product(kids)]))
    p = tmp_path_factory.mktemp("f") / "x.csv"
    p.write_text(nl.join(",".join(r) for r in rows) + nl)
    try:
        x = load_data(p, c)
    except DataError as e:
        assert str(e).startswith(str(p))
        return
    assert x.dtype == np.int64 and x.shape[1] == 3
    assert np.all((x >= -1) & (x <= 2))


_ONE = """pcir 1 L0
circuit num_vars=1
%0 = input indicator card=2 n=1 values=VAL var=0
%1 = sum(%0) n=1 param=@w
param @w f64[1, 1] = [[1.0]]
"""


def test_attribute_values_of_the_wrong_kind_are_located():
    import pytest

    for val in ["[[0]]", "[%0]", '["a"]', "[1.5]", "[@w]"]:
        with pytest.raises(ParseError, match=r"^<string>:3:33: attribute 'values' must be"):
            parse(_ONE.replace("VAL", val))


def test_empty_domains_are_refused_by_the_verifier():
    import pytest

    text = _ONE.replace("VAL", "[0]")
    verify(parse(text))
    bad = text.replace("input indicator card=2 n=1 values=[0]", "input binomial n=1 param=@p "
                       "total=-3").replace("param @w", "param @p f64[1] = [0.5]\nparam @w")
    with pytest.raises(VerifyError, match=r"node %0: binomial: the variable would have -2"):
        verify(parse(bad))
