"""How much of a training epoch the GPU idles between batches (notes log, step 55).

The benchmark loop (like PyJuice's) reads each batch's mean log-likelihood with ``float()``, a
host sync: the GPU then waits while the host prepares the next forward. This times an epoch
with that loop and without the sync (the sum kept on the device), and the host time of each
phase of a batch after a sync.

Run (GPU machine, repository root, ``.bench/mnist.npz`` present):
``python benchmarks/epoch_gap.py pd256 [hclt128 ...]``
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pccc  # noqa: E402
import pccc.backends.triton  # noqa: E402,F401
from benchmarks.gpu_bench import BATCH, build, epoch  # noqa: E402
from pccc.optim import MiniBatchEM  # noqa: E402


def probe(name: str, x: np.ndarray, xg: torch.Tensor) -> str:
    """One workload's line: the epoch with and without the per-batch sync, host phases."""
    batches = xg.shape[0] // BATCH
    m = pccc.compile(build(name, x), backend="triton", device="cuda")
    m.param_grads = False
    opt = MiniBatchEM(m, step_size=0.1, pseudocount=0.1)
    epoch(m, opt, xg, 20)  # JIT and graphs
    torch.cuda.synchronize()
    t = time.time()
    epoch(m, opt, xg)
    torch.cuda.synchronize()
    synced = time.time() - t
    t = time.time()
    tot = torch.zeros((), device="cuda")
    for s in range(0, batches * BATCH, BATCH):
        lls = m(xg[s: s + BATCH])
        lls.mean().backward()
        opt.step()
        m.zero_grad(set_to_none=True)
        tot += lls.detach().mean()
    float(tot)
    free = time.time() - t
    phases = np.zeros(4)
    for s in range(0, 40 * BATCH, BATCH):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        lls = m(xg[s: s + BATCH])
        t1 = time.perf_counter()
        lls.mean().backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        float(lls.detach().mean())
        phases += np.array([t1 - t0, t2 - t1, t3 - t2, time.perf_counter() - t3]) / 40
    return (f"{name}: epoch {synced:.3f} s, without the per-batch sync {free:.3f} s: "
            f"{(synced - free) / batches * 1e3:.3f} ms idle a batch; host ms after a sync: "
            f"forward {phases[0] * 1e3:.3f}, backward {phases[1] * 1e3:.3f}, EM step "
            f"{phases[2] * 1e3:.3f}, until the sync returns {phases[3] * 1e3:.3f}")


def main() -> None:
    d = np.load(".bench/mnist.npz")
    x = d["x_train"].reshape(len(d["x_train"]), -1).astype(np.int64)
    xg = torch.as_tensor(x, device="cuda")
    for name in sys.argv[1:] or ["pd256"]:
        print(probe(name, x, xg), flush=True)


if __name__ == "__main__":
    main()
