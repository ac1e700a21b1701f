"""CPU backend benchmark: pccc's torch backend beside cirkit on the same structure.

Both libraries get the same random binary tree region graph (cirkit's ``RandomBinaryTree``)
over MNIST-shaped data (784 variables, 256 values), CP-transposed layers (element-wise products
of ``K``-unit child regions, then a dense ``K x K`` sum), ``K`` categorical input units per
pixel. Per batch we time forward plus backward (``ll.sum().backward()``), alternating the two
libraries in one run so that both see the same machine load, and report wall-clock and process
CPU time (the latter is far less disturbed by other jobs on a shared machine; with several
threads it also counts their spinning). The reference evaluator (float64 numpy) is timed on the
forward pass alone. ``pccc fwd+bwd`` also accumulates the EM flows; ``fwd+bwd*`` does not.

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


def tree_of(rg: Any) -> Any:
    """cirkit's region graph as a nested tree: a leaf is a tuple of variables, an inner region
    a list of child regions."""
    from cirkit.templates.region_graph.graph import RegionNode

    out: dict[Any, Any] = {}
    for node in rg.topological_ordering():
        if isinstance(node, RegionNode):
            parts = rg.region_inputs(node)
            out[node] = ([out[r] for r in rg.partition_inputs(parts[0])] if parts
                         else tuple(int(v) for v in node.scope))
    (root,) = rg.outputs
    return out[root]


def random_tree(variables: list[int], rng: np.random.Generator) -> Any:
    """A random binary tree over ``variables`` (used when cirkit is not installed)."""
    if len(variables) == 1:
        return (variables[0],)
    perm = list(rng.permutation(variables))
    half = len(perm) // 2
    return [random_tree(perm[:half], rng), random_tree(perm[half:], rng)]


def pccc_circuit(tree: Any, units: int, num_vars: int, seed: int) -> Circuit:
    """The structure of :func:`cirkit_model` as a pccc L0 circuit (CP-transposed layers)."""
    b = CircuitBuilder(rng=seed)

    def build(t: Any, root: bool) -> int:
        if isinstance(t, tuple):
            leaves = [b.input(int(v), "categorical", n=units, card=256) for v in t]
            return leaves[0] if len(leaves) == 1 else b.product(leaves)
        prod = b.product([build(c, False) for c in t])
        return b.sum([prod], n=1 if root else units)

    return b.build(build(tree, True), num_vars=num_vars)


def mnist_batch(batch: int, num_vars: int) -> np.ndarray:
    if MNIST.exists() and num_vars == 784:
        with np.load(MNIST) as z:
            key = next(k for k in z.files if "x" in k.lower() or "image" in k.lower())
            x = z[key][:batch].reshape(-1, 784)
        return x.astype(np.int64)
    return np.random.default_rng(0).integers(0, 256, size=(batch, num_vars))


def _time(fn: Any, device: str) -> tuple[float, float]:
    """(wall-clock, process CPU) seconds. On a busy shared CPU, CPU time is disturbed far less
    by other jobs than wall-clock time (it counts every thread, spinning ones included)."""
    if device == "cuda":
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, time.process_time() - c0


def _steps(model: torch.nn.Module, x: torch.Tensor, name: str) -> dict[str, Any]:
    """Forward+backward and forward-only closures for one model."""

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()

    def fwd() -> None:
        with torch.no_grad():
            model(x)

    return {f"{name} fwd+bwd": step, f"{name} fwd": fwd}


def _grad_only(model: Any, x: torch.Tensor) -> Any:
    def step() -> None:
        model.track_flows = False
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()
        model.track_flows = True

    return step


def _time_all(fns: dict[str, Any], iters: int, device: str
              ) -> dict[str, list[tuple[float, float]]]:
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in fns}
    for _ in range(iters):  # interleaved: both libraries see the same machine load
        for k, fn in fns.items():
            times[k].append(_time(fn, device))
    return times


def _reference(circuit: Circuit, ours: Any, x_np: np.ndarray, batch: int, device: str) -> None:
    t_ref = _time(lambda: log_likelihood(circuit, x_np), "cpu")[1]
    print(f"reference fwd    {1e3 * t_ref:9.1f} ms CPU for {len(x_np)} rows "
          f"(~{t_ref / len(x_np) * batch:.1f} s per batch of {batch})")
    got = ours(torch.as_tensor(x_np, device=device)).detach().cpu().double().numpy()
    err = np.max(np.abs(got - log_likelihood(circuit, x_np)) / np.abs(got))
    print(f"pccc float32 vs reference: max relative error {err:.2e}")


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

    try:
        import cirkit  # noqa: F401

        rg = region_graph(args.vars, seed=1)
        tree = tree_of(rg)
    except ImportError:
        rg = None
        tree = random_tree(list(range(args.vars)), np.random.default_rng(1))
        print("cirkit is not installed: timing pccc only")
    circuit = pccc_circuit(tree, args.units, args.vars, seed=1)
    t0 = time.perf_counter()
    ours = pccc.compile(circuit, backend="torch", device=args.device)
    t_compile = time.perf_counter() - t0
    x_np = mnist_batch(args.batch, args.vars)
    x = torch.as_tensor(x_np, device=args.device)
    fns = _steps(ours, x, "pccc")
    fns["pccc fwd+bwd*"] = _grad_only(ours, x)
    n_theirs = 0
    if rg is not None:
        theirs = cirkit_model(rg, args.units, args.device)
        n_theirs = sum(p.numel() for p in theirs.parameters())
        fns.update(_steps(theirs, x, "cirkit"))
    times = _time_all(fns, args.iters, args.device)
    n_ours = sum(p.numel() for p in ours.parameters())
    print(f"device {args.device} ({torch.get_num_threads()} threads), torch {torch.__version__}")
    print(f"structure: random binary tree over {args.vars} vars, K={args.units}, "
          f"batch {args.batch}; parameters pccc {n_ours:,}, cirkit {n_theirs:,}; "
          f"pccc compile {t_compile:.2f} s")
    print("(* gradients only: EM flow tracking off)")
    print(f"{'':16s} {'wall median':>12s} {'wall min':>10s} {'CPU median':>11s} {'CPU min':>9s}")
    for k in sorted(times):
        wall = [t[0] * 1e3 for t in times[k]]
        cpu = [t[1] * 1e3 for t in times[k]]
        print(f"{k:16s} {statistics.median(wall):9.1f} ms {min(wall):7.1f} ms "
              f"{statistics.median(cpu):8.1f} ms {min(cpu):6.1f} ms")
    if args.reference_rows:
        _reference(circuit, ours, x_np[: args.reference_rows], args.batch, args.device)


if __name__ == "__main__":
    main()
