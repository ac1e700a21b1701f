"""CPU backend benchmark: pccc's torch backend beside cirkit on the same structure.

Both libraries get the same random binary tree region graph (cirkit's ``RandomBinaryTree``)
over MNIST-shaped data (784 variables, 256 values), CP-transposed layers (element-wise products
of ``K``-unit child regions, then a dense ``K x K`` sum), ``K`` categorical input units per
pixel. Per batch we time forward plus backward (``ll.sum().backward()``), alternating the two
libraries in one run so that both see the same machine load; the reference evaluator (float64
numpy) is timed on the forward pass alone.

cirkit (``libcirkit`` on PyPI) is not a dependency of pccc; install it to run this script:
``pip install --no-deps libcirkit einops opt_einsum graphviz scipy`` (``--no-deps`` keeps the
installed torch).

Usage::

    python benchmarks/bench_cpu_cirkit.py --units 32 --batch 256 --iters 10
    python benchmarks/bench_cpu_cirkit.py --device cuda          # the GPU figure
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pccc.backends.reference import log_likelihood
from pccc.ir import Circuit, CircuitBuilder

MNIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist" / "mnist.npz"


def region_graph(num_vars: int, seed: int) -> Any:
    from cirkit.templates.region_graph import RandomBinaryTree

    return RandomBinaryTree(num_vars, seed=seed)


def cirkit_model(rg: Any, units: int, device: str) -> torch.nn.Module:
    from cirkit.pipeline import compile as ck_compile
    from cirkit.templates.utils import (
        Parameterization,
        name_to_input_layer_factory,
        parameterization_to_factory,
    )

    inputs = name_to_input_layer_factory("categorical", num_categories=256)
    weights = parameterization_to_factory(Parameterization(activation="softmax",
                                                           initialization="normal"))
    sym = rg.build_circuit(input_factory=inputs, sum_product="cp-t", sum_weight_factory=weights,
                           num_input_units=units, num_sum_units=units, num_classes=1)
    return ck_compile(sym).to(device)


def pccc_circuit(rg: Any, units: int, seed: int) -> Circuit:
    """The same structure as :func:`cirkit_model` as a pccc L0 circuit."""
    from cirkit.templates.region_graph.graph import RegionNode

    b = CircuitBuilder(rng=seed)
    vec: dict[Any, int] = {}
    for node in rg.topological_ordering():
        if not isinstance(node, RegionNode):
            continue
        parts = rg.region_inputs(node)
        if not parts:
            leaves = [b.input(int(v), "categorical", n=units, card=256) for v in node.scope]
            vec[node] = leaves[0] if len(leaves) == 1 else b.product(leaves)
            continue
        (ptn,) = parts
        prod = b.product([vec[r] for r in rg.partition_inputs(ptn)])
        vec[node] = b.sum([prod], n=units if rg.region_outputs(node) else 1)
    (root,) = rg.outputs
    return b.build(vec[root], num_vars=rg.num_variables)


def mnist_batch(batch: int, num_vars: int) -> np.ndarray:
    if MNIST.exists() and num_vars == 784:
        with np.load(MNIST) as z:
            key = next(k for k in z.files if "x" in k.lower() or "image" in k.lower())
            x = z[key][:batch].reshape(-1, 784)
        return x.astype(np.int64)
    return np.random.default_rng(0).integers(0, 256, size=(batch, num_vars))


def _time(fn: Any, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vars", type=int, default=784)
    ap.add_argument("--units", type=int, default=32)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--reference-rows", type=int, default=16,
                    help="rows for the reference evaluator (0: skip it)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import pccc

    rg = region_graph(args.vars, seed=1)
    circuit = pccc_circuit(rg, args.units, seed=1)
    t0 = time.perf_counter()
    ours = pccc.compile(circuit, backend="torch", device=args.device)
    t_compile = time.perf_counter() - t0
    theirs = cirkit_model(rg, args.units, args.device)
    x_np = mnist_batch(args.batch, args.vars)
    x = torch.as_tensor(x_np, device=args.device)

    def step_ours() -> None:
        ours.zero_grad(set_to_none=True)
        ours(x).sum().backward()

    def step_theirs() -> None:
        theirs.zero_grad(set_to_none=True)
        theirs(x).sum().backward()

    def fwd_ours() -> None:
        with torch.no_grad():
            ours(x)

    def fwd_theirs() -> None:
        with torch.no_grad():
            theirs(x)

    fns = {"pccc fwd+bwd": step_ours, "cirkit fwd+bwd": step_theirs,
           "pccc fwd": fwd_ours, "cirkit fwd": fwd_theirs}
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(args.iters):
        for k, fn in fns.items():
            times[k].append(_time(fn, args.device))
    n_ours = sum(p.numel() for p in ours.parameters())
    n_theirs = sum(p.numel() for p in theirs.parameters())
    print(f"device {args.device} ({torch.get_num_threads()} threads), torch {torch.__version__}")
    print(f"structure: random binary tree over {args.vars} vars, K={args.units}, "
          f"batch {args.batch}; parameters pccc {n_ours:,}, cirkit {n_theirs:,}; "
          f"pccc compile {t_compile:.2f} s")
    for k, ts in times.items():
        print(f"{k:16s} median {1e3 * statistics.median(ts):9.1f} ms  min "
              f"{1e3 * min(ts):9.1f} ms")
    if args.reference_rows:
        xr = x_np[: args.reference_rows]
        t_ref = _time(lambda: log_likelihood(circuit, xr), "cpu")
        per_batch = t_ref / len(xr) * args.batch
        print(f"reference fwd    {1e3 * t_ref:9.1f} ms for {len(xr)} rows "
              f"(~{per_batch:.1f} s per batch of {args.batch})")
        got = ours(torch.as_tensor(xr, device=args.device)).detach().cpu().double().numpy()
        err = np.max(np.abs(got - log_likelihood(circuit, xr)) / np.abs(got))
        print(f"pccc float32 vs reference: max relative error {err:.2e}")


if __name__ == "__main__":
    main()
