"""One rule for missing values in every backend: NaN is missing, ``-1`` is missing on a discrete
variable only; on a continuous variable ``-1.0`` is a value (float and integer data alike)."""

from __future__ import annotations

import math
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import pccc  # noqa: E402
from pccc.backends.reference import log_likelihood  # noqa: E402
from pccc.backends.reference.lowered import evaluate_any  # noqa: E402
from pccc.cli.main import main  # noqa: E402
from pccc.ir import CircuitBuilder, to_text  # noqa: E402
from pccc.passes import compile_plan  # noqa: E402

MU, SD, P = 0.5, 2.0, 0.3


def _circuit():
    b = CircuitBuilder()
    g = b.input(0, "gaussian", params=[[MU, SD]])
    x = b.input(1, "bernoulli", params=[P])
    return b.build(b.sum([b.product([g, x])]))


def _normal(v: float) -> float:
    return -0.5 * ((v - MU) / SD) ** 2 - math.log(SD) - 0.5 * math.log(2 * math.pi)


X = np.array([[-1.0, 1.0], [np.nan, -1.0], [-1.0, np.nan], [2.0, 0.0]])
WANT = np.array([_normal(-1.0) + math.log(P), 0.0, _normal(-1.0), _normal(2.0) + math.log(1 - P)])


def test_reference_at_every_level():
    c = _circuit()
    np.testing.assert_allclose(log_likelihood(c, X), WANT, rtol=1e-12)
    np.testing.assert_allclose(log_likelihood(c, np.array([[-1, 1]])), WANT[:1], rtol=1e-12)
    plan = compile_plan(c)
    np.testing.assert_allclose(evaluate_any(plan, X), WANT, rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch(dtype):
    model = pccc.compile(_circuit(), backend="torch", dtype=dtype)
    with torch.no_grad():
        got = model(torch.tensor(X)).double().numpy()
        ints = model(torch.tensor([[-1, 1], [2, -1]])).double().numpy()
    np.testing.assert_allclose(got, WANT, rtol=1e-5)
    np.testing.assert_allclose(ints, [WANT[0], _normal(2.0)], rtol=1e-5)


@pytest.mark.interpret
@pytest.mark.usefixtures("triton_cache")
def test_triton():
    pytest.importorskip("triton")
    dev = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"
    model = pccc.compile(_circuit(), backend="triton", device=dev)
    with torch.no_grad():
        got = model(torch.tensor(X, device=dev)).double().cpu().numpy()
    np.testing.assert_allclose(got, WANT, rtol=1e-5)


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_eval_reads_minus_one_as_a_value_on_a_gaussian_column(tmp_path, capsys, backend):
    (tmp_path / "c.pcir").write_text(to_text(_circuit()))
    (tmp_path / "x.csv").write_text("-1,1\n?,?\n-1,?\n2,0\n")
    assert main(["eval", str(tmp_path / "c.pcir"), "--data", str(tmp_path / "x.csv"),
                 "--backend", backend, "--out", str(tmp_path / "ll.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "ll.npy"), WANT, rtol=1e-5)
