"""A ``.psdd`` that lost node lines (its root's above all) is refused, not evaluated to a wrong
number: the header count and the use of every node are checked."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

import pccc.formats as formats
from pccc.ir import ParseError

PSDDS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "circuits" / "psdds"
needs_zoo = pytest.mark.skipif(not PSDDS.is_dir(), reason="../shared/data is absent")


def _lines(name: str) -> list[bytes]:
    data = (PSDDS / name).read_bytes()
    return (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).split(b"\n")


@needs_zoo
@pytest.mark.parametrize("name,lose", [
    ("little_4var.psdd", 1), ("nltcs.psdd.gz", 1), ("nltcs.psdd.gz", 2), ("nltcs.psdd.gz", 5),
    ("tretail.psdd.gz", 1), ("tretail.psdd.gz", 3)])
def test_a_zoo_psdd_that_lost_its_last_lines_is_refused(tmp_path, name, lose):
    lines = [ln for ln in _lines(name) if ln.strip()]
    p = tmp_path / "cut.psdd"
    p.write_bytes(b"\n".join(lines[:-lose]) + b"\n")
    with pytest.raises(ParseError, match="used by no later node") as e:
        formats.load(p)
    assert e.value.line > 1


@needs_zoo
def test_a_zoo_psdd_that_lost_an_inner_line_is_refused(tmp_path):
    lines = _lines("little_4var.psdd")
    d8 = next(i for i, ln in enumerate(lines) if ln.startswith(b"D 8 "))
    p = tmp_path / "hole.psdd"
    p.write_bytes(b"\n".join(lines[:d8] + lines[d8 + 1:]))
    with pytest.raises(ParseError, match="node 8 is not defined"):
        formats.load(p)


def test_a_header_below_the_node_lines_is_refused(tmp_path):
    p = tmp_path / "h.psdd"
    p.write_text("psdd 1\nL 0 0 1\nL 1 0 -1\nD 2 0 2 0 0 -0.69 1 0 -0.69\n")
    with pytest.raises(ParseError, match=r"h.psdd:1:1: the header announces 1 nodes but the "
                                         r"file has 3"):
        formats.load(p)
    p.write_text("psdd x\nL 0 0 1\n")
    with pytest.raises(ParseError, match=r"h.psdd:1:6: node count: expected an integer"):
        formats.load(p)
    p.write_text("psdd\nL 0 0 1\nL 1 0 2\nD 2 0 1 0 1 0.0\n")  # (Juice: the count is optional)
    assert len(formats.load(p).nodes) == 4


@needs_zoo
def test_every_zoo_psdd_passes_the_checks():
    for p in sorted(PSDDS.glob("*.psdd*")):
        if p.name in ("little_4var.psdd", "nltcs.psdd.gz", "tretail.psdd.gz", "msweb.psdd.gz"):
            assert len(formats.load(p).nodes) > 0
