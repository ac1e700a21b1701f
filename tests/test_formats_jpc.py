"""Juice ``.jpc``: hand-computed probabilities, exact round trips, and the vectorized reader
agreeing with the line-by-line reader (the definition of the format)."""

from __future__ import annotations

import gzip
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pccc.formats as formats
from pccc.backends.reference.evaluate import log_likelihood
from pccc.formats import _fastjpc
from pccc.formats.jpc import parse_lines
from pccc.ir import CircuitBuilder, ParseError
from pccc.ir.verify import verify
from tests.strategies import ALL_DISTS, circuits, data_for

# X1 binary (literals), X2 in {0,1,2} (indicators and a categorical), X3 binomial(2), X4 normal
ALL_TAGS = """c P and S: Juice's own comment block swaps the words; P is the product
jpc 13
L 0 0 1
L 1 0 -1
I 2 0 2 0
I 3 0 2 2
C 4 0 2 -1.6094379124341003 -0.5108256237659907 -1.6094379124341003
B 5 0 3 2 -1.3862943611198906
G 6 0 4 0.5 2.0
P 7 0 2 0 2
P 8 0 2 1 3
P 9 0 2 1 4
S 10 0 3 7 -1.2039728043259361 8 -1.6094379124341003 9 -0.6931471805599453
P 11 0 3 10 5 6
S 12 0 1 11 0.0
"""


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


def _expected(x1: int, x2: int, x3: int, x4: float) -> float:
    """The density of ALL_TAGS, computed by hand."""
    cat = [0.2, 0.6, 0.2][x2]
    mix = 0.3 * (x1 == 1) * (x2 == 0) + 0.2 * (x1 == 0) * (x2 == 2) + 0.5 * (x1 == 0) * cat
    binom = math.comb(2, x3) * 0.25**x3 * 0.75 ** (2 - x3)
    normal = math.exp(-0.5 * ((x4 - 0.5) / 2.0) ** 2) / (2.0 * math.sqrt(2 * math.pi))
    return mix * binom * normal


def test_every_tag_matches_hand_computed_density(tmp_path):
    c = formats.load(_write(tmp_path, "all.jpc", ALL_TAGS))
    verify(c)
    rows = [(a, b, k, 0.7) for a, b, k in itertools.product(range(2), range(3), range(3))]
    x = np.array(rows, dtype=np.float64)
    got = np.exp(log_likelihood(c, x))
    want = np.array([_expected(int(a), int(b), int(k), v) for a, b, k, v in rows])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    assert c.num_vars == 4
    assert [nd.kind for nd in c.nodes][7:] == ["product"] * 3 + ["sum", "product", "sum"]


def test_fast_and_line_readers_agree_on_all_tags():
    data = ALL_TAGS.encode()
    fast = _fastjpc.parse(data)
    assert fast is not None
    assert fast == parse_lines(data, "x.jpc")


def test_non_contiguous_ids_and_gzip(tmp_path):
    text = "jpc 3\nL 10 0 1\nL 4 0 -1\nS 99 0 2 10 -0.2231435513142097 4 -1.6094379124341003\n"
    for name, blob in (("a.jpc", text.encode()), ("a.jpc.gz", gzip.compress(text.encode()))):
        c = formats.load(_write(tmp_path, name, blob))
        p = np.exp(log_likelihood(c, np.array([[0], [1], [-1]])))
        np.testing.assert_allclose(p, [0.2, 0.8, 1.0], rtol=1e-12)


def _roundtrip_ll(tmp_path: Path, c, x, suffix: str) -> None:
    path = tmp_path / f"c{suffix}"
    formats.save(c, path)
    back = formats.load(path)
    verify(back)
    np.testing.assert_allclose(log_likelihood(back, x), log_likelihood(c, x), rtol=0,
                               atol=1e-12)


@settings(max_examples=40)
@given(st.data())
def test_roundtrip_random_circuits(tmp_path_factory, data):
    c = data.draw(circuits(max_vars=4, dists=ALL_DISTS, normalized=data.draw(st.booleans())))
    x = data.draw(data_for(c, n_rows=8))
    tmp = tmp_path_factory.mktemp("rt")
    for suffix in (".jpc", ".jpc.gz"):
        _roundtrip_ll(tmp, c, x, suffix)
    # and the vectorized reader builds what the line reader builds
    text = (tmp / "c.jpc").read_bytes()
    fast = _fastjpc.parse(text)
    assert fast is not None
    assert fast == parse_lines(text, "c.jpc")


def test_writer_spells_what_jpc_cannot_say(tmp_path):
    b = CircuitBuilder()
    bern = b.input(0, "bernoulli", n=3, params=[0.0, 1.0, 0.25])
    cat = b.input(1, "categorical", n=2, card=3, params=[[0.0, 0.4, 0.6], [0.5, 0.5, 0.0]])
    binom = b.input(2, "binomial", n=3, total=3, params=[0.0, 1.0, 0.5])
    p = b.product([bern, cat, binom], edges=[[0, 0, 0], [1, 1, 1], [2, 0, 2], [2, 1, 1]])
    root = b.sum([p], weights=[[0.5, 0.0, 0.25, 0.25]])
    c = b.build(root)
    x = np.array(list(itertools.product(range(2), range(3), range(4))))
    x = np.concatenate([x, [[-1, 1, -1], [1, -1, 3]]])
    _roundtrip_ll(tmp_path, c, x, ".jpc")
    text = (tmp_path / "c.jpc").read_text()
    assert "\nL " in text and "\nI " in text and "\nB " in text


def test_writer_refuses_all_zero_sum(tmp_path):
    b = CircuitBuilder()
    a = b.input(0, "bernoulli", params=[0.5])
    c = b.build(b.sum([a], weights=[[0.0]]))
    with pytest.raises(Exception, match="all 0"):
        formats.save(c, tmp_path / "z.jpc")
    assert not list(tmp_path.iterdir())


def _mutations():
    base = ALL_TAGS.encode()
    lines = base.split(b"\n")
    return st.one_of(
        st.integers(0, len(base)).map(lambda k: base[:k]),
        st.tuples(st.integers(0, len(base) - 1), st.binary(min_size=1, max_size=3)).map(
            lambda t: base[:t[0]] + t[1] + base[t[0] + 1:]),
        st.tuples(st.integers(0, len(lines) - 1), st.integers(0, len(lines) - 1)).map(
            lambda t: b"\n".join(lines[:t[0]] + [lines[t[1]]] + lines[t[0] + 1:])),
    )


@settings(max_examples=200)
@given(_mutations())
def test_fast_reader_is_sound_on_mutated_text(text):
    """Whatever the fast path accepts, the line reader accepts and builds the same."""
    fast = _fastjpc.parse(text)
    try:
        slow = parse_lines(text, "m.jpc")
    except ParseError:
        assert fast is None
        return
    if fast is not None:
        assert fast == slow
