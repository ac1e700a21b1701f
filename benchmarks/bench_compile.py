"""Compile-time benchmark: the whole default pipeline on an HCLT and a PD with 256 latents.

Until ``pccc.structures`` lands, the two circuits are built here with the same shapes:

- HCLT over 784 variables (a random spanning tree), 256 categories, 256 latents: per variable a
  categorical input vector of 256 nodes, a product vector of 256 (the input times the sum vectors
  of its tree children, element-wise) and a sum vector of 256 over it (256 x 256 weights).
- PD over a 28 x 28 image, 256 latents: rectangular regions split at multiples of ``delta = 4``
  in both directions; each decomposition is an element-wise product of the two halves' vectors,
  each region a sum vector of 256 over its decompositions (1 at the root); a 4 x 4 leaf patch
  is a sum over the element-wise product of its 16 pixels' input vectors.

``--which s-hclt,s-pd`` uses the generators of ``pccc.structures`` instead (``hclt_from_tree`` on
the same random tree; ``PD((28, 28), 256, split_intervals=4)``, PyJuice's benchmark settings).

Run: ``python benchmarks/bench_compile.py [--repeat 3] [--which hclt,pd] [--pipeline default]``
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np

from pccc.ir.circuit import Circuit, InputVector, ProductVector, SumVector
from pccc.passes import compile_plan, run_pipeline
from pccc.passes.instruments import TimePasses


def _cat_input(nodes: list, params: dict, var: int, k: int, card: int,
               rng: np.random.Generator) -> int:
    p = rng.random((k, card)) + 0.01
    p /= p.sum(axis=1, keepdims=True)
    key = f"p{len(nodes)}"
    params[key] = p
    nodes.append(InputVector(k, var, "categorical", (("card", card),), key))
    return len(nodes) - 1


def _sum(nodes: list, params: dict, kids: list[int], n: int, rng: np.random.Generator) -> int:
    m = sum(nodes[c].n for c in kids)
    w = rng.random((n, m)) + 0.01
    w /= w.sum(axis=1, keepdims=True)
    key = f"w{len(nodes)}"
    params[key] = w
    nodes.append(SumVector(n, tuple(kids), key))
    return len(nodes) - 1


def hclt(num_vars: int = 784, latents: int = 256, card: int = 256, seed: int = 0) -> Circuit:
    """An HCLT-shaped circuit over a random tree (see the module docstring)."""
    rng = np.random.default_rng(seed)
    parent = np.array([-1] + [int(rng.integers(0, v)) for v in range(1, num_vars)])
    children: list[list[int]] = [[] for _ in range(num_vars)]
    for v in range(1, num_vars):
        children[parent[v]].append(v)
    nodes: list = []
    params: dict[str, np.ndarray] = {}
    latent: dict[int, int] = {}
    for v in range(num_vars - 1, -1, -1):  # children have larger ids than their parent
        inp = _cat_input(nodes, params, v, latents, card, rng)
        kids = [inp] + [latent[c] for c in children[v]]
        if len(kids) > 1:
            nodes.append(ProductVector(latents, tuple(kids)))
            kids = [len(nodes) - 1]
        latent[v] = _sum(nodes, params, kids, 1 if v == 0 else latents, rng)
    return Circuit(tuple(nodes), params, num_vars, latent[0])


def pd(size: int = 28, latents: int = 256, card: int = 256, delta: int = 4,
       seed: int = 0) -> Circuit:
    """A Poon-Domingos-shaped circuit over a ``size x size`` image (see the module docstring)."""
    rng = np.random.default_rng(seed)
    nodes: list = []
    params: dict[str, np.ndarray] = {}
    memo: dict[tuple[int, int, int, int], int] = {}

    def splits(lo: int, hi: int) -> list[int]:
        return [s for s in range(lo + 1, hi) if s % delta == 0]

    def region(x0: int, x1: int, y0: int, y1: int, root: bool = False) -> int:
        key = (x0, x1, y0, y1)
        if key in memo:
            return memo[key]
        if x1 - x0 == 1 and y1 - y0 == 1:
            memo[key] = _cat_input(nodes, params, x0 * size + y0, latents, card, rng)
            return memo[key]
        if not splits(x0, x1) and not splits(y0, y1):  # a leaf patch: all its pixels
            pix = [region(x, x + 1, y, y + 1) for x in range(x0, x1) for y in range(y0, y1)]
            nodes.append(ProductVector(latents, tuple(pix)))
            memo[key] = _sum(nodes, params, [len(nodes) - 1], latents, rng)
            return memo[key]
        prods = []
        for s in splits(x0, x1):
            a, b = region(x0, s, y0, y1), region(s, x1, y0, y1)
            nodes.append(ProductVector(latents, (a, b)))
            prods.append(len(nodes) - 1)
        for s in splits(y0, y1):
            a, b = region(x0, x1, y0, s), region(x0, x1, s, y1)
            nodes.append(ProductVector(latents, (a, b)))
            prods.append(len(nodes) - 1)
        memo[key] = _sum(nodes, params, prods, 1 if root else latents, rng)
        return memo[key]

    root = region(0, size, 0, size, root=True)
    return Circuit(tuple(nodes), params, size * size, root)


def structures_hclt(latents: int = 256, num_vars: int = 784, seed: int = 0) -> Circuit:
    """HCLT from ``pccc.structures`` over a random tree (the same tree as :func:`hclt`)."""
    from pccc.structures import InputSpec, hclt_from_tree

    rng = np.random.default_rng(seed)
    parent = np.array([-1] + [int(rng.integers(0, v)) for v in range(1, num_vars)])
    return hclt_from_tree(parent, latents, InputSpec.parse("categorical", card=256))


def structures_pd(latents: int = 256) -> Circuit:
    """PD from ``pccc.structures`` with PyJuice's benchmark settings (split intervals 4)."""
    from pccc.structures import PD

    return PD((28, 28), latents, split_intervals=4)


