"""``pccc.compile`` verifies its circuit by default; ``pccc compile`` and ``pccc train`` report a
broken circuit in two lines with exit status 2."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import pccc
from pccc.cli.main import main
from pccc.ir import CircuitBuilder, VerifyError
from pccc.ir.circuit import Circuit, InputVector, SumVector
from pccc.ir.verify import verified


def _not_smooth() -> Circuit:
    b = CircuitBuilder()
    x0 = b.input(0, "bernoulli", params=[0.3])
    x1 = b.input(1, "bernoulli", params=[0.6])
    b.sum([x0, x1], weights=[[0.5, 0.5]])         # %2: children over {0} and {1}
    return b.build()


def _not_decomposable() -> Circuit:
    b = CircuitBuilder()
    x0 = b.input(0, "bernoulli", params=[0.3])
    x1 = b.input(0, "bernoulli", params=[0.6])
    p = b.product([x0, x1])                       # %2: both over variable 0
    b.sum([p], weights=[[1.0]])
    return b.build()


@pytest.mark.parametrize("make, message", [
    (_not_smooth, r"node %2: not smooth: children %0 and %1 have scopes \{0\} and \{1\}"),
    (_not_decomposable, r"node %2: not decomposable: children %0 and %1 share variable 0"),
])
def test_compile_refuses_with_the_verifiers_message(make, message):
    with pytest.raises(VerifyError, match=message):
        pccc.compile(make())
    model = pccc.compile(make(), verify=False)    # the check skipped: the module is built
    assert model.source_circuit is not None


def _two_inputs(p1: float, w: float) -> Circuit:
    """A smooth, decomposable mixture of two Bernoulli inputs with the given values."""
    return Circuit((InputVector(1, 0, "bernoulli", (), "p0"),
                    InputVector(1, 0, "bernoulli", (), "p1"), SumVector(1, (0, 1), "w")),
                   {"p0": np.array([0.3]), "p1": np.array([p1]), "w": np.array([[0.5, w]])})


@pytest.mark.parametrize("p1, w, message", [
    (np.nan, 0.5, r"node %1: parameter @p1: bernoulli probabilities"),
    (0.6, -0.5, r"node %2: sum weights @w must be finite and >= 0"),
])
def test_parameter_values_are_checked_while_compiling(p1, w, message):
    with pytest.raises(VerifyError, match=message):
        pccc.compile(_two_inputs(p1, w))


def test_verified_names_the_circuit_before_the_blocks_own_error():
    with pytest.raises(VerifyError, match=r"node %2: sum weights @w must") as e:
        with verified(_two_inputs(0.6, np.inf)):
            raise RuntimeError("a pass failed on the bad weights")
    assert isinstance(e.value.__context__, RuntimeError)
    with pytest.raises(RuntimeError):           # a good circuit: the block's own error
        with verified(_two_inputs(0.6, 0.5)):
            raise RuntimeError("a pass failed")
    with pytest.raises(VerifyError, match="not smooth"):   # structure: refused on entry
        with verified(_not_smooth()):
            pytest.fail("the block ran")


def _write_bad(tmp_path: Path) -> Path:
    path = tmp_path / "bad.pcir"
    pccc.save(_not_smooth(), path)
    return path


def _two_line_error(capsys: pytest.CaptureFixture[str]) -> list[str]:
    err = capsys.readouterr().err.strip().splitlines()
    assert 1 <= len(err) <= 2 and "Traceback" not in "".join(err)
    assert re.match(r"pccc: error: \S*bad\.pcir:5: node %2: not smooth", err[0]), err[0]
    return err


def test_cli_compile_reports_the_verifiers_message(tmp_path, capsys):
    out = tmp_path / "m.pccm"
    assert main(["compile", str(_write_bad(tmp_path)), "-o", str(out)]) == 2
    assert "%2 = sum(%0, %1)" in _two_line_error(capsys)[-1]
    assert not out.exists()


def test_cli_train_reports_the_verifiers_message(tmp_path, capsys):
    x = np.random.default_rng(0).integers(0, 2, (40, 2))
    for split in ("train", "valid", "test"):
        np.savetxt(tmp_path / f"toy.{split}.data", x, fmt="%d", delimiter=",")
    out = tmp_path / "m.jpc"
    rc = main(["train", "--structure", str(_write_bad(tmp_path)), "--data", str(tmp_path),
               "--epochs", "1", "--no-progress", "-o", str(out)])
    assert rc == 2
    _two_line_error(capsys)
    assert not out.exists()
