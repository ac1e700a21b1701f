"""A few training batches of one benchmark workload, eager (no CUDA graphs), for kernel
profilers: ``ncu --kernel-name regex:sum_fwd --launch-skip 100 --launch-count 4 python3
benchmarks/kernel_probe.py pd256``. Same workloads as ``gpu_bench.py`` (MNIST from
``.bench/mnist.npz``); prints nothing but the time per batch."""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import pccc  # noqa: E402
from benchmarks.gpu_bench import BATCH, build  # noqa: E402
from pccc.optim import MiniBatchEM  # noqa: E402


def main() -> None:
    name = sys.argv[1]
    batches = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    d = np.load(os.environ.get("PCCC_MNIST", ".bench/mnist.npz"))
    x = d["x_train"].reshape(len(d["x_train"]), -1).astype(np.int64)
    model = pccc.compile(build(name, x), backend="triton", device="cuda", cuda_graphs=False)
    model.param_grads = False
    opt = MiniBatchEM(model, step_size=0.1, pseudocount=0.1)
    xg = torch.as_tensor(x[: BATCH * batches], device="cuda")
    for i in range(batches):
        t = time.time()
        model(xg[i * BATCH: (i + 1) * BATCH]).mean().backward()
        opt.step()
        torch.cuda.synchronize()
        print(f"batch {i}: {time.time() - t:.4f} s", flush=True)


if __name__ == "__main__":
    main()
