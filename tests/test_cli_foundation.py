"""The ``pccc`` command: info, convert, eval (against brute force), demo; user errors exit 2."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pccc import formats
from pccc.cli.main import main
from pccc.ir import to_text
from tests import oracle
from tests.strategies import circuits, data_for


def _write_csv(path, x):
    path.write_text("\n".join(",".join("?" if v == -1 else str(v) for v in r) for r in x) + "\n")


@settings(max_examples=15)
@given(c=circuits(max_vars=3, normalized=False), data=st.data())
def test_eval_agrees_with_brute_force(tmp_path_factory, c, data):
    d = tmp_path_factory.mktemp("ev")
    x = data.draw(data_for(c, n_rows=5, missing_prob=0.4))
    (d / "c.pcir").write_text(to_text(c))
    _write_csv(d / "x.csv", x)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["eval", str(d / "c.pcir"), "--data", str(d / "x.csv"), "--batch-size", "2",
                   "--out", str(d / "ll.npy")])
    out = buf.getvalue().strip().splitlines()
    assert rc == 0
    with np.errstate(divide="ignore"):
        want = np.log([oracle.brute_force_marginal(c, r) for r in x])
    ll = np.load(d / "ll.npy")
    assert ll.dtype == np.float64
    np.testing.assert_allclose(ll, want, rtol=1e-9, atol=1e-12)
    assert out[-1].startswith("mean log-likelihood: ")
    assert float(out[-1].split(": ")[1]) == pytest.approx(want.mean(), rel=1e-12, abs=1e-12)


@pytest.fixture
def demo(tmp_path, capsys):
    assert main(["demo", "--dir", str(tmp_path / "demo"), "--vars", "6", "--rows", "50",
                 "--no-train"]) == 0
    out = capsys.readouterr().out
    return tmp_path / "demo", out


def test_demo_compiles_trains_and_saves(tmp_path, capsys):
    folder = tmp_path / "demo"
    assert main(["demo", "--dir", str(folder), "--vars", "6", "--rows", "200",
                 "--epochs", "5"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    last = out[-1]
    before = float(next(ln for ln in out if ln.startswith("held-out")).split(": ")[1])
    after = float(last.split(": ")[1])
    assert after > before  # EM on 160 rows improves the held-out fit of a random circuit
    # the trained circuit written to disk, evaluated by the reference backend, says the same
    assert main(["eval", str(folder / "trained.jpc"), "--data", str(folder / "heldout.csv")]) == 0
    ref = float(capsys.readouterr().out.strip().splitlines()[-1].split(": ")[1])
    assert ref == pytest.approx(after, rel=1e-9)


def test_demo_writes_and_evaluates(demo, capsys):
    folder, out = demo
    assert (folder / "circuit.pcir").exists() and (folder / "data.csv").exists()
    last = out.strip().splitlines()[-1]
    assert last.startswith("mean log-likelihood: ")
    assert "smooth:       yes" in out and "normalized:   yes" in out
    args = ["eval", str(folder / "circuit.pcir"), "--data", str(folder / "data.csv")]
    assert main([*args, "--backend", "reference"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == last
    assert main(args) == 0  # (torch in float64)
    got = capsys.readouterr().out.strip().splitlines()[-1]
    assert float(got.split(": ")[1]) == pytest.approx(float(last.split(": ")[1]), rel=1e-12)


def test_info_reports_counts(demo, capsys):
    folder, _ = demo
    assert main(["info", str(folder / "circuit.pcir")]) == 0
    out = capsys.readouterr().out
    c = formats.load(folder / "circuit.pcir")
    n_scalar = sum(nd.n for nd in c.nodes)
    assert f"nodes:        {n_scalar} " in out
    assert "variables:    6" in out and "decomposable: yes" in out


def test_convert_round_trip(demo, tmp_path):
    folder, _ = demo
    out = tmp_path / "copy.pcir"
    assert main(["convert", str(folder / "circuit.pcir"), str(out)]) == 0
    assert formats.load(out) == formats.load(folder / "circuit.pcir")
    assert main(["convert", str(folder / "circuit.pcir"), str(tmp_path / "s.pcir"),
                 "--sidecar"]) == 0
    assert formats.load(tmp_path / "s.pcir") == formats.load(out)


def _bad_cases(folder, tmp):
    c, d = str(folder / "circuit.pcir"), str(folder / "data.csv")
    (tmp / "bad.pcir").write_text("pcir 1 L0\ncircuit num_vars=1\n%0 = input nope n=1 var=0\n")
    (tmp / "bad.csv").write_text("0,1\n")
    (tmp / "ns.pcir").write_text(
        "pcir 1 L0\ncircuit num_vars=2 root=%2\n%0 = input bernoulli n=1 param=@a var=0\n"
        "%1 = input bernoulli n=1 param=@a var=1\n%2 = sum(%0, %1) n=1 param=@w\n"
        "param @a f64[1] = [0.5]\nparam @w f64[1, 2] = [[0.5, 0.5]]\n")
    out = str(tmp / "out.npy")
    return [
        (["eval", str(tmp / "bad.pcir"), "--data", d, "--out", out], "bad.pcir:3:12"),
        (["eval", c, "--data", str(tmp / "bad.csv"), "--out", out], "2 columns"),
        (["eval", c, "--data", str(tmp / "missing.csv"), "--out", out], "no such file"),
        (["eval", c, "--data", d, "--device", "cuda", "--backend", "reference", "--out", out],
         "CPU only"),
        (["eval", c, "--data", d, "--out", str(tmp / "ll.txt")], "must be a .npy"),
        (["eval", c, "--data", d, "--batch-size", "0", "--out", out], "--batch-size"),
        (["eval", str(tmp / "ns.pcir"), "--data", d, "--out", out], "not smooth"),
        (["convert", str(tmp / "bad.pcir"), out.replace(".npy", ".pcir")], "bad.pcir:3:12"),
        (["convert", c, str(tmp / "x.unknown")], "cannot write this format"),
        (["info", str(tmp / "nothere.pcir")], "no such file"),
        (["eval", c, "--data", d, "--backend", "nope", "--out", out], "nope"),
    ]


def test_user_errors_exit_2_and_write_nothing(demo, tmp_path, capsys):
    folder, _ = demo
    for argv, needle in _bad_cases(folder, tmp_path):
        before = set(os.listdir(tmp_path))
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2, argv
        assert needle in err, (argv, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) <= 2, err
        assert set(os.listdir(tmp_path)) == before, argv


def test_bad_option_exits_2_without_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pccc", "eval", "x.pcir"], capture_output=True,
                       text=True, cwd=tmp_path)
    assert r.returncode == 2
    assert "--data" in r.stderr and "Traceback" not in r.stderr


def test_info_without_verifier_reports_a_broken_property(tmp_path, capsys):
    p = tmp_path / "ns.pcir"
    p.write_text(
        "pcir 1 L0\ncircuit num_vars=2 root=%2\n%0 = input bernoulli n=1 param=@a var=0\n"
        "%1 = input bernoulli n=1 param=@a var=1\n%2 = sum(%0, %1) n=1 param=@w\n"
        "param @a f64[1] = [0.5]\nparam @w f64[1, 2] = [[0.5, 0.25]]\n")
    assert main(["info", str(p)]) == 2
    assert "not smooth" in capsys.readouterr().err
    assert main(["info", str(p), "--no-verify"]) == 0
    out = capsys.readouterr().out
    assert "smooth:       no" in out and "decomposable: yes" in out and "normalized:   no" in out
    assert "edges:        2 (sum 2, product 0)" in out and "parameters:   3" in out
