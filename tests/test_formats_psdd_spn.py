"""``.psdd`` and ``.spn`` readers against brute-force enumeration of hand-written files."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import pccc.formats as formats
from pccc.backends.reference.evaluate import log_likelihood
from pccc.ir.circuit import InputVector
from pccc.ir.verify import is_normalized, verify

# P(X1, X2) = 0.3 [X1=1] Bern(X2; 0.9) + 0.7 [X1=0] [X2=0]; real-file quirks: ids out of order
# and not from 0, a wrong count, a trailing space, Java-style floats, a duplicated literal
PSDD = """c ids of psdd nodes start at 0 (not here)
psdd 1000
L 17 0 1{SPACE}
L 5 0 -1
T 23 1 2 -1.0536051565782630E-1
L 2 1 -2
L 40 0 -1
D 90 2 2 17 23 -1.2039728043259361 40 2 -3.5667494393873245E-1
""".replace("{SPACE}", " ")

SPN = """(2 3)
v 0 1
v 0 0
v 1 2
v 1 0
v 1 1
* 0 2
+ 3 -0.6931471805599453 4 -0.6931471805599453
* 1 6
+ 5 0.0 7 -1.3862943611198906
EOF
"""


def _psdd_prob(x1: int, x2: int) -> float:
    return 0.3 * (x1 == 1) * (0.9 if x2 == 1 else 0.1) + 0.7 * (x1 == 0) * (x2 == 0)


def test_psdd_quirks_and_probabilities(tmp_path):
    p = tmp_path / "q.psdd"
    p.write_text(PSDD)
    c = formats.load(p)
    verify(c)
    assert is_normalized(c)
    x = np.array(list(itertools.product(range(2), range(2))))
    got = np.exp(log_likelihood(c, x))
    want = [_psdd_prob(a, b) for a, b in x.tolist()]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # marginal of X1 = 1 (X2 missing)
    assert math.exp(log_likelihood(c, np.array([[1, -1]]))[0]) == pytest.approx(0.3, rel=1e-12)


def test_psdd_literals_are_deduplicated(tmp_path):
    p = tmp_path / "q.psdd"
    p.write_text(PSDD)
    c = formats.load(p)
    lits = [(nd.var, nd.attrs) for nd in c.nodes
            if isinstance(nd, InputVector) and nd.dist == "indicator"]
    assert len(lits) == len(set(lits)) == 3  # L 5 and L 40 are the same literal -X1
    # a decision node is a sum over products prime x sub
    assert [nd.kind for nd in c.nodes[-3:]] == ["product", "product", "sum"]


def test_psdd_root_may_be_a_repeated_literal(tmp_path):
    p = tmp_path / "r.psdd"
    p.write_text("psdd 2\nL 0 0 1\nL 1 0 1\n")
    c = formats.load(p)
    np.testing.assert_allclose(np.exp(log_likelihood(c, np.array([[0], [1]]))), [0.0, 1.0])


def _spn_exact(x1: int, x2: int) -> float:
    # node 5 = [X1=1][X2=2]; node 7 = [X1=0] (0.5 [X2=0] + 0.5 [X2=1]); root = n5 + 0.25 n7
    return 1.0 * (x1 == 1) * (x2 == 2) + 0.25 * (x1 == 0) * (0.5 * (x2 == 0) + 0.5 * (x2 == 1))


def test_spn_probabilities_and_domains(tmp_path):
    p = tmp_path / "s.spn"
    p.write_text(SPN)
    c = formats.load(p)
    verify(c)
    assert c.num_vars == 2
    cards = {nd.var: dict(nd.attrs)["card"] for nd in c.nodes if isinstance(nd, InputVector)}
    assert cards == {0: 2, 1: 3}
    x = np.array(list(itertools.product(range(2), range(3))))
    want = [_spn_exact(a, b) for a, b in x.tolist()]
    np.testing.assert_allclose(np.exp(log_likelihood(c, x)), want, rtol=1e-12)
