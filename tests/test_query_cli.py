"""``pccc query`` and ``pccc sample``: the files they write hold what :mod:`pccc.query` returns
(``.npy`` and ``.csv``, circuit files and ``.pccm`` modules), and user errors exit with status
2 in one or two lines, writing nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pccc
from pccc import query
from pccc.cli.main import main
from pccc.data import load_data
from pccc.ir import CircuitBuilder
from tests.test_query import fixed_circuit
from tests.test_query_cases import gated_circuit, gaussian_circuit

torch.set_num_threads(1)

X = np.array([[0, -1, 1], [-1, 1, -1], [2, 0, -1], [-1, -1, -1]])


@pytest.fixture
def files(tmp_path):
    c = fixed_circuit()
    pccc.save(c, tmp_path / "c.pcir")
    np.save(tmp_path / "x.npy", X)
    return tmp_path, c


def run(capsys, *argv) -> tuple[int, list[str], list[str]]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out.splitlines(), err.splitlines()


def test_conditional_writes_the_query(files, capsys):
    d, c = files
    rc, out, _ = run(capsys, "query", d / "c.pcir", "--data", d / "x.npy", "--conditional",
                     "-o", d / "post.npy")
    assert rc == 0 and out[0] == "backend: reference (cpu, float64)"
    np.testing.assert_array_equal(np.load(d / "post.npy"), query.conditional(c, X).numpy())


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_mpe_writes_the_completions(files, capsys, suffix):
    d, c = files
    out_file = d / f"mpe{suffix}"
    rc, out, _ = run(capsys, "query", d / "c.pcir", "--data", d / "x.npy", "--mpe",
                     "-o", out_file)
    rows, ll = query.mpe(c, X)
    assert rc == 0 and out[-2] == f"mean log-likelihood of the completions: {ll.mean().item()!r}"
    np.testing.assert_array_equal(load_data(out_file, c), rows.numpy())


def test_sample_with_seed_and_evidence(files, capsys):
    d, c = files
    rc, _, _ = run(capsys, "sample", d / "c.pcir", "-n", 50, "--seed", 3, "-o", d / "s.npy")
    assert rc == 0
    np.testing.assert_array_equal(np.load(d / "s.npy"), query.sample(c, 50, seed=3).numpy())
    (d / "e.csv").write_text("?,1,\n")
    rc, _, _ = run(capsys, "sample", d / "c.pcir", "-n", 40, "--evidence", d / "e.csv",
                   "--seed", 4, "-o", d / "s.csv")
    got = load_data(d / "s.csv", c)
    assert rc == 0 and got.shape == (40, 3) and (got[:, 1] == 1).all() and (got >= 0).all()


def test_a_module_runs_on_its_backend(files, capsys):
    d, c = files
    assert main(["compile", str(d / "c.pcir"), "-o", str(d / "m.pccm"), "--dtype",
                 "float64"]) == 0
    capsys.readouterr()
    rc, out, _ = run(capsys, "query", d / "m.pccm", "--data", d / "x.npy", "--mpe",
                     "-o", d / "m.npy")
    assert rc == 0 and out[0] == "backend: torch (cpu, float64)"
    np.testing.assert_array_equal(np.load(d / "m.npy"), query.mpe(c, X)[0].numpy())
    rc, out, _ = run(capsys, "sample", d / "m.pccm", "-n", 7, "--backend", "reference",
                     "-o", d / "r.npy")
    assert rc == 0 and out[0] == "backend: reference (cpu, float64)"


def _several_roots(d):
    b = CircuitBuilder(rng=0)
    kids = [b.product([b.input(0, "bernoulli", n=2), b.input(1, "bernoulli", n=2)])]
    pccc.save(b.build(b.sum(kids, n=3)), d / "roots.pcir")
    np.save(d / "two.npy", np.full((2, 2), -1))
    return ["query", d / "roots.pcir", "--data", d / "two.npy", "--mpe", "-o", d / "o.npy"]


def _gaussian(d):
    pccc.save(gaussian_circuit(), d / "g.pcir")
    np.save(d / "g.npy", np.array([[0.0, np.nan]]))
    return ["query", d / "g.pcir", "--data", d / "g.npy", "--conditional", "-o", d / "o.npy"]


def _impossible(d):
    pccc.save(gated_circuit(), d / "gate.pcir")
    (d / "e.csv").write_text("1,,\n")
    return ["sample", d / "gate.pcir", "-n", 3, "--evidence", d / "e.csv", "-o", d / "o.csv"]


BAD = {
    "suffix": (lambda d: ["query", d / "c.pcir", "--data", d / "x.npy", "--conditional",
                          "-o", d / "o.csv"], "the output must be a .npy file"),
    "folder": (lambda d: ["sample", d / "c.pcir", "-n", 3, "-o", d / "no" / "o.npy"],
               "does not exist"),
    "count": (lambda d: ["sample", d / "c.pcir", "-n", 0, "-o", d / "o.npy"],
              "-n/--num-samples: must be an integer in 1.."),
    "evidence rows": (lambda d: ["sample", d / "c.pcir", "-n", 3, "--evidence", d / "x.npy",
                                 "-o", d / "o.npy"], "4 rows; expected 1 or -n = 3"),
    "roots": (_several_roots, "the circuit has 3 roots"),
    "continuous": (_gaussian, "variable 1 is continuous"),
    "impossible": (_impossible, "the evidence has probability 0"),
    "reference on cuda": (lambda d: ["sample", d / "c.pcir", "-n", 3, "--device", "cuda",
                                     "--backend", "reference", "-o", d / "o.npy"],
                          "runs on the CPU only"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_user_errors_exit_2_and_write_nothing(files, capsys, case):
    d, _ = files
    make, message = BAD[case]
    argv = make(d)
    before = set(d.rglob("*"))
    rc, _, err = run(capsys, *argv)
    assert rc == 2 and 1 <= len(err) <= 2 and message in err[-1], err
    assert set(d.rglob("*")) == before
