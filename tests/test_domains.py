"""One variable, one domain: inputs that give a variable different numbers of values, or a
discrete and a continuous domain, are refused before anything evaluates them."""

from __future__ import annotations

import numpy as np
import pytest

import pccc.formats as formats
from pccc.cli.main import main
from pccc.ir import Circuit, CircuitBuilder, VerifyError, is_normalized, verify
from pccc.ir.verify_arrays import passes_checks

# a categorical of 2 values beside an indicator of value 2 (3 values) on variable 1
SHORT_CAT = "jpc 3\nC 0 0 1 -0.69314718 -0.69314718\nI 1 0 1 2\nS 2 0 2 0 -0.7 1 -0.7\n"
# a gaussian and a literal on variable 1
GAUSS_LIT = "jpc 3\nG 0 0 1 0.0 1.0\nL 1 0 1\nS 2 0 2 0 -0.6931471805599453 1 -0.6931471805599453\n"


@pytest.mark.parametrize("text", [SHORT_CAT, GAUSS_LIT], ids=["short-categorical", "gauss-lit"])
@pytest.mark.parametrize("command", ["info", "eval"])
def test_the_cli_refuses_two_domains_in_two_lines(tmp_path, capsys, text, command):
    (tmp_path / "c.jpc").write_text(text)
    (tmp_path / "x.csv").write_text("2\n0\n1\n")
    args = [command, str(tmp_path / "c.jpc")]
    if command == "eval":
        args += ["--data", str(tmp_path / "x.csv"), "--out", str(tmp_path / "ll.npy")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "one domain" in err and len(err.strip().splitlines()) <= 2
    assert not (tmp_path / "ll.npy").exists()


def test_two_domains_are_not_normalized(tmp_path):
    (tmp_path / "c.jpc").write_text(GAUSS_LIT)
    assert not is_normalized(formats.load(tmp_path / "c.jpc"))


def _two(dist_a: str, attrs_a: dict, dist_b: str, attrs_b: dict) -> Circuit:
    b = CircuitBuilder()
    x = b.input(0, dist_a, **attrs_a)
    y = b.input(0, dist_b, **attrs_b)
    return b.build(b.sum([x, y], weights=[[0.5, 0.5]]))


@pytest.mark.parametrize("a,b", [
    (("binomial", {"total": 1}), ("indicator", {"card": 3, "values": [2]})),
    (("categorical", {"card": 4}), ("categorical", {"card": 3})),
    (("bernoulli", {}), ("gaussian", {})),
    (("gaussian", {}), ("categorical", {"card": 2})),
])
def test_the_verifier_names_the_second_domain(a, b):
    c = _two(a[0], a[1], b[0], b[1])
    assert not passes_checks(c)
    with pytest.raises(VerifyError, match=r"^node %1: variable 0 has .* at node %0 .* one "
                                          r"variable, one domain"):
        verify(c)


def test_one_domain_passes():
    c = _two("binomial", {"total": 2}, "indicator", {"card": 3, "values": [2]})
    verify(c)
    assert passes_checks(c)
    assert np.isfinite(c.params[c.nodes[0].param]).all()
