"""``pccc eval`` on long runs: torch in float64 by default on the CPU (the reference's values,
faster), a progress bar when asked or on a terminal, and working memory bounded whatever
``--batch-size`` says."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

import pccc
from pccc.backends.reference import log_likelihood
from pccc.cli import cmd_eval
from pccc.cli.main import main
from pccc.ir import CircuitBuilder, to_text

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
needs_zoo = pytest.mark.skipif(not (DATA / "circuits").is_dir(), reason="../shared/data absent")


@needs_zoo
@pytest.mark.parametrize("name", ["little_4var.psdd", "nltcs.psdd.gz"])
def test_torch_float64_gives_the_reference_values_on_psdds(name):
    c = pccc.load(DATA / "circuits" / "psdds" / name)
    rng = np.random.default_rng(0)
    x = rng.integers(-1, 2, size=(64, c.num_vars))
    model = pccc.compile(c, backend="torch", dtype=torch.float64)
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, log_likelihood(c, x), rtol=1e-12, atol=1e-12)


def _files(tmp_path, rows=300):
    b = CircuitBuilder(rng=0)
    kids = [b.sum([b.input(v, "categorical", card=3, n=4)], n=2) for v in range(3)]
    c = b.build(b.sum([b.product(kids)], n=1))
    (tmp_path / "c.pcir").write_text(to_text(c))
    x = np.random.default_rng(1).integers(-1, 3, size=(rows, 3))
    np.save(tmp_path / "x.npy", x)
    return c, x


def test_progress_on_and_off(tmp_path, capsys):
    _files(tmp_path)
    args = ["eval", str(tmp_path / "c.pcir"), "--data", str(tmp_path / "x.npy"),
            "--batch-size", "50"]
    assert main([*args, "--progress", "on"]) == 0
    assert "/300 [" in capsys.readouterr().err
    for mode in ("off", "auto"):  # (auto: stderr is no terminal here)
        assert main([*args, "--progress", mode]) == 0
        assert capsys.readouterr().err == ""


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_a_huge_batch_is_split_within_the_memory_limit(tmp_path, capsys, backend, monkeypatch):
    c, x = _files(tmp_path)
    sizes = []
    real = cmd_eval.log_likelihoods

    def spy(fn, x, batch, progress=None):
        sizes.append(batch)
        return real(fn, x, batch, progress)

    monkeypatch.setattr(cmd_eval, "log_likelihoods", spy)
    assert main(["eval", str(tmp_path / "c.pcir"), "--data", str(tmp_path / "x.npy"),
                 "--backend", backend, "--batch-size", "1000000", "--max-memory", "0.00001",
                 "--out", str(tmp_path / "ll.npy")]) == 0
    err = capsys.readouterr().err
    assert "--batch-size 1000000 would need about" in err and "--max-memory" in err
    per_row = cmd_eval.row_bytes(c, backend, "float64")
    assert sizes == [max(1, int(0.00001 * (1 << 30)) // per_row)] and sizes[0] < 300
    np.testing.assert_allclose(np.load(tmp_path / "ll.npy"), log_likelihood(c, x), rtol=1e-12,
                               atol=1e-12)


def test_the_default_batch_stays_within_the_default_limit(tmp_path, capsys):
    _files(tmp_path)
    assert main(["eval", str(tmp_path / "c.pcir"), "--data", str(tmp_path / "x.npy")]) == 0
    assert "note" not in capsys.readouterr().err


def test_bad_memory_and_progress_options_are_refused(tmp_path, capsys):
    _files(tmp_path)
    for extra in (["--max-memory", "0"], ["--max-memory", "-1"], ["--progress", "maybe"]):
        assert main(["eval", str(tmp_path / "c.pcir"), "--data", str(tmp_path / "x.npy"),
                     *extra]) == 2
        err = capsys.readouterr().err
        assert f"argument {extra[0]}: must be" in err and "Traceback" not in err


def test_gzip_text_data_also_streams(tmp_path, capsys):
    c, x = _files(tmp_path, rows=40)
    text = "\n".join(",".join("?" if v < 0 else str(v) for v in r) for r in x) + "\n"
    (tmp_path / "x.csv.gz").write_bytes(gzip.compress(text.encode()))
    assert main(["eval", str(tmp_path / "c.pcir"), "--data", str(tmp_path / "x.csv.gz"),
                 "--progress", "on", "--out", str(tmp_path / "ll.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "ll.npy"), log_likelihood(c, x), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_a_circuit_too_large_for_one_row_is_refused_before_allocating(tmp_path, capsys, backend):
    (tmp_path / "big.pcir").write_text(
        "pcir 1 L0\ncircuit num_vars=1\n%0 = input bernoulli n=1 param=@p var=0\n"
        "%1 = product(%0) n=1000000000\nparam @p f64[1] = [0.5]\n")
    (tmp_path / "x.csv").write_text("1\n0\n")
    assert main(["eval", str(tmp_path / "big.pcir"), "--data", str(tmp_path / "x.csv"),
                 "--backend", backend, "--out", str(tmp_path / "ll.npy")]) == 2
    err = capsys.readouterr().err
    assert "big.pcir: one example needs about" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ll.npy").exists()
