"""``benchmarks/kernel_regs.py``: the first batch's kernels of a small circuit on a GPU, their
registers read from the compiled kernels Triton's launches return. Run in its own process (it
needs Triton with the interpreter off); skipped without a CUDA device."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# triton is not imported here: it reads TRITON_INTERPRET once, when first imported, and the
# interpreter tests collected after this file set it
if importlib.util.find_spec("triton") is None or importlib.util.find_spec("torch") is None:
    pytest.skip("triton or torch is not installed", allow_module_level=True)
ROOT = Path(__file__).resolve().parents[1]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.heavy
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA device")
def test_dense_circuit_kernels_report_registers(tmp_path):
    env = dict(os.environ, PCCC_CACHE_DIR=str(tmp_path / "pccc"),
               TRITON_CACHE_DIR=str(tmp_path / "triton"), PYTHONPATH=str(ROOT),
               TRITON_INTERPRET="0")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kernel_regs.py"), "dense"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = re.findall(r"^(\w+)\s.*regs\s+(\d+) spills\s+(\d+)", out.stdout, re.M)
    names = {n for n, _, _ in rows}
    # the forward's input and sum kernels, the backward's (EM statistics) and the EM step's
    assert {"input_fwd_categorical", "em_weights"} <= names, out.stdout
    assert any(n.startswith("sum_fwd_b32_c32") for n in names)
    assert any(n.startswith("sum_bwd_") for n in names)
    assert all(0 < int(r) <= 255 for _, r, _ in rows)
    m = re.search(r"(\d+) specializations", out.stdout)
    assert m and int(m.group(1)) == len(rows)
