"""EM parity with PyJuice 2.6.3, step by step: the same circuit, parameters and batches.

For each latent size, the HCLT of one Chow-Liu tree (``pccc.structures.hclt.learn_tree`` on
the first 20,000 MNIST training images) is built by PyJuice's own region-graph builder
(``BayesianTreeToHiddenRegionGraph``) and compiled by ``juice.compile``. Its node graph, with
the parameters ``juice.compile`` drew, is converted node for node into a pccc L0 circuit
(:func:`to_pccc`), so both sides start from identical parameters. Then:

1. **Step parity.** ``k`` mini-batch EM steps (batch 512, step 0.1, pseudocount 0.1) on the
   same batches in PyJuice, in pccc's Triton backend (fp32 and tf32) and in pccc's torch
   backend in float64 (the EM definition evaluated in float64: the oracle). After 1, 10 and
   100 steps, per parameter kind (sum weights, input tables): the largest absolute and
   relative differences of each side from the oracle and from each other.
2. **Training parity.** Both sides train 2 epochs from the same start (the 117 batches of 512
   in order, no shuffling, as ``pyjuice_baseline.py`` does) and report the test
   log-likelihood (mean over the first 9,728 test images).

Usage (GPU machine, PyJuice's wheel on ``PYTHONPATH``)::

    python benchmarks/em_parity.py --mnist .bench/mnist.npz --latents 32,128

``--cpu`` runs part 1 on the CPU instead (PyJuice through Triton's interpreter, see
``pyjuice_cpu.py``; pccc's torch backend in float32 and float64) on a few variables::

    TRITON_INTERPRET=1 python benchmarks/em_parity.py --cpu --latents 4,8 --vars 300:312 \
        --steps 1,10

Prints one JSON line per result and a table last.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pccc  # noqa: E402
from pccc.ir.builder import CircuitBuilder  # noqa: E402
from pccc.optim import MiniBatchEM  # noqa: E402
from pccc.structures.hclt import learn_tree  # noqa: E402

BATCH = 512
STEP, PSEUDO = 0.1, 0.1


def pyjuice_hclt(parent: np.ndarray, num_latents: int, num_cats: int = 256):
    """PyJuice's HCLT node graph of the tree ``parent`` (its own region-graph builder)."""
    import networkx as nx
    import pyjuice as juice
    from pyjuice.structures.compilation import BayesianTreeToHiddenRegionGraph

    tree = nx.Graph()
    tree.add_nodes_from(range(len(parent)))
    tree.add_edges_from((int(v), int(p)) for v, p in enumerate(parent) if p >= 0)
    root = int(np.flatnonzero(parent < 0)[0])
    return BayesianTreeToHiddenRegionGraph(tree, root, num_latents,
                                           juice.distributions.Categorical,
                                           {"num_cats": num_cats})


def to_pccc(root_ns, num_vars: int):
    """The pccc L0 circuit of a PyJuice node graph with its current node parameters.

    Handles what an HCLT uses: categorical inputs over one variable, element-wise products
    (every product node ``i`` takes node ``i`` of each child) and sums of dense weights.

    Returns:
        ``(circuit, keys, kinds)``: ``keys`` maps each PyJuice sum or input node object's
        ``id`` to its pccc parameter key, ``kinds`` each key to ``sum`` or ``input``.
    """
    b = CircuitBuilder()
    vec: dict[int, int] = {}
    for ns in root_ns:  # PyJuice iterates children before parents
        kids = [vec[id(c)] for c in ns.chs]
        if ns.is_input():
            (var,) = list(ns.scope)
            k = ns.dist.num_cats
            p = ns.get_params().detach().double().cpu().numpy().reshape(ns.num_nodes, k)
            vec[id(ns)] = b.input(int(var), "categorical", n=ns.num_nodes, params=p, card=k)
        elif ns.is_prod():
            ids = ns.edge_ids.cpu()
            if not bool((ids == torch.arange(ids.shape[0])[:, None]).all()):
                raise NotImplementedError("only element-wise products are converted")
            vec[id(ns)] = b.product(kids)
        else:
            w = ns.get_params(as_matrix=True).detach().double().cpu().numpy()
            vec[id(ns)] = b.sum(kids, n=ns.num_nodes, weights=w / w.sum(1, keepdims=True))
    circuit = b.build(vec[id(root_ns)], num_vars=num_vars)
    keys, kinds = {}, {}
    for ns in root_ns:
        if ns.is_input() or ns.is_sum():
            keys[id(ns)] = circuit.nodes[vec[id(ns)]].param
            kinds[keys[id(ns)]] = "input" if ns.is_input() else "sum"
    return circuit, keys, kinds


