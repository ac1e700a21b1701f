"""Sizes past the documented limits (``pccc.ir.limits``) are refused where they are written,
quickly and without allocating; numbers in circuit files are ASCII only."""

from __future__ import annotations

import time

import pytest

import pccc.formats as formats
from pccc.ir import (
    Circuit,
    CircuitBuilder,
    InputVector,
    ParseError,
    SumVector,
    VerifyError,
    is_normalized,
    parse,
    verify,
)
from pccc.ir.limits import MAX_NESTING, MAX_VALUES, MAX_VARS

PCIR = """pcir 1 L0
circuit num_vars=NV
%0 = input indicator card=CARD n=1 values=[0] var=0
%1 = sum(%0) n=1 param=@w
param @w f64[1, 1] = [[1.0]]
"""


def _pcir(nv: str = "1", card: str = "2") -> str:
    return PCIR.replace("NV", nv).replace("CARD", card)


@pytest.mark.parametrize("text,line,col,words", [
    (_pcir(nv="1000000000000"), 2, 9, "limit"),
    (_pcir(card="1000000000000"), 3, 22, "at most"),
    (_pcir().replace("indicator card=2 n=1 values=[0]", "binomial n=1 param=@p total=1000000000")
     .replace("param @w", "param @p f64[1] = [0.5]\nparam @w"), 3, 34, "at most"),
    (_pcir().replace("[[1.0]]", "[" * 500 + "]" * 500), 5, 22 + MAX_NESTING, "nested deeper"),
    (_pcir().replace("%1 = sum(%0)", "%\u0661 = sum(%0)"), 4, 1, "unexpected character"),
    (_pcir().replace("values=[0]", "values=[\u0660]"), 3, 41, "unexpected character"),
    (_pcir().replace("values=[0]", "values=[\uff10]"), 3, 41, "unexpected character"),
    (_pcir().replace("[[1.0]]", "[[1_0.0]]"), 5, 24, "unexpected character"),
], ids=["num_vars", "card", "total", "nesting", "arabic-id", "arabic-value", "fullwidth",
        "underscore"])
def test_pcir_sizes_and_digits_are_refused_at_their_place(text, line, col, words):
    t0 = time.perf_counter()
    with pytest.raises(ParseError) as e:
        parse(text, file="x.pcir")
    assert time.perf_counter() - t0 < 2
    assert (e.value.line, e.value.col) == (line, col), str(e.value)
    assert words in str(e.value)


@pytest.mark.parametrize("name,text,line,col,words", [
    ("ind.jpc", "jpc 2\nI 0 0 1 1000000000\nS 1 0 1 0 0.0\n", 2, 9, "limit"),
    ("lit.jpc", "jpc 2\nL 0 0 1000000000\nS 1 0 1 0 0.0\n", 2, 7, "limit"),
    ("var.jpc", "jpc 2\nG 0 0 99999999999 0.0 1.0\nS 1 0 1 0 0.0\n", 2, 7, "limit"),
    ("binom.jpc", "jpc 2\nB 0 0 1 1000000000 -0.5\nS 1 0 1 0 0.0\n", 2, 9, "limit"),
    ("huge.jpc", "jpc 2\nI 0 0 1 99999999999999999999999\nS 1 0 1 0 0.0\n", 2, 9, "range"),
    ("under.jpc", "jpc 2\nL 0_1 0 1\nS 1 0 1 0 0.0\n", 2, 3, "expected an integer"),
    ("wunder.jpc", "jpc 2\nL 0 0 1\nS 1 0 1 0 1_0\n", 3, 11, "expected a number"),
    ("plus.jpc", "jpc 2\nL +0 0 1\nS 1 0 1 0 0.0\n", 2, 3, "expected an integer"),
    ("lit.psdd", "psdd 1\nL 0 0 -1000000000\n", 2, 7, "limit"),
    ("t.psdd", "psdd 1\nT 0 0 1000000000 -0.5\n", 2, 7, "limit"),
    ("dom.spn", "(1000000000)\nv 0 1\nEOF\n", 1, 1, "limit"),
], ids=lambda v: v if isinstance(v, str) and "." in v and "\n" not in v else "")
def test_file_sizes_are_refused_at_their_place(tmp_path, name, text, line, col, words):
    p = tmp_path / name
    p.write_text(text)
    t0 = time.perf_counter()
    with pytest.raises(ParseError) as e:
        formats.load(p)
    assert time.perf_counter() - t0 < 2
    assert (e.value.line, e.value.col) == (line, col), str(e.value)
    assert words in str(e.value)


def test_circuits_built_in_python_are_held_to_the_limits():
    with pytest.raises(ValueError, match="limit is 1048576"):
        CircuitBuilder().input(0, "indicator", card=MAX_VALUES + 1, values=[0])
    big = InputVector(1, 0, "indicator", (("card", MAX_VALUES + 1), ("values", (0,))))
    c = Circuit((big, SumVector(1, (0,), "w")), {"w": [[1.0]]})
    with pytest.raises(VerifyError, match=r"node %0: .*limit is 1048576"):
        verify(c)
    b = CircuitBuilder()
    c = b.build(b.sum([b.input(0, "bernoulli")]), num_vars=MAX_VARS + 1)
    with pytest.raises(VerifyError, match="limit is 16777216"):
        verify(c)


def test_a_large_domain_at_the_limit_is_summarized_quickly():
    b = CircuitBuilder()
    ind = [b.input(0, "indicator", card=MAX_VALUES, values=[v]) for v in (0, MAX_VALUES - 1)]
    binom = b.input(0, "binomial", total=MAX_VALUES - 1, params=[0.5])
    c = b.build(b.sum([*ind, binom], weights=[[0.25, 0.25, 0.5]]), num_vars=MAX_VARS)
    t0 = time.perf_counter()
    verify(c)
    assert is_normalized(c)
    assert time.perf_counter() - t0 < 5


def test_a_binomial_at_the_limit_evaluates_without_a_table():
    import numpy as np
    import torch

    import pccc
    from pccc.backends.reference import log_likelihood

    b = CircuitBuilder()
    c = b.build(b.sum([b.input(0, "binomial", total=MAX_VALUES - 1, params=[0.999])]))
    x = np.array([[MAX_VALUES - 1], [MAX_VALUES - 1000], [0], [-1]])
    want = log_likelihood(c, x)
    model = pccc.compile(c, backend="torch", dtype=torch.float64)
    t0 = time.perf_counter()
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    assert time.perf_counter() - t0 < 2
    np.testing.assert_allclose(got, want, rtol=1e-9)
