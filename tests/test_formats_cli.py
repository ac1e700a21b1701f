"""``pccc convert`` / ``pccc eval`` on the Juice and PSDD formats, as a user runs them."""

from __future__ import annotations

import contextlib
import gzip
import io
import itertools
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pccc.formats as formats
from pccc.backends.reference.evaluate import log_likelihood
from pccc.cli.main import main
from tests.test_formats_psdd_spn import PSDD, SPN

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
PSDDS = DATA / "circuits" / "psdds"
needs_data = pytest.mark.skipif(not PSDDS.is_dir(), reason="../shared/data is absent")

JPC = ("jpc 7\nL 0 0 1\nL 1 0 -1\nI 2 0 2 1\nC 3 0 2 -0.5108256237659907 -0.916290731874155\n"
       "P 4 0 2 0 2\nP 5 0 2 1 3\nS 6 0 2 4 -0.2231435513142097 5 -1.6094379124341003\n")


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def _sources(tmp: Path) -> dict[str, Path]:
    files = {"a.psdd": PSDD, "a.spn": SPN, "a.jpc": JPC}
    out = {}
    for name, text in files.items():
        (tmp / name).write_text(text)
        out[name] = tmp / name
    (tmp / "b.jpc.gz").write_bytes(gzip.compress(JPC.encode()))
    out["b.jpc.gz"] = tmp / "b.jpc.gz"
    return out


def _all_inputs(c) -> np.ndarray:
    cards = [c.var_cards().get(v, 2) for v in range(c.num_vars)]
    full = np.array(list(itertools.product(*[range(k) for k in cards])))
    return np.concatenate([full, np.full((1, c.num_vars), -1)])


@pytest.mark.parametrize("target", [".jpc", ".jpc.gz", ".pcir"])
def test_convert_every_readable_to_every_writable(tmp_path, target):
    for name, src in _sources(tmp_path).items():
        original = formats.load(src)
        x = _all_inputs(original)
        dst = tmp_path / (name.replace(".", "_") + target)
        rc, out, err = _run("convert", str(src), str(dst))
        assert rc == 0, err
        once = formats.load(dst)
        np.testing.assert_allclose(log_likelihood(once, x), log_likelihood(original, x),
                                   rtol=0, atol=1e-12)
        # and back to .jpc from the converted file
        back = tmp_path / (dst.name + ".back.jpc")
        assert _run("convert", str(dst), str(back))[0] == 0
        np.testing.assert_allclose(log_likelihood(formats.load(back), x),
                                   log_likelihood(original, x), rtol=0, atol=1e-12)


def _mean_ll(stdout: str) -> float:
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("mean log-likelihood:")
    return float(last.split(":")[1])


@needs_data
def test_eval_nltcs_reproduces_the_zoo_value(tmp_path):
    test = DATA / "debd" / "nltcs" / "nltcs.test.data.gz"
    rc, out, err = _run("eval", str(PSDDS / "nltcs.psdd.gz"), "--data", str(test))
    assert rc == 0, err
    assert _mean_ll(out) == pytest.approx(-6.044764458, abs=1e-6)
    # the same through a converted .jpc.gz
    jpc = tmp_path / "nltcs.jpc.gz"
    assert _run("convert", str(PSDDS / "nltcs.psdd.gz"), str(jpc))[0] == 0
    rc, out2, _ = _run("eval", str(jpc), "--data", str(test))
    assert rc == 0
    assert _mean_ll(out2) == pytest.approx(_mean_ll(out), abs=1e-12)


@needs_data
def test_eval_little_4var_marginal(tmp_path):
    data = tmp_path / "q.csv"
    data.write_text("0,0,0,?\n0,0,0,0\n")
    rc, out, err = _run("eval", str(PSDDS / "little_4var.psdd"), "--data", str(data),
                        "--out", str(tmp_path / "ll.npy"))
    assert rc == 0, err
    ll = np.load(tmp_path / "ll.npy")
    assert ll[0] == pytest.approx(-1.0498221245, abs=1e-9)
    assert np.exp(ll[1]) == pytest.approx(0.07, abs=1e-12)


BAD = {
    "cycle.jpc": b"jpc 2\nS 0 0 1 1 0.0\nS 1 0 1 0 0.0\n",
    "nan.psdd": b"psdd 2\nL 0 0 1\nL 2 0 2\nD 1 0 1 0 2 nan\n",
    "eof.spn": b"(2)\nv 0 1\n",
    "empty.jpc": b"",
    "pickle.jpc": pickle.dumps({"a": 1}),
    "trunc.jpc.gz": gzip.compress(JPC.encode())[:25],
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_exits_2_and_writes_nothing(tmp_path, name):
    src = tmp_path / name
    src.write_bytes(BAD[name])
    dst = tmp_path / "out.jpc"
    rc, out, err = _run("convert", str(src), str(dst))
    assert rc == 2
    assert "Traceback" not in err
    assert str(src) in err and len(err.strip().splitlines()) <= 2
    assert not dst.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_bad_input_in_a_real_process_has_no_traceback(tmp_path):
    src = tmp_path / "bad.jpc"
    src.write_bytes(b"jpc 2\nL 0 0 1\nS 1 0 1 0 abc\n")
    argv = [sys.executable, "-m", "pccc", "convert", str(src), str(tmp_path / "o.pcir")]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert f"{src}:3:11:" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o.pcir").exists()