def pj_params(pc, root_ns, keys) -> dict[str, np.ndarray]:
    """PyJuice's current parameters under the pccc keys (float64 numpy)."""
    pc.update_parameters()
    out = {}
    for ns in root_ns:
        if ns.is_input():
            out[keys[id(ns)]] = (ns.get_params().detach().double().cpu().numpy()
                                 .reshape(ns.num_nodes, -1))
        elif ns.is_sum():
            out[keys[id(ns)]] = ns.get_params(as_matrix=True).detach().double().cpu().numpy()
    return out


def diff(a: dict, b: dict, kinds: dict[str, str]) -> dict[str, float]:
    """Largest absolute and relative difference per parameter kind (relative: over entries
    of at least 1e-3 in ``b``) and the relative L2 norm of the difference."""
    out: dict[str, float] = {}
    for kind in ("sum", "input"):
        ks = [k for k in b if kinds[k] == kind]
        x = np.concatenate([np.asarray(a[k], dtype=np.float64).ravel() for k in ks])
        y = np.concatenate([np.asarray(b[k], dtype=np.float64).ravel() for k in ks])
        d = np.abs(x - y)
        big = np.abs(y) >= 1e-3
        out[f"{kind}_max_abs"] = float(d.max())
        out[f"{kind}_max_rel"] = float((d[big] / np.abs(y[big])).max()) if big.any() else 0.0
        out[f"{kind}_rel_l2"] = float(np.linalg.norm(x - y) / np.linalg.norm(y))
    return out


class PJSide:
    """PyJuice's compiled circuit and optimizer."""

    def __init__(self, root_ns, dev):
        import pyjuice as juice

        self.pc = juice.compile(root_ns)
        if dev.type == "cpu":
            from pyjuice_cpu import on_cpu

            on_cpu(self.pc)
        else:
            self.pc.to(dev)
        self.opt = juice.optim.MiniBatchEM(self.pc, step_size=STEP, pseudocount=PSEUDO)

    def step(self, xb):
        lls = self.pc(xb)
        lls.mean().backward()
        self.opt.step()
        return lls.detach().view(-1)

    def ll(self, xb):
        with torch.no_grad():
            return self.pc(xb).view(-1)


class PcccSide:
    """A pccc module and its optimizer."""

    def __init__(self, circuit, backend: str, dev, **kw):
        self.model = pccc.compile(circuit, backend=backend, device=dev, **kw)
        if hasattr(self.model, "param_grads"):
            self.model.param_grads = False
        self.opt = MiniBatchEM(self.model, step_size=STEP, pseudocount=PSEUDO)

    def step(self, xb):
        lls = self.model(xb)
        lls.mean().backward()
        self.opt.step()
        self.model.zero_grad(set_to_none=True)
        return lls.detach().view(-1)

    def ll(self, xb):
        with torch.no_grad():
            return self.model(xb).view(-1)


