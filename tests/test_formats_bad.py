"""Malformed circuit files: each is refused with a ParseError that names file:line:col (or the
byte offset in a gzip stream); fuzzed real files raise ParseError and nothing else."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pccc.formats as formats
from pccc.ir import ParseError

PSDDS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "circuits" / "psdds"

JPC_OK = "c ok\njpc 4\nL 0 0 1\nL 1 0 -1\nP 2 0 1 0\nS 3 0 2 2 -0.5 1 -0.9\n"
PSDD_OK = ("c a small psdd\npsdd 99\nL 7 0 1 \nL 3 0 -1\nT 12 1 2 -8.76E-4\nL 5 0 1\n"
           "D 40 2 2 7 12 -0.35667494393873245 3 12 -1.2039728043259361\n")
SPN_OK = "(2 2)\nv 0 1\nv 0 0\nv 1 1\n* 0 2\n* 1 2\n+ 3 -0.5 4 -0.9\nEOF\n"

# (file name, content, line, col, words expected in the message)
CASES = [
    ("tag.jpc", "jpc 2\nL 0 0 1\nX 1 0 1\n", 3, 1, "unknown node tag"),
    ("fields.jpc", "jpc 2\nL 0 0 1\nL 1 0 -1 5\n", 3, 10, "expected 4 fields"),
    ("fields2.jpc", "jpc 2\nL 0 0 1\nS 1 0 2 0 -0.5\n", 3, 15, "expected 8 fields"),
    ("undef.jpc", "jpc 2\nL 0 0 1\nS 1 0 1 7 0.0\n", 3, 9, "child 7 is not defined"),
    ("cycle.jpc", "jpc 2\nS 0 0 1 1 0.0\nS 1 0 1 0 0.0\n", 2, 9, "cycle"),
    ("self.jpc", "jpc 2\nL 0 0 1\nP 1 0 1 1\n", 3, 9, "cycle"),
    ("word.jpc", "jpc 2\nL 0 0 1\nS 1 0 1 0 abc\n", 3, 11, "expected a number"),
    ("nan.jpc", "jpc 2\nL 0 0 1\nS 1 0 1 0 nan\n", 3, 11, "not finite"),
    ("inf.jpc", "jpc 2\nL 0 0 1\nS 1 0 1 0 -inf\n", 3, 11, "not finite"),
    ("lit0.jpc", "jpc 1\nL 0 0 0\n", 2, 7, "literal 0"),
    ("dup.jpc", "jpc 2\nL 0 0 1\nL 0 0 -1\n", 3, 3, "defined twice"),
    ("count.jpc", "jpc 5\nL 0 0 1\nL 1 0 -1\n", 1, 1, "announces 5 nodes"),
    ("header.jpc", "L 0 0 1\n", 1, 1, "header"),
    ("floatid.jpc", "jpc 1\nL 0.5 0 1\n", 2, 3, "expected an integer"),
    ("empty.jpc", "", 1, 1, "empty file"),
    ("blank.jpc", "  \n\n", 1, 1, "empty file"),
    ("comments.jpc", "c only\nc comments\n", 1, 1, "no jpc header"),
    ("tag.psdd", "psdd 2\nL 0 0 1\nF 1\n", 3, 1, "unknown node tag"),
    ("fields.psdd", "psdd 2\nL 0 0\n", 2, 6, "expected 4 fields"),
    ("undef.psdd", "psdd 2\nL 0 0 1\nD 1 0 1 0 5 0.0\n", 3, 11, "node 5 is not defined"),
    ("count.psdd", "psdd 2\nL 0 0 1\nD 1 0 2 0 0 0.0\n", 3, 16, "expected 10 fields"),
    ("nan.psdd", "psdd 2\nL 0 0 1\nL 2 0 2\nD 1 0 1 0 2 NaN\n", 4, 13, "not finite"),
    ("logp.psdd", "psdd 1\nT 0 0 1 0.5\n", 2, 9, "above 0"),
    ("empty.psdd", "", 1, 1, "empty file"),
    ("eof.spn", "(2)\nv 0 1\n", 3, 1, "EOF"),
    ("tag.spn", "(2)\nv 0 1\nx 0\nEOF\n", 3, 1, "unknown node tag"),
    ("undef.spn", "(2)\nv 0 1\n* 0 3\nEOF\n", 3, 5, "child 3"),
    ("value.spn", "(2 3)\nv 1 3\nEOF\n", 2, 5, "outside the domain"),
    ("domain.spn", "2 2\nv 0 1\nEOF\n", 1, 1, "domain line"),
    ("weight.spn", "(2)\nv 0 1\n+ 0 x\nEOF\n", 3, 5, "expected a number"),
    ("after.spn", "(2)\nv 0 1\nEOF\nv 0 0\n", 4, 1, "after EOF"),
]


@pytest.mark.parametrize("name,text,line,col,words", CASES, ids=[c[0] for c in CASES])
def test_refused_with_location(tmp_path, name, text, line, col, words):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(ParseError) as e:
        formats.load(p)
    assert (e.value.line, e.value.col) == (line, col), str(e.value)
    assert str(e.value).startswith(f"{p}:{line}:{col}: ")
    assert words in str(e.value)


@pytest.mark.parametrize("name", ["x.jpc", "x.jpc.gz", "x.psdd", "x.spn"])
def test_pickle_is_refused_without_unpickling(tmp_path, name):
    class Boom:
        def __reduce__(self):  # would run on unpickling
            return (exit, (3,))

    p = tmp_path / name
    p.write_bytes(pickle.dumps({"root": Boom()}, protocol=4))
    with pytest.raises(ParseError, match="pickle") as e:
        formats.load(p)
    assert (e.value.line, e.value.col) == (1, 1)


@pytest.mark.parametrize("cut", [10, 30, -9, -1])
def test_truncated_gzip_names_the_byte_offset(tmp_path, cut):
    blob = gzip.compress(JPC_OK.encode() * 3)
    p = tmp_path / "t.jpc.gz"
    p.write_bytes(blob[:cut])
    with pytest.raises(ParseError, match=r"byte \d+") as e:
        formats.load(p)
    assert str(e.value).startswith(f"{p}: byte ")


def test_corrupt_gzip_is_refused(tmp_path):
    blob = bytearray(gzip.compress(JPC_OK.encode()))
    blob[12] ^= 0xFF
    blob[14] ^= 0xFF
    p = tmp_path / "c.jpc.gz"
    p.write_bytes(bytes(blob))
    with pytest.raises(ParseError, match="byte"):
        formats.load(p)


def test_the_good_examples_load(tmp_path):
    for name, text in (("a.jpc", JPC_OK), ("a.psdd", PSDD_OK), ("a.spn", SPN_OK)):
        (tmp_path / name).write_text(text)
        assert len(formats.load(tmp_path / name).nodes) > 0


def _seeds() -> list[tuple[str, bytes]]:
    out = [("s.jpc", JPC_OK.encode()), ("s.psdd", PSDD_OK.encode()), ("s.spn", SPN_OK.encode()),
           ("s.jpc.gz", gzip.compress(JPC_OK.encode(), mtime=0))]
    if PSDDS.is_dir():
        out.append(("l.psdd", (PSDDS / "little_4var.psdd").read_bytes()))
        nl = gzip.decompress((PSDDS / "nltcs.psdd.gz").read_bytes())
        out.append(("n.psdd", nl[:6000] + nl[-3000:]))
    return out


@st.composite
def _mutated(draw):
    name, base = draw(st.sampled_from(_seeds()))
    op = draw(st.sampled_from(["cut", "flip", "insert", "delete", "dupline"]))
    k = draw(st.integers(0, max(len(base) - 1, 0)))
    if op == "cut":
        return name, base[:k]
    if op == "flip":
        return name, base[:k] + draw(st.binary(min_size=1, max_size=4)) + base[k + 1:]
    if op == "insert":
        return name, base[:k] + draw(st.sampled_from([b" ", b"\n", b"-", b"0", b"e", b"S", b"c"])
                                     ) + base[k:]
    if op == "delete":
        return name, base[:k] + base[k + draw(st.integers(1, 20)):]
    lines = base.split(b"\n")
    i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
    return name, b"\n".join(lines[:i] + [lines[j]] + lines[i:])


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_mutated())
def test_fuzzed_files_raise_only_parse_errors(tmp_path, case):
    name, blob = case
    p = tmp_path / name
    p.write_bytes(blob)
    try:
        formats.load(p)
    except ParseError as e:
        assert str(e).startswith(str(p))
