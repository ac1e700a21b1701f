"""``benchmarks/kernel_regs.py``: the first batch's kernels of a small circuit compiled offline
for sm_90 (no GPU), run in its own process (it imports the kernels with the interpreter off)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# not imported here: triton reads TRITON_INTERPRET once, when first imported, and the
# interpreter tests collected after this file set it
if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed", allow_module_level=True)
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.heavy
def test_dense_circuit_kernels_compile_offline(tmp_path):
    env = dict(os.environ, PCCC_CACHE_DIR=str(tmp_path / "pccc"),
               TRITON_CACHE_DIR=str(tmp_path / "triton"), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kernel_regs.py"), "dense"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = re.findall(r"^(\w+)\s.*regs\s+(\d+) local\s+(\d+)", out.stdout, re.M)
    names = {n for n, _, _ in rows}
    # the forward's input and sum kernels and the backward's (EM statistics) all compiled
    assert {"input_fwd_categorical", "input_bwd_categorical"} <= names, out.stdout
    assert any(n.startswith("sum_fwd_b32_c32") for n in names)
    assert any(n.startswith("sum_bwd_") for n in names)
    assert all(0 < int(r) <= 255 for _, r, _ in rows)
    m = re.search(r"(\d+) specializations", out.stdout)
    assert m and int(m.group(1)) == len(rows)
