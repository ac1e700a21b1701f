"""The .pcir text format: round trips, determinism, tied parameters, sidecars, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pccc import formats
from pccc.formats.pcir import read_pcir, save_pcir
from pccc.ir import CircuitBuilder, ParseError, parse, parse_circuit, to_text, verify
from pccc.ir.lexer import Key, Ref, tokenize
from tests.strategies import ALL_DISTS, circuits


@given(circuits(dists=ALL_DISTS, normalized=False))
def test_round_trip(c):
    text = to_text(c)
    back = parse(text)
    assert back == c
    assert to_text(back) == text  # idempotent
    assert to_text(c) == text      # deterministic


@given(circuits(dists=ALL_DISTS))
def test_floats_round_trip_bit_exactly(c):
    back = parse(to_text(c))
    for k, v in c.params.items():
        assert v.tobytes() == back.params[k].tobytes()


def _tied():
    b = CircuitBuilder(rng=1)
    a = b.input(0, "categorical", n=2, card=3)
    t = b.input(1, "categorical", n=2, card=3, tie=b.nodes[a].param)
    p = b.product([a, t], edges=[[0, 1], [1, 0]])
    q = b.product([a, t])
    s1 = b.sum([p, q], n=2)
    s2 = b.sum([q, p], n=2, tie=b.nodes[s1].param)
    return b.build(b.sum([s1, s2], n=1))


def test_tied_parameters_and_edges_survive():
    c = _tied()
    text = to_text(c)
    assert text.count("param @p0 ") == 1
    assert text.count("param=@p0") == 2 and text.count("param=@w4") == 2
    assert "edges=[[0, 1], [1, 0]]" in text
    back = parse(text)
    assert back == c
    assert back.nodes[1].param == back.nodes[0].param == "p0"


def test_file_round_trip_and_sidecar(tmp_path):
    c = _tied()
    formats.save(c, tmp_path / "c.pcir")
    assert formats.load(tmp_path / "c.pcir") == c
    save_pcir(c, tmp_path / "s.pcir", sidecar=True)
    text = (tmp_path / "s.pcir").read_text()
    assert 'npz "s.npz"' in text and "[[" not in text.split("param ", 1)[1]
    assert (tmp_path / "s.npz").exists()
    assert read_pcir(tmp_path / "s.pcir") == c


def test_elided_parameters_need_permission():
    c = _tied()
    text = to_text(c, elide_above=4)
    assert "param @p0 f64[2, 3] = elided" in text
    with pytest.raises(ParseError, match=r"<string>:\d+:\d+: parameter @p0 is elided"):
        parse(text)
    filled = parse(text, allow_elided=True)
    verify(filled)
    np.testing.assert_allclose(filled.params["p0"], 1 / 3)
    np.testing.assert_allclose(filled.params["w4"].sum(axis=1), 1.0)


def test_comments_and_blank_lines_are_ignored():
    c = _tied()
    lines = to_text(c).splitlines()
    noisy = ["# a comment", "", lines[0] + "  // trailing"] + [
        ln + "   # note" for ln in lines[1:]] + ["", "// done"]
    assert parse("\n".join(noisy)) == c


def test_odd_keys_are_quoted():
    b = CircuitBuilder()
    b.input(0, "bernoulli", tie="a key/with spaces", params=[0.25])
    c = b.build()
    text = to_text(c)
    assert '@"a key/with spaces"' in text
    assert parse(text) == c


GOOD = """pcir 1 L0
circuit num_vars=2 root=%3
%0 = input bernoulli n=1 param=@a var=0
%1 = input bernoulli n=1 param=@b var=1
%2 = product(%0, %1) n=1
%3 = sum(%2) n=1 param=@w
param @a f64[1] = [0.3]
param @b f64[1] = [0.6]
param @w f64[1, 1] = [[1.0]]
"""


def test_good_text_parses():
    c = parse_circuit(GOOD)
    verify(c)
    assert to_text(c) == GOOD


@pytest.mark.parametrize("old, new, where, message", [
    ("pcir 1 L0", "pcir 2 L0", "1:6", "unsupported .pcir version 2"),
    ("pcir 1 L0", "pcir 1 L9", "1:8", "unknown IR level 'L9'"),
    ("pcir 1 L0", "circuit", "1:1", "expected 'pcir <version> <level>'"),
    ("%2 = product(%0, %1)", "%2 = product(%0, %5)", "5:18", "child %5 is not defined"),
    ("%2 = product", "%4 = product", "5:1", "expected node %2"),
    ("%3 = sum(%2)", "%3 = mix(%2)", "6:6", "unknown node kind 'mix'"),
    ("input bernoulli n=1 param=@a", "input poisson n=1 param=@a", "3:12",
     "unknown distribution 'poisson'"),
    ("param @b f64[1] = [0.6]", "param @b f64[2] = [0.6]", "8:19",
     r"expected an array of shape \(2,\)"),
    ("param @b f64[1] = [0.6]", "param @b f64[1] = [0.6", "8:23", "expected ',' or ']'"),
    ("param @b f64[1] = [0.6]", "param @b f64[1] = [\"x\"]", "8:19", "expected numbers"),
    ("param @b f64[1] = [0.6]", "param @a f64[1] = [0.6]", "8:7", "parameter @a defined twice"),
    ("param @b f64[1] = [0.6]\n", "", "4:26", "parameter @b is used but never defined"),
    ("n=1 param=@a var=0", "n=0 param=@a var=0", "3:22", "n must be an integer >= 1"),
    ("n=1 param=@a var=0", "param=@a var=0", "3:12", "missing attribute 'n'"),
    ("%3 = sum(%2) n=1", "%3 = sum(%2) n=1 colour=2", "6:18", "unknown attribute 'colour'"),
    ("root=%3", "root=%7", "2:20", "root must name a defined node, got %7"),
    ("[0.3]", "[0.3] $", "7:25", r"unexpected character '\$'"),
    ("[0.3]", "[0.3] extra", "7:25", "expected end of line"),
])
def test_errors_carry_file_line_col(old, new, where, message):
    bad = GOOD.replace(old, new, 1)
    assert bad != GOOD
    with pytest.raises(ParseError, match=f"^bad.pcir:{where}: {message}"):
        parse(bad, file="bad.pcir")


def test_reader_reports_file_name(tmp_path):
    p = tmp_path / "x.pcir"
    p.write_text(GOOD.replace("[0.3]", "[0.3"))
    with pytest.raises(ParseError, match=rf"^{p}:7:23:"):
        formats.load(p)
    p.write_bytes(b"\xff\xfe")
    with pytest.raises(ParseError, match="not UTF-8"):
        formats.load(p)


@given(st.lists(st.floats(allow_nan=False), max_size=5), st.integers(-10**12, 10**12))
def test_lexer_reads_numbers_back(xs, n):
    text = " ".join(repr(x) for x in xs) + f" {n} %3 @k @\"q r\" name-with.dots"
    toks = tokenize(text)
    assert [t.value for t in toks[:len(xs)]] == xs
    assert [t.kind for t in toks[:len(xs)]] == ["FLOAT"] * len(xs)
    assert toks[len(xs)].value == n and toks[len(xs)].kind == "INT"
    rest = [t.value for t in toks[len(xs) + 1:-1]]
    assert rest == [Ref(3), Key("k"), Key("q r"), "name-with.dots"]


def test_docs_example_parses_and_prints_back():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "ir.md").read_text()
    block = "pcir 1 L0" + doc.split("```\npcir 1 L0", 1)[1].split("```", 1)[0]
    c = parse(block, file="docs/ir.md")
    verify(c)
    assert parse(to_text(c)) == c
