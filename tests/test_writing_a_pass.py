"""The worked example of ``docs/writing-a-pass.md``, run from the doc itself: the pass code is
cut out of the first Python block, written to a file and loaded by ``pccc opt --load``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pccc import formats
from pccc.backends.reference import log_likelihood
from pccc.cli.main import main
from pccc.ir import CircuitBuilder
from pccc.ir.circuit import SumVector
from pccc.passes.registry import unregister_pass

DOC = Path(__file__).parent.parent / "docs" / "writing-a-pass.md"


def _example(tmp_path: Path) -> Path:
    code = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)[0]
    path = tmp_path / "temper.py"
    path.write_text(code)
    return path


@pytest.fixture
def model(tmp_path):
    b = CircuitBuilder(rng=0)
    x = [b.input(v, "categorical", n=2, card=3) for v in range(2)]
    s = b.sum([b.product(x)], n=1)
    path = tmp_path / "model.jpc"
    c = b.build(s)
    formats.save(c, path)
    return formats.load(path), path


def test_the_documented_pass_runs_from_the_command_line(tmp_path, model, capsys):
    c, path = model
    plugin = _example(tmp_path)
    try:
        assert main(["passes", "--load", str(plugin)]) == 0
        listing = capsys.readouterr().out
        assert "temper               L0 -> L0  Raise every sum weight to a power." in listing
        assert "normalize=bool (default true): rescale every row" in listing
        out = tmp_path / "tempered.pcir"
        assert main(["opt", str(path), "--load", str(plugin), "-p", "temper{power=3}",
                     "-o", str(out)]) == 0
        got = formats.load(out)
        for nd in c.nodes:
            if isinstance(nd, SumVector):
                w = c.params[nd.param] ** 3
                np.testing.assert_allclose(got.params[nd.param],
                                           w / w.sum(axis=1, keepdims=True))
        x = np.array([[0, 1], [2, -1]])
        assert not np.allclose(log_likelihood(got, x), log_likelihood(c, x))
        assert main(["opt", str(path), "--load", str(plugin), "-p",
                     "temper{power=0.5},default", "--print-after", "temper"]) == 0
        assert "IR dump after temper" in capsys.readouterr().out
        assert main(["opt", str(path), "--load", str(plugin), "-p", "temper{pow=2}"]) == 2
        assert "options: power, normalize" in capsys.readouterr().err
    finally:
        unregister_pass("temper")


def test_plugins_load_from_the_environment_in_a_fresh_process(tmp_path, model):
    _, path = model
    plugin = _example(tmp_path)
    env = {"PCCC_PLUGINS": str(plugin), "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-m", "pccc", "opt", str(path), "-p", "temper"],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("pcir 1 L0")
