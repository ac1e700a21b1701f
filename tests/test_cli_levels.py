"""Every command takes every level it can use: ``pccc eval`` of L1-L3 files and modules
(reference evaluator of the level, or a backend), ``pccc convert`` lowering and writing a
module's source circuit back out, ``pccc.load`` of any level."""

from __future__ import annotations

import numpy as np
import pytest

import pccc
from pccc.backends.reference import log_likelihood
from pccc.cli.main import main
from pccc.formats.pcir import save_pcir
from pccc.ir import CircuitBuilder, PcccError
from pccc.passes import run_pipeline

TRAINING = ["canonicalize", "group-blocks", "partition-layers", "layout-params"]


@pytest.fixture
def files(tmp_path):
    b = CircuitBuilder(rng=4)
    x = [b.sum([b.sum([b.input(v, "categorical", n=6, card=3)], n=6)], n=1) for v in range(3)]
    c = b.build(b.product([b.product(x[:2]), x[2]]))  # a product root: wrapped at L1
    save_pcir(c, tmp_path / "L0.pcir")
    for k in (1, 2, 3):
        assert main(["convert", str(tmp_path / "L0.pcir"), str(tmp_path / f"L{k}.pcir"),
                     "--level", f"L{k}"]) == 0
    x = np.random.default_rng(0).integers(-1, 3, size=(20, 3))
    np.save(tmp_path / "x.npy", x)
    return tmp_path, c


def _mean(out: str) -> float:
    return float(out.strip().splitlines()[-1].split(": ")[-1])


def test_eval_of_every_level_and_backend_agrees(files, capsys):
    d, _ = files
    capsys.readouterr()
    got = {}
    for level in ("L0", "L1", "L2", "L3"):
        assert main(["eval", str(d / f"{level}.pcir"), "--data", str(d / "x.npy"),
                     "--backend", "reference"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("backend: reference")
        got[level] = _mean(out)
    for level in ("L2", "L3"):
        assert main(["eval", str(d / f"{level}.pcir"), "--data", str(d / "x.npy"),
                     "--backend", "torch", "--dtype", "float64"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("backend: torch")
        got[f"torch {level}"] = _mean(out)
    np.testing.assert_allclose(list(got.values()), got["L0"], rtol=1e-10)


def test_eval_of_a_plan_checks_the_data_against_its_cards(files, capsys):
    d, _ = files
    np.save(d / "bad.npy", np.array([[0, 1, 3]]))
    assert main(["eval", str(d / "L3.pcir"), "--data", str(d / "bad.npy")]) == 2
    assert "row 1, column 3: value 3 is outside 0..2" in capsys.readouterr().err


def test_convert_lowers_and_writes_sources_back(files, capsys):
    d, c = files
    assert pccc.load(d / "L1.pcir") == run_pipeline(c, ",".join(TRAINING[:2]))
    assert pccc.load(d / "L3.pcir") == run_pipeline(c, ",".join(TRAINING))
    assert main(["convert", str(d / "L2.pcir"), str(d / "back.jpc")]) == 0
    canon = run_pipeline(c, "canonicalize")
    x = np.load(d / "x.npy")
    np.testing.assert_allclose(log_likelihood(pccc.load(d / "back.jpc"), x),
                               log_likelihood(c, x), rtol=1e-12)
    assert main(["convert", str(d / "L1.pcir"), str(d / "src.pcir"), "--level", "L0"]) == 0
    assert pccc.load(d / "src.pcir") == canon
    assert main(["compile", str(d / "L0.pcir"), "-o", str(d / "m.pccm")]) == 0
    assert main(["convert", str(d / "m.pccm"), str(d / "m.pcir")]) == 0
    assert pccc.load(d / "m.pcir") == c
    assert main(["convert", str(d / "m.pccm"), str(d / "m2.pcir"), "--level", "L2"]) == 0
    assert pccc.load(d / "m2.pcir") == pccc.load(d / "L2.pcir")


@pytest.mark.parametrize("argv, message", [
    (["L3.pcir", "x.jpc"], "an L3 plan has no circuit to write as .jpc"),
    (["L3.pcir", "x.pcir", "--level", "L1"], "the passes only lower, and IN is L3"),
    (["L0.pcir", "x.jpc", "--level", "L2"], ".jpc files hold L0 circuits"),
])
def test_convert_refuses_what_it_cannot_write(files, capsys, argv, message):
    d, _ = files
    argv = [str(d / a) if a.endswith((".pcir", ".jpc")) else a for a in argv]
    assert main(["convert"] + argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) <= 2
    assert not (d / "x.pcir").exists() and not (d / "x.jpc").exists()


def test_load_reads_any_level_and_points_modules_to_load_module(files):
    d, c = files
    assert pccc.load(d / "L0.pcir") == c
    assert [pccc.load(d / f"L{k}.pcir").level for k in (1, 2, 3)] == ["L1", "L2", "L3"]
    (d / "m.pccm").write_bytes(b"")
    with pytest.raises(PcccError, match=r"a compiled module; read it with pccc.load_module"):
        pccc.load(d / "m.pccm")
