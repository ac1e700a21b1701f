"""``pccc opt`` and ``pccc passes`` as a user runs them."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pccc import formats
from pccc.backends.reference import log_likelihood
from pccc.backends.reference.lowered import evaluate_any
from pccc.cli.main import main
from pccc.ir import CircuitBuilder
from pccc.ir.parse_lowered import parse_any, read_pcir_any


@pytest.fixture
def jpc(tmp_path):
    b = CircuitBuilder(rng=1)
    ind = [[b.input(v, "indicator", card=2, values=[k]) for k in range(2)] for v in range(3)]
    sums = [b.sum(ind[v], n=1) for v in range(3)]
    p1 = b.product([b.product(sums[:2]), sums[2]])
    p2 = b.product([ind[0][0], ind[1][1], ind[2][0]])
    c = b.build(b.sum([p1, p2]))
    path = tmp_path / "some.jpc"
    formats.save(c, path)
    return path


def test_print_after_all_shows_every_pass_and_every_dump_parses(jpc, capsys):
    assert main(["opt", str(jpc), "--print-after-all"]) == 0
    out = capsys.readouterr().out
    heads = re.findall(r"^// ----- IR dump after (\S+) \(pass (\d)\) ----- //$", out, re.M)
    assert heads == [("canonicalize", "1"), ("group-blocks", "2"), ("partition-layers", "3"),
                     ("layout-params", "4")]
    pieces = re.split(r"^// ----- IR dump after .*$", out, flags=re.M)[1:]
    values, source = [], None  # (an L1 or L2 dump names the L0 dump above it as its source)
    for piece in pieces:
        values.append(parse_any(piece, source=source))
        source = values[-1] if values[-1].level == "L0" else source
    assert [v.level for v in values] == ["L0", "L1", "L2", "L3"]
    assert "the L0 dump after canonicalize (pass 1) above" in pieces[1]
    c = formats.load(jpc)
    x = np.array([[0, 1, 1], [1, -1, 0]])
    for value in values:
        np.testing.assert_allclose(evaluate_any(value, x), log_likelihood(c, x), rtol=1e-12)


def test_output_file_dump_dir_and_time_passes(jpc, tmp_path, capsys):
    out = tmp_path / "plan.pcir"
    dump = tmp_path / "dumps"
    assert main(["opt", str(jpc), "-o", str(out), "--dump-dir", str(dump),
                 "--time-passes"]) == 0
    err = capsys.readouterr().err
    assert "pass execution timing" in err and "layout-params" in err
    plan = read_pcir_any(out)
    assert plan.level == "L3"
    assert len(list(dump.glob("*.pcir"))) == 5
    # an L1 file continues the default pipeline from L1
    assert main(["opt", str(dump / "002_group_blocks.pcir"), "-o",
                 str(tmp_path / "again.pcir")]) == 0
    assert read_pcir_any(tmp_path / "again.pcir").level == "L3"


def test_stop_after_and_explicit_pipeline(jpc, capsys):
    assert main(["opt", str(jpc), "--stop-after", "partition-layers"]) == 0
    assert capsys.readouterr().out.startswith("pcir 1 L2")
    assert main(["opt", str(jpc), "-p", "canonicalize"]) == 0
    assert capsys.readouterr().out.startswith("pcir 1 L0")


def test_user_errors_exit_2_without_a_traceback(jpc, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["opt", str(jpc), "-p", "canonicalize,layout-params"]) == 2
    assert "reads L2 but canonicalize gives L0" in capsys.readouterr().err
    assert main(["opt", str(tmp_path / "missing.pcir")]) == 2
    bad = tmp_path / "bad.pcir"
    bad.write_text("pcir 1 L1\ncircuit num_vars=1 root=%0\n%0 = input bernoulli n=1 var=0 "
                   "param=@p\nparam @p f64[1] = [0.5]\nblocks %7 B=1 C=1\n")
    assert main(["opt", str(bad)]) == 2
    assert "bad.pcir:5:8" in capsys.readouterr().err
    assert not (tmp_path / "repro.pcir").exists()


def test_large_outputs_use_a_sidecar(tmp_path):
    b = CircuitBuilder(rng=0)
    x = [b.input(v, "categorical", n=64, card=16) for v in range(2)]
    c = b.build(b.sum([b.sum([b.product(x)], n=64)], n=1))
    src = tmp_path / "big.pcir"
    formats.save(c, src)
    out = tmp_path / "big_plan.pcir"
    assert main(["opt", str(src), "-p", "training", "-o", str(out)]) == 0
    assert (tmp_path / "big_plan.npz").exists()
    assert "npz" in out.read_text() and len(out.read_text()) < 20_000
    plan = read_pcir_any(out)
    xs = np.array([[0, 15], [3, -1]])
    np.testing.assert_allclose(evaluate_any(plan, xs), log_likelihood(c, xs), rtol=1e-12)


def test_passes_lists_every_pass_with_options(capsys):
    assert main(["passes"]) == 0
    out = capsys.readouterr().out
    for name in ("canonicalize", "group-blocks", "partition-layers", "layout-params"):
        assert re.search(rf"^{name} +L\d -> L\d  \S", out, re.M)
    assert "block-size=int (default 64)" in out
    assert "default: canonicalize{" in out
