"""Dump sizes on the zoo's nltcs PSDD (skipped where ``../shared/data`` is absent):
``--print-after-all`` at most twice the L0 text, ``--dump-dir`` without an array stored twice,
and every dump reads back to the value it shows."""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from pathlib import Path

import pytest

import pccc.formats as formats
from pccc.ir import parse, to_text
from pccc.ir.parse_lowered import read_pcir_any
from pccc.passes import run_pipeline
from pccc.passes.instruments import DumpDir, PrintAfter

NLTCS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "circuits" / "psdds" / \
    "nltcs.psdd.gz"
pytestmark = pytest.mark.skipif(not NLTCS.is_file(), reason="../shared/data is absent")


@pytest.fixture(scope="module")
def nltcs():
    return formats.load(NLTCS)


def test_print_after_all_is_at_most_twice_the_l0_text(nltcs):
    buf = io.StringIO()
    out = run_pipeline(nltcs, "default", instruments=[PrintAfter(None, buf, elide_above=None)])
    text = buf.getvalue()
    assert len(text) <= 2 * len(to_text(nltcs))
    pieces = re.split(r"^// ----- IR dump after .*$", text, flags=re.M)[1:]
    canonical = parse(pieces[0])
    assert [parse(p, source=canonical).level for p in pieces[1:3]] == ["L1", "L2"]
    assert parse(pieces[3]) == out


def test_dump_dir_stores_no_array_twice(nltcs, tmp_path):
    dump = tmp_path / "d"
    out = run_pipeline(nltcs, "default", instruments=[DumpDir(dump)])
    seen: dict[tuple[str, str], str] = {}
    files = sorted(dump.glob("*.npz"))
    assert len({hashlib.sha256(f.read_bytes()).hexdigest() for f in files}) == len(files)
    for f in files:
        with zipfile.ZipFile(f) as z:
            for m in z.namelist():
                key = (m, hashlib.sha256(z.read(m)).hexdigest())
                assert key not in seen, f"{m} in {seen.get(key)} and {f.name}"
                seen[key] = f.name
    assert read_pcir_any(dump / "004_layout_params.pcir") == out
    l2 = read_pcir_any(dump / "003_partition_layers.pcir")
    assert l2 == run_pipeline(read_pcir_any(dump / "001_canonicalize.pcir"),
                              "group-blocks,partition-layers")
