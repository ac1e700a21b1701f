"""Registers, spills, shared memory and compile time of a workload's kernels, on a CUDA GPU.

The first training batch (forward and backward, EM statistics as in the benchmark, then one EM
step) runs with a tap on the module's kernel table: each launch goes through, and the compiled
kernel that Triton's launch returns is kept, once per distinct launch (``prejit.launch_key``).
The report reads what a compiled kernel publicly exposes: ``n_regs``, ``n_spills`` and
``metadata.shared``; a launch's compile time is the time of its first launch (the compile is
synchronous). CUDA graphs and the parallel compile are off, so every kernel compiles at its
launch.

    python benchmarks/kernel_regs.py hclt128 [--mnist .bench/mnist.npz] [--only sum_bwd]

Workloads are ``gpu_bench.py``'s (HCLT from MNIST: ``--mnist``; without it, random pixels) and
``dense`` (the 32-node test circuit of ``tests/test_triton_backend.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def workload(name: str, mnist: str | None) -> tuple[Any, np.ndarray]:
    """The circuit of a benchmark workload (or the dense test circuit) and a batch for it."""
    rng = np.random.default_rng(0)
    if name == "dense":
        from tests.test_triton_backend import _dense_circuit

        return _dense_circuit(), rng.integers(0, 5, size=(512, 4))
    from benchmarks.gpu_bench import build

    if mnist and os.path.exists(mnist):
        x = np.load(mnist)["x_train"].reshape(60000, -1).astype(np.int64)
    else:
        x = rng.integers(0, 256, size=(20000, 784))
    return build(name, x, torch.as_tensor(x, device="cuda")), x[:512]


class Tap:
    """Stands in for a kernel table: launches go through; the first launch of each
    ``launch_key`` is timed and the compiled kernel it returns kept (``rows``)."""

    def __init__(self, table: Any):
        self._table = table
        self.rows: dict[Any, dict[str, Any]] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        kernel = getattr(self._table, name)
        tap = self

        class Grid:
            def __getitem__(self, grid: Any) -> Callable[..., Any]:
                def launch(*args: Any, **kw: Any) -> Any:
                    from pccc.backends.triton.prejit import launch_key

                    key = launch_key(name, args, kw)
                    t = time.perf_counter()
                    compiled = kernel[grid](*args, **kw)
                    if key not in tap.rows:
                        tap.rows[key] = dict(name=name, kw=kw, compiled=compiled,
                                             secs=time.perf_counter() - t)
                    return compiled
                return launch
        return Grid()


def first_batch(circuit: Any, x: np.ndarray, precision: str, options: dict | None = None
                ) -> list[dict[str, Any]]:
    """One forward, EM backward and EM step through a :class:`Tap`: its rows."""
    import pccc

    model = pccc.compile(circuit, backend="triton", device="cuda", precision=precision,
                         cuda_graphs=False, parallel_jit=False, overlap_em=False,
                         **(options or {}))
    model.param_grads = False
    tap = Tap(model.executor.dp.k)
    model.executor.dp.k = tap
    model.executor.kernels = tap
    model(torch.as_tensor(x, device="cuda")).mean().backward()
    model.em_step(0.1, 0.1)
    torch.cuda.synchronize()
    return list(tap.rows.values())


def report(rows: list[dict[str, Any]], only: str) -> list[dict[str, Any]]:
    """One printed line and one dict per compiled kernel whose name contains ``only``."""
    out = []
    for r in rows:
        if only not in r["name"] or r["compiled"] is None:
            continue
        k = r["compiled"]
        consts = ",".join(f"{n}={v}" for n, v in sorted(r["kw"].items()) if n != "num_warps")
        row = dict(kernel=r["name"], consts=consts, warps=r["kw"].get("num_warps", 4),
                   regs=k.n_regs, spills=k.n_spills, shared=k.metadata.shared,
                   compile_s=round(r["secs"], 2))
        out.append(row)
        print(f"{row['kernel']:32} {consts[:48]:48} w{row['warps']} regs {row['regs']:4} "
              f"spills {row['spills']:5} smem {row['shared']:6} {row['compile_s']:6.2f} s",
              flush=True)
    total = sum(r["compile_s"] for r in out)
    print(f"{len(out)} specializations, {total:.1f} s compiled one after another")
    return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("workload", help="hclt32 ... pd256 (gpu_bench.py's), or dense")
    ap.add_argument("--precision", default="tf32")
    ap.add_argument("--mnist", default=".bench/mnist.npz")
    ap.add_argument("--only", default="", help="report only kernels whose name contains this")
    ap.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                    help="a Triton backend option (repeatable)")
    a = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("kernel_regs.py needs a CUDA device")
    circuit, x = workload(a.workload, a.mnist)
    from benchmarks.bench_options import parse_options

    return report(first_batch(circuit, x, a.precision, parse_options(a.option)), a.only)


if __name__ == "__main__":
    main()