BUILDERS = {"hclt": hclt, "pd": pd, "s-hclt": structures_hclt, "s-pd": structures_pd}


def _edges(c: Circuit) -> int:
    return sum(int(c.params[nd.param].size) for nd in c.nodes if isinstance(nd, SumVector))


def bench(name: str, c: Circuit, pipeline: str, repeat: int) -> dict[str, float]:
    """Wall time of ``compile_plan`` (first run and best of ``repeat``) and the per-pass split
    of one more, instrumented run."""
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        plan = compile_plan(c, pipeline)
        times.append(time.perf_counter() - t0)
        del plan
    gc.collect()
    timer = TimePasses()
    run_pipeline(c, pipeline, verify=False, instruments=[timer])
    split = ", ".join(f"{n} {s:.2f}" for n, s in timer.times)
    print(f"{name}: {len(c.nodes)} vectors, {_edges(c) / 1e6:.1f}M sum edges, "
          f"pipeline {pipeline!r}: first {times[0]:.2f} s, best of {repeat} "
          f"{min(times):.2f} s  (split of one more run: {split})", flush=True)
    return {"first": times[0], "best": min(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--which", default="hclt,pd",
                    help="comma-separated: hclt, pd (built here), s-hclt, s-pd (pccc.structures)")
    ap.add_argument("--pipeline", default="default,training")
    ap.add_argument("--latents", type=int, default=256)
    args = ap.parse_args()
    for which in args.which.split(","):
        t0 = time.perf_counter()
        c = BUILDERS[which](latents=args.latents)
        print(f"[built {which} in {time.perf_counter() - t0:.1f} s]", flush=True)
        for pipeline in args.pipeline.split(","):
            bench(which, c, pipeline, args.repeat)
        del c
        gc.collect()


if __name__ == "__main__":
    main()
