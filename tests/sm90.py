"""Offline kernel builds for the heavy tests: Triton kernels compiled to PTX for an H100
(sm_90) without a GPU, which makes the type and layout checks the interpreter does not.

A build runs in a subprocess without the interpreter (:func:`run_offline`): the test modules
set ``TRITON_INTERPRET=1`` before Triton is imported."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from typing import Any


def compile_for_sm90(builds: Iterable[tuple[Any, dict[str, str], dict[str, Any]]]) -> None:
    """Compile each ``(kernel, signature without constexprs, constexpr values)`` to PTX."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    for fn, sig, consts in builds:
        sig = {**sig, **{k: "constexpr" for k in consts}}
        src = ASTSource(fn=fn, signature=sig, constexprs=consts)
        out = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
        assert "ptx" in out.asm and out.asm["ptx"], fn


def run_offline(module: str, function: str) -> None:
    """Call ``module.function()`` in a new process without the interpreter; fails with its
    error output."""
    env = dict(os.environ, TRITON_INTERPRET="0")
    code = f"from {module} import {function} as b; b()"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