def test_ll(side, xte: torch.Tensor) -> float:
    n = (xte.shape[0] // BATCH) * BATCH
    return float(sum(float(side.ll(xte[s:s + BATCH]).double().sum())
                     for s in range(0, n, BATCH)) / n)


def step_parity(latents: int, parent, xg, xte, dev, steps=(1, 10, 100), f64=True) -> list[dict]:
    """Part 1: ``max(steps)`` EM steps on every side, compared at each of ``steps``."""
    root_ns = pyjuice_hclt(parent, latents)
    pj = PJSide(root_ns, dev)
    pj.pc.update_parameters()
    circuit, keys, kinds = to_pccc(root_ns, xg.shape[1])
    if dev.type == "cuda":
        sides = {"triton-fp32": PcccSide(circuit, "triton", dev, precision="fp32"),
                 "triton-tf32": PcccSide(circuit, "triton", dev, precision="tf32")}
    else:
        sides = {"torch-fp32": PcccSide(circuit, "torch", dev)}
    if f64:
        sides["torch-f64"] = PcccSide(circuit, "torch", dev, dtype=torch.float64)
    rows = []
    # step 0: the forward pass of the converted circuit equals PyJuice's
    x0 = xte[:BATCH]
    lp = pj.ll(x0).double()
    for name, s in sides.items():
        d = float((s.ll(x0).double() - lp).abs().max())
        rows.append(dict(kind="forward", latents=latents, side=name, max_abs_ll_vs_pyjuice=d,
                         mean_ll=float(lp.mean())))
        print(json.dumps(rows[-1]), flush=True)
    for k in range(1, max(steps) + 1):
        xb = xg[(k - 1) * BATCH: k * BATCH]
        pj.step(xb)
        for s in sides.values():
            s.step(xb)
        if k not in steps:
            continue
        ref_name = "torch-f64" if f64 else next(iter(sides))
        ref = sides[ref_name].model.source_params()
        got = {"pyjuice": pj_params(pj.pc, root_ns, keys)}
        got.update({n: s.model.source_params() for n, s in sides.items() if n != ref_name})
        for name, p in got.items():
            rows.append(dict(kind="step", latents=latents, steps=k, side=name, vs=ref_name,
                             **diff(p, ref, kinds)))
            print(json.dumps(rows[-1]), flush=True)
        first = next(iter(sides))
        rows.append(dict(kind="step", latents=latents, steps=k, side=first, vs="pyjuice",
                         **diff(got[first] if ref_name != first else ref, got["pyjuice"],
                                kinds)))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def train_parity(latents: int, parent, xg, xte, dev, epochs: int = 2) -> list[dict]:
    """Part 2: both sides train ``epochs`` epochs from the same parameters."""
    root_ns = pyjuice_hclt(parent, latents)
    pj = PJSide(root_ns, dev)
    pj.pc.update_parameters()
    circuit, _, _ = to_pccc(root_ns, xg.shape[1])
    ours = PcccSide(circuit, "triton", dev, precision="tf32")
    rows = []
    for name, s in (("pyjuice", pj), ("pccc-triton-tf32", ours)):
        ll0 = test_ll(s, xte)
        t0 = time.time()
        for _ in range(epochs):
            for i in range(xg.shape[0] // BATCH):
                s.step(xg[i * BATCH: (i + 1) * BATCH])
        torch.cuda.synchronize()
        rows.append(dict(kind="train", latents=latents, side=name, epochs=epochs,
                         test_ll_start=round(ll0, 3), test_ll=round(test_ll(s, xte), 3),
                         train_s=round(time.time() - t0, 2)))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def table(rows: list[dict]) -> None:
    print(f"{'L':>4} {'steps':>5} {'side':>12} {'vs':>10} {'sum max rel':>11} {'sum rel l2':>10} "
          f"{'in max rel':>10} {'in rel l2':>10}")
    for r in rows:
        if r["kind"] == "step":
            print(f"{r['latents']:>4} {r['steps']:>5} {r['side']:>12} {r['vs']:>10} "
                  f"{r['sum_max_rel']:>11.2e} {r['sum_rel_l2']:>10.2e} "
                  f"{r['input_max_rel']:>10.2e} {r['input_rel_l2']:>10.2e}")
    for r in rows:
        if r["kind"] == "forward":
            print(f"forward L={r['latents']} {r['side']}: max |ll - ll_pyjuice| "
                  f"{r['max_abs_ll_vs_pyjuice']:.2e} (mean ll {r['mean_ll']:.2f})")
        if r["kind"] == "train":
            print(f"train L={r['latents']} {r['side']:>17}: test ll {r['test_ll_start']} -> "
                  f"{r['test_ll']} after {r['epochs']} epochs ({r['train_s']} s)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mnist", default=".bench/mnist.npz")
    ap.add_argument("--latents", default="32,128")
    ap.add_argument("--steps", default="1,10,100")
    ap.add_argument("--f64-latents", default="32,128",
                    help="latent sizes that also run the float64 torch oracle")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--mi-estimator", default="binned")
    ap.add_argument("--cpu", action="store_true",
                    help="part 1 only, on the CPU (PyJuice through Triton's interpreter)")
    ap.add_argument("--vars", default="0:784", help="the pixels modelled, as start:stop")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    a = ap.parse_args()
    if a.cpu:
        import pyjuice_cpu  # noqa: F401  (the shims, before PyJuice compiles anything)
    dev = torch.device("cpu" if a.cpu else "cuda")
    d = np.load(a.mnist)
    lo, hi = (int(v) for v in a.vars.split(":"))
    x = d["x_train"].reshape(len(d["x_train"]), -1)[:, lo:hi].astype(np.int64)
    xt = d["x_test"].reshape(len(d["x_test"]), -1)[:, lo:hi].astype(np.int64)
    xg, xte = torch.as_tensor(x, device=dev), torch.as_tensor(xt, device=dev)
    t0 = time.time()
    parent = learn_tree(x[:20000], mi_estimator=a.mi_estimator)
    print(json.dumps(dict(kind="tree", mi_estimator=a.mi_estimator, s=round(time.time() - t0, 2),
                          device=torch.cuda.get_device_name(0) if not a.cpu else "cpu")),
          flush=True)
    steps = tuple(int(s) for s in a.steps.split(","))
    f64 = {int(v) for v in a.f64_latents.split(",") if v}
    rows: list[dict] = []
    for lat in (int(v) for v in a.latents.split(",")):
        rows += step_parity(lat, parent, xg, xte, dev, steps, lat in f64 or a.cpu)
        if not a.cpu:
            rows += train_parity(lat, parent, xg, xte, dev, a.epochs)
        table(rows)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "em_parity.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    table(rows)


if __name__ == "__main__":
    main()
