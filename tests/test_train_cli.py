"""``pccc train`` end to end on tiny data: the reported test log-likelihood equals the float64
reference evaluation of the written circuit; bad data and unwritable outputs are refused before
training; Ctrl-C still writes the best model."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import pccc
from pccc import training
from pccc.backends.reference import log_likelihood
from pccc.cli.main import main

torch.set_num_threads(1)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _folder(tmp_path: Path, n: int = 300, v: int = 5, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 2, n)
    x = np.stack([(z ^ (rng.random(n) < 0.1 * (j + 1))).astype(int) for j in range(v)], 1)
    for split, part in (("train", x[:200]), ("valid", x[200:250]), ("test", x[250:])):
        np.savetxt(tmp_path / f"toy.{split}.data", part, fmt="%d", delimiter=",")
    return tmp_path


def _train(tmp_path, *extra, data=None):
    out = tmp_path / "m.jpc"
    argv = ["train", "--structure", "hclt", "--latents", "2", "--data",
            str(data or _folder(tmp_path)), "--epochs", "3", "--batch-size", "64",
            "--no-progress", "-o", str(out), *extra]
    return main(argv), out


def test_train_reports_the_test_ll_of_the_written_model(tmp_path, capsys):
    rc, out = _train(tmp_path, "--plot", str(tmp_path / "c.png"))
    text = capsys.readouterr().out
    assert rc == 0, text
    assert len(re.findall(r"^epoch \d/3 +train LL -\d", text, re.M)) == 3
    # each epoch's wall time, and the part of it spent validating
    times = re.findall(r"  (\d+\.\d\d) s \(validation (\d+\.\d\d) s\)$", text, re.M)
    assert len(times) == 3 and all(float(v) <= float(t) for t, v in times)
    reported = float(re.search(r"test log-likelihood: (\S+)$", text.strip()).group(1))
    circuit = pccc.load(out)
    test = np.loadtxt(tmp_path / "toy.test.data", delimiter=",", dtype=np.int64)
    assert log_likelihood(circuit, test).mean() == pytest.approx(reported, abs=1e-3)
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("structure", ["rat-spn", "hmm"])
def test_other_structures_train(tmp_path, capsys, structure):
    rc, out = _train(tmp_path, "--structure", structure, "--depth", "1", "--repetitions", "2")
    assert rc == 0 and out.exists()
    assert "test log-likelihood" in capsys.readouterr().out


def test_fullbatch_em_improves(tmp_path, capsys):
    rc, _ = _train(tmp_path, "--em", "fullbatch", "--epochs", "4", "--patience", "0")
    lls = [float(v) for v in re.findall(r"train LL (\S+)", capsys.readouterr().out)]
    assert rc == 0 and lls[-1] > lls[0]


def test_values_outside_the_categories_are_refused(tmp_path, capsys):
    data = _folder(tmp_path)
    (data / "toy.test.data").write_text("0,1,1,0,1\n0,1,2,0,1\n")
    rc, out = _train(tmp_path, "--num-cats", "2", data=data)
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists()
    assert "toy.test.data" in err and "row 2" in err and "column 3" in err


def test_non_integer_values_are_refused(tmp_path, capsys):
    data = _folder(tmp_path)
    (data / "toy.valid.data").write_text("0,1,1,0,1\n0,1,1,0.5,1\n")
    rc, out = _train(tmp_path, data=data)
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists()
    assert "toy.valid.data" in err and "row 2" in err and "column 4" in err


def test_wrong_width_is_refused(tmp_path, capsys):
    data = _folder(tmp_path)
    (data / "toy.test.data").write_text("0,1,1,0\n")
    rc, _ = _train(tmp_path, data=data)
    err = capsys.readouterr().err
    assert rc == 2 and "toy.test.data" in err and "4 columns" in err


@pytest.mark.parametrize("out", ["missing-dir/m.jpc", "m.unknown"])
def test_unwritable_output_refused_before_training(tmp_path, capsys, monkeypatch, out):
    def boom(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(training, "train", boom)
    rc = main(["train", "--data", str(_folder(tmp_path)), "-o", str(tmp_path / out)])
    assert rc == 2 and "m." in capsys.readouterr().err


def test_plot_must_be_png(tmp_path, capsys):
    rc, _ = _train(tmp_path, "--plot", str(tmp_path / "c.jpg"))
    assert rc == 2 and ".png" in capsys.readouterr().err


def test_ctrl_c_writes_the_best_model(tmp_path, capsys, monkeypatch):
    real = training._epoch
    calls = []

    def interrupt_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(training, "_epoch", interrupt_second)
    rc, out = _train(tmp_path, "--epochs", "5")
    cap = capsys.readouterr()
    assert rc == 130 and out.exists()
    assert "best model so far (epoch 1)" in cap.err


def test_train_keeps_best_validation_parameters(tmp_path):
    from pccc.datasets import load_dataset
    from pccc.structures import HCLT

    ds = load_dataset(_folder(tmp_path))
    model = pccc.compile(HCLT(ds.train, 2), backend="torch")
    seen = {}

    def record(ep, hist):
        seen[ep] = training.evaluate(model, ds.valid)

    hist = training.train(model, ds.train, ds.valid,
                          training.TrainConfig(epochs=4, batch_size=32, progress=False,
                                               patience=0), on_epoch=record)
    assert hist.best_epoch == max(seen, key=seen.get)
    assert len(hist.valid_seconds) == len(hist.seconds) == 4
    assert all(0 < v < t for v, t in zip(hist.valid_seconds, hist.seconds))
    assert training.evaluate(model, ds.valid) == pytest.approx(max(seen.values()), abs=1e-6)


@pytest.mark.skipif(not (SHARED / "debd" / "nltcs").exists(), reason="../shared/data absent")
@pytest.mark.slow
def test_nltcs_reaches_target(tmp_path, capsys):
    rc, _ = _train(tmp_path, "--latents", "16", "--epochs", "30", "--batch-size", "512",
                   data=SHARED / "debd" / "nltcs")
    text = capsys.readouterr().out
    assert rc == 0
    assert float(re.search(r"test log-likelihood: (\S+)", text).group(1)) >= -6.10


def test_perturbed_start_trains_and_bad_value_is_refused(tmp_path, capsys):
    """``--perturb 2``: PyJuice's initialization; the trained file still matches its reported
    test log-likelihood; a negative value is a user error (exit 2, nothing written)."""
    rc, out = _train(tmp_path, "--perturb", "2")
    assert rc == 0 and out.exists()
    m = re.search(r"test log-likelihood: (\S+)$", capsys.readouterr().out.strip())
    assert m is not None
    test = np.loadtxt(tmp_path / "toy.test.data", delimiter=",", dtype=np.int64)
    assert log_likelihood(pccc.load(out), test).mean() == pytest.approx(float(m.group(1)),
                                                                        abs=1e-3)
    out.unlink()
    rc, out = _train(tmp_path, "--perturb", "-1")
    assert rc == 2 and not out.exists()
    assert "--perturb" in capsys.readouterr().err


def test_train_writes_a_compiled_module(tmp_path, capsys):
    """``-o model.pccm`` keeps the trained compiled module; its log-likelihoods are the float64
    reference's on the circuit it holds."""
    out = tmp_path / "m.pccm"
    rc = main(["train", "--structure", "hclt", "--latents", "2", "--data",
               str(_folder(tmp_path)), "--epochs", "2", "--batch-size", "64", "--no-progress",
               "-o", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    module = pccc.load_module(out)
    test = np.loadtxt(tmp_path / "toy.test.data", delimiter=",", dtype=np.int64)
    got = module(torch.from_numpy(test)).detach().double().numpy().ravel()
    want = log_likelihood(module.to_circuit(), test)
    reported = float(re.search(r"test log-likelihood: (\S+)$", text.strip()).group(1))
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert want.mean() == pytest.approx(reported, abs=1e-3)
