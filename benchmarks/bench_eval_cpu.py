"""``pccc eval`` backends on the CPU: the float64 reference against the torch backend in
float64 and float32, on zoo PSDDs and their DEBD test sets.

Usage::

    python benchmarks/bench_eval_cpu.py                       # nltcs and plants
    python benchmarks/bench_eval_cpu.py --circuits nltcs --batch-size 1024 --repeat 3

Reported per circuit and backend: the seconds to evaluate the whole test set (best of
``--repeat``; the torch backend's compile time apart), the mean log-likelihood and the largest
difference from the reference per example. The zoo and the data are read from
``../shared/data`` (``--data``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import pccc
from pccc.backends.reference import log_likelihood
from pccc.data import load_data


def _reference(c, x: np.ndarray, bs: int) -> np.ndarray:
    return np.concatenate([log_likelihood(c, x[i:i + bs]) for i in range(0, len(x), bs)])


def _torch(model, x: np.ndarray, bs: int) -> np.ndarray:
    xt = torch.from_numpy(x)
    with torch.no_grad():
        return np.concatenate([model(xt[i:i + bs]).double().numpy()
                               for i in range(0, len(x), bs)])


def run(name: str, data: Path, bs: int, repeat: int) -> None:
    c = pccc.load(data / "circuits" / "psdds" / f"{name}.psdd.gz")
    x = load_data(data / "debd" / name / f"{name}.test.data.gz", c)
    print(f"{name}: {x.shape[0]} rows, {x.shape[1]} variables, {len(c.nodes)} nodes, "
          f"batch {bs}", flush=True)
    ref = None
    for label in ("reference", "torch float64", "torch float32"):
        compile_s = 0.0
        if label == "reference":
            fn = lambda: _reference(c, x, bs)  # noqa: E731
        else:
            t0 = time.perf_counter()
            dtype = torch.float64 if label.endswith("64") else torch.float32
            model = pccc.compile(c, backend="torch", dtype=dtype)
            compile_s = time.perf_counter() - t0
            fn = lambda m=model: _torch(m, x, bs)  # noqa: E731
        best = np.inf
        for _ in range(repeat):
            t0 = time.perf_counter()
            ll = fn()
            best = min(best, time.perf_counter() - t0)
        if ref is None:
            ref = ll
        diff = float(np.max(np.abs(ll - ref)))
        extra = f" (+ compile {compile_s:.2f} s)" if compile_s else ""
        print(f"  {label:14s} {best:7.2f} s{extra}  mean {ll.mean():.9f}  "
              f"max |diff| {diff:.1e}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--circuits", default="nltcs,plants")
    ap.add_argument("--data", type=Path,
                    default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    for name in args.circuits.split(","):
        run(name, args.data, args.batch_size, args.repeat)


if __name__ == "__main__":
    main()
