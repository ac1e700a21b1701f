"""Elided arrays: printing for a human may elide, writing a file must not, and a file with
elided arrays is refused by every reader unless the caller opts in."""

from __future__ import annotations

import numpy as np
import pytest

from pccc import formats
from pccc.backends.reference import log_likelihood
from pccc.backends.reference.lowered import evaluate_any
from pccc.cli.main import main
from pccc.ir import CircuitBuilder, ParseError, to_text
from pccc.ir.parse_lowered import read_pcir_any


@pytest.fixture
def big(tmp_path):
    b = CircuitBuilder(rng=0)
    x = [b.input(v, "categorical", n=32, card=12) for v in range(2)]
    c = b.build(b.sum([b.sum([b.product(x)], n=32)], n=1))
    path = tmp_path / "big.jpc"
    formats.save(c, path)
    return c, path


@pytest.mark.parametrize("pipeline", ["canonicalize", "default"])
def test_stdout_to_a_file_is_complete_and_reads_back(big, tmp_path, capsys, pipeline):
    c, path = big
    assert main(["opt", str(path), "-p", pipeline]) == 0
    text = capsys.readouterr().out
    assert "elided" not in text
    (tmp_path / "out.pcir").write_text(text)
    x = np.array([[0, 11], [3, -1]])
    got = evaluate_any(read_pcir_any(tmp_path / "out.pcir"), x)
    np.testing.assert_allclose(got, log_likelihood(c, x), rtol=1e-9)


def test_an_elided_file_is_refused_unless_allowed(big, tmp_path, capsys):
    c, _ = big
    src = tmp_path / "e.pcir"
    src.write_text(to_text(c, elide_above=16))
    assert main(["opt", str(src), "-p", "canonicalize", "-o", str(tmp_path / "x.jpc")]) == 2
    err = capsys.readouterr().err
    assert f"{src}:" in err and "elided" in err and len(err.strip().splitlines()) <= 2
    assert not (tmp_path / "x.jpc").exists()
    for command in (["info", str(src)], ["convert", str(src), str(tmp_path / "y.jpc")]):
        assert main(command) == 2
        assert "elided" in capsys.readouterr().err
    with pytest.raises(ParseError, match="elided"):
        formats.load(src)
    assert main(["opt", str(src), "-p", "canonicalize", "--allow-elided", "-o",
                 str(tmp_path / "x.jpc")]) == 0


def test_an_elided_plan_is_refused_unless_allowed(big, tmp_path, capsys):
    _, path = big
    assert main(["opt", str(path), "--elide-above", "8"]) == 0
    src = tmp_path / "plan.pcir"
    src.write_text(capsys.readouterr().out)
    assert "elided" in src.read_text()
    assert main(["opt", str(src), "-o", str(tmp_path / "again.pcir")]) == 2
    assert "elided" in capsys.readouterr().err
    assert not (tmp_path / "again.pcir").exists()
