"""Where a workload's first epoch spends more than its second. Runs one workload the way
``gpu_bench.py`` does (structure, compile, first batch), then times the first batches of epoch
1 and of epoch 2 step by step (forward, backward, EM step, each synchronized), logs every
Triton compile after the first batch (``triton.knobs.runtime.jit_post_compile_hook``) and each
pass's first call (``startup_log``: parallel compile, first run, graph recording); with
``--profile``, cProfile's top functions over the first batch and the first EM step (notes log
102 found the host launchers' builds this way).

Run on the GPU machine: ``python benchmarks/epoch1_cost.py --mnist .bench/mnist.npz
[--which hclt32] [--steps 6] [--profile]``
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from typing import Any

import numpy as np
import torch

import pccc
from benchmarks.gpu_bench import BATCH, build
from pccc.optim import MiniBatchEM

DEV = "cuda"


def _timed(fn: Any) -> float:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def _steps(model: Any, opt: Any, xg: torch.Tensor, first: int, count: int
           ) -> list[tuple[int, float, float, float]]:
    """(batch, forward s, backward s, EM step s) of ``count`` batches from ``first``."""
    out = []
    for i in range(first, first + count):
        box: dict[str, Any] = {}
        xb = xg[i * BATCH: (i + 1) * BATCH]
        tf = _timed(lambda: box.__setitem__("ll", model(xb)))  # noqa: B023
        tb = _timed(lambda: box["ll"].mean().backward())  # noqa: B023
        te = _timed(lambda: (opt.step(), model.zero_grad(set_to_none=True)))
        out.append((i, tf, tb, te))
    return out


def main() -> None:
    from triton import knobs

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mnist", required=True)
    ap.add_argument("--which", default="hclt32")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--profile", action="store_true",
                    help="cProfile the first batch and the first EM step: the top functions")
    a = ap.parse_args()
    d = np.load(a.mnist)
    x = d["x_train"].reshape(len(d["x_train"]), -1).astype(np.int64)
    xg = torch.as_tensor(x, device=DEV)
    compiles: list[tuple[float, str, bool]] = []
    t_start = time.perf_counter()

    def hook(*, key: str, repr: str, fn: Any, compile: Any, is_manual_warmup: bool,
             already_compiled: bool) -> None:
        compiles.append((time.perf_counter() - t_start, fn.name, is_manual_warmup))

    for name in a.which.split(","):
        c = build(name, x, xg)
        model = pccc.compile(c, backend="triton", device=DEV, precision="tf32")
        model.param_grads = False
        prof = cProfile.Profile() if a.profile else None
        if prof is not None:
            prof.enable()
        t_first = _timed(lambda: (model(xg[:BATCH]).mean().backward(),  # noqa: B023
                                  model.zero_grad(set_to_none=True),  # noqa: B023
                                  model.zero_flows()))  # noqa: B023
        opt = MiniBatchEM(model, step_size=0.1, pseudocount=0.1)
        if prof is not None:
            _steps(model, opt, xg, 0, 1)
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
            pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
        compiles.clear()
        knobs.runtime.jit_post_compile_hook = hook
        t_mark = time.perf_counter() - t_start
        rows = _steps(model, opt, xg, 0, a.steps)
        nb = xg.shape[0] // BATCH
        t_rest = _timed(lambda: _steps(model, opt, xg, a.steps, nb - a.steps))  # noqa: B023
        rows2 = _steps(model, opt, xg, 0, a.steps)
        knobs.runtime.jit_post_compile_hook = None
        print(f"## {name}: first batch {t_first:.3f} s; epoch 1 after its first "
              f"{a.steps} batches {t_rest:.3f} s")
        print("| epoch | batch | forward ms | backward ms | EM step ms |")
        print("|---|---:|---:|---:|---:|")
        for ep, rs in ((1, rows), (2, rows2)):
            for i, tf, tb, te in rs:
                print(f"| {ep} | {i} | {tf * 1e3:.2f} | {tb * 1e3:.2f} | {te * 1e3:.2f} |")
        print(f"Triton compiles after the first batch: {len(compiles)}")
        for t, fname, warm in compiles:
            print(f"  {t - t_mark:8.3f} s  {fname}{' (warmup)' if warm else ''}")
        for r in getattr(model.executor, "startup_log", []):
            print("  first call:", r)


if __name__ == "__main__":
    main()
