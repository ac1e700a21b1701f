"""Errors name the place, and nothing else reaches stderr: a log-weight too large for float64
in every scalar format (numpy's overflow warning stays quiet; the verifier names the line)."""

from __future__ import annotations

import warnings

import pytest

import pccc
from pccc.cli.main import main
from pccc.ir import verify

FILES = {
    "w.jpc": "jpc 4\nL 0 0 1\nL 1 0 -1\nS 2 0 2 0 710.0 1 -0.5\nS 3 0 1 2 0.0\n",
    "w2.jpc": "c comments send it to the line reader\njpc 4\nL 0 0 1\nL 1 0 -1\n"
              "S 2 0 2 0 1000.5 1 -0.5\nS 3 0 1 2 0.0\n",
    "w.psdd": "psdd 4\nL 0 0 1\nL 1 0 -1\nT 2 0 1 -0.5\nD 3 0 2 0 2 710 1 2 -1\n",
    "w.spn": "(2)\nv 0 0\nv 0 1\n+ 0 710 1 -1\nEOF\n",
}


@pytest.mark.parametrize("name", list(FILES))
def test_a_huge_log_weight_is_located_without_a_numpy_warning(tmp_path, capsys, name):
    path = tmp_path / name
    path.write_text(FILES[name])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (any RuntimeWarning fails the test)
        circuit = pccc.load(path)
        with pytest.raises(pccc.PcccError, match="must be finite"):
            verify(circuit)
        assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    line = [i for i, t in enumerate(FILES[name].splitlines(), 1) if "710" in t or "1000" in t]
    assert err.startswith(f"pccc: error: {path}:{line[0]}: node ") and "Warning" not in err
