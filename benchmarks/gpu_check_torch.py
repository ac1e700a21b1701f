"""Check the torch backend on a GPU against the float64 reference and the CPU backend.

Needs only pccc, torch and numpy (the hypothesis suite runs with
``PCCC_TEST_DEVICE=cuda pytest tests/test_torch_backend.py tests/test_torch_em.py``).
Prints one line per check and exits 1 if any fails.

Usage::

    python benchmarks/gpu_check_torch.py [--device cuda]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

import pccc
from pccc.backends.reference import log_likelihood
from pccc.ir import Circuit, CircuitBuilder


def mixed_circuit(seed: int) -> Circuit:
    """A small circuit with every input family, shared children and unnormalized weights."""
    b = CircuitBuilder(rng=seed)
    a = b.input(0, "categorical", n=4, card=5)
    c = b.input(1, "bernoulli", n=4)
    d = b.input(2, "binomial", n=4, total=3)
    e = b.input(3, "gaussian", n=4)
    i = b.input(1, "indicator", n=4, card=2, values=[0, 1, 0, 1])
    s1 = b.sum([b.product([a, c]), b.product([a, b.input(1, "bernoulli", n=4)])], n=3)
    s2 = b.sum([b.product([d, e])], n=3)
    top = b.sum([b.product([s1, s2])], n=2)
    alt = b.sum([b.product([b.sum([b.product([a, i])], n=2),
                            b.sum([b.product([d, e])], n=2)])], n=2)
    return b.build(b.sum([top, alt]), num_vars=4)


def data(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.stack([rng.integers(0, 5, n), rng.integers(0, 2, n), rng.integers(0, 4, n),
                  rng.normal(size=n)], axis=1).astype(np.float64)
    x[rng.random(x.shape) < 0.2] = np.nan
    return x


def check(name: str, ok: bool, detail: str = "") -> bool:
    print(f"{'PASS' if ok else 'FAIL'}  {name} {detail}")
    return ok


def run(device: str) -> bool:
    ok = True
    for seed in range(5):
        c = mixed_circuit(seed)
        x = data(64, seed)
        want = log_likelihood(c, x)
        for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-10)):
            m = pccc.compile(c, device=device, dtype=dtype)
            got = m(torch.as_tensor(x, device=device)).detach().cpu().double().numpy()
            err = float(np.max(np.abs(got - want) / np.maximum(np.abs(want), 1.0)))
            ok &= check(f"forward seed={seed} {dtype}", err < tol, f"rel err {err:.1e}")
        gpu = pccc.compile(c, device=device, dtype=torch.float64)
        cpu = pccc.compile(c, dtype=torch.float64)
        g = torch.linspace(-1, 2, 64, dtype=torch.float64)
        for m, dev in ((gpu, device), (cpu, "cpu")):
            (m(torch.as_tensor(x, device=dev)) * g.to(dev)).sum().backward()
        for pname in ("sum_logits", "input_raw"):
            a = getattr(gpu, pname).grad.cpu().numpy()
            b = getattr(cpu, pname).grad.numpy()
            err = float(np.max(np.abs(a - b)))
            ok &= check(f"gradient {pname} seed={seed}", err < 1e-9, f"max abs diff {err:.1e}")
        for m in (gpu, cpu):
            pccc.optim.MiniBatchEM(m, step_size=0.5, pseudocount=0.1).step()
        pa, pb = gpu.source_params(), cpu.source_params()
        err = max(float(np.max(np.abs(pa[k] - pb[k]))) for k in pa)
        ok &= check(f"EM step seed={seed}", err < 1e-9, f"max abs diff {err:.1e}")
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device")
    sys.exit(0 if run(args.device) else 1)


if __name__ == "__main__":
    main()
