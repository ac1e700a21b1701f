"""HCLT's mutual-information estimators on MNIST: the tree, its time, and what EM learns on it.

Per estimator (``binned``, ``soft``, ``pyjuice``; ``softcpu``: ``soft`` computed on the CPU;
``pjtree``: the tree PyJuice's own ``juice.structures.HCLT`` builds, with PyJuice importable):
the Chow-Liu tree of the first 20,000
training images, timed where it runs (``soft`` and ``pyjuice`` on ``--device`` with the data
already there, after a warm-up call; ``binned`` on the host's CPU), its inner variables, the
edges it shares with ``pyjuice``'s tree and the total of PyJuice's estimate over its edges
(``pyjuice``'s tree maximizes that total). Per estimator, latent size (32, 128) and initial
draw: the HCLT (categorical(256) inputs) compiled with ``pccc.compile(..., backend="triton")``
and trained the way PyJuice 2.6.3's baseline trains: batch 512, the 117 training batches of
512 in order, one mini-batch EM step (step 0.1, pseudocount 0.1) per batch, no shuffling; the
test log-likelihood (mean over the first 19 * 512 = 9,728 test images) at the start and after
every epoch. Draws (``--init``, from seed 0): ``S:I`` is the generators' ``exp(-S u)`` sum rows
and ``exp(-I u)`` categorical tables, normalized (``4:4``, the generators' default, is what
``juice.compile``'s ``_init_parameters(perturbation=4)`` gives; ``4:2`` uses PyJuice's
``Categorical`` default for the tables); ``old`` is the near-uniform ``u + 0.5`` normalized.

One JSON line per tree and per run, a table last. ``--device cpu`` uses the torch backend;
with ``--quick`` (trees from 2,000 images, 2 test batches, 2 training batches per epoch) and
``--epochs 0`` it checks the script in a minute without a GPU.

Run: ``python benchmarks/tree_quality.py .bench/mnist.npz [--latents 32,128]
[--estimators binned,soft,pyjuice] [--init 4:4,4:2,old] [--seeds 0] [--epochs 2]
[--precisions tf32,fp32,torch] [--graphs on,off]``
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
from pccc.ir.circuit import Circuit, InputVector, SumVector  # noqa: E402
from pccc.optim import MiniBatchEM  # noqa: E402
from pccc.structures import InputSpec, hclt_from_tree  # noqa: E402
from pccc.structures.chow_liu import root_tree  # noqa: E402
from pccc.structures.hclt import hclt_edge_count, learn_tree  # noqa: E402
from pccc.structures.mutual_info import kruskal_tree, pyjuice_mutual_information  # noqa: E402
from pccc.structures.soft_mi import soft_mutual_information  # noqa: E402

BATCH = 512


def near_uniform(circuit: Circuit, seed: int = 0) -> Circuit:
    """Sum rows and categorical tables redrawn as ``u + 0.5`` normalized, in node order."""
    rng = np.random.default_rng(seed)
    new: dict[str, np.ndarray] = {}
    for node in circuit.nodes:
        key = getattr(node, "param", None)
        if key is None or key in new:
            continue
        if isinstance(node, SumVector) or (isinstance(node, InputVector)
                                           and node.dist == "categorical"):
            a = rng.random(circuit.params[key].shape) + 0.5
            new[key] = a / a.sum(axis=-1, keepdims=True)
    return circuit.with_params(new)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def pyjuice_tree(x_tree: torch.Tensor) -> np.ndarray:
    """The tree ``juice.structures.HCLT`` builds (PyJuice's own functions, its defaults:
    32 bins, sigma 0.5 / 32, chunks of 64; rooted at ``nx.center(T)[0]``), as ``parent``."""
    import networkx as nx
    from pyjuice.structures.hclt import chow_liu_tree, mutual_information_chunked

    xf = x_tree.float()
    mi = mutual_information_chunked(xf, xf, 32, 0.5 / 32, chunk_size=64).detach().cpu().numpy()
    tree = chow_liu_tree(mi)
    return root_tree(x_tree.shape[1], list(tree.edges), nx.center(tree)[0])


def learn_trees(x_tree: torch.Tensor, estimators: list[str], dev: torch.device) -> dict:
    """Each estimator's tree and time; PyJuice's estimate to score them (if asked for)."""
    small = x_tree[:512, :64]  # warm-up: the device's context, cuBLAS and cuSOLVER handles
    soft_mutual_information(small)
    pyjuice_mutual_information(small)
    out = {}
    for est in estimators:
        data = x_tree.cpu().numpy() if est == "binned" else x_tree.cpu() \
            if est == "softcpu" else x_tree
        sync(dev)
        t0 = time.time()
        parent = pyjuice_tree(x_tree) if est == "pjtree" else learn_tree(
            data, mi_estimator="soft" if est == "softcpu" else est)
        sync(dev)
        out[est] = dict(parent=parent, tree_s=round(time.time() - t0, 3))
    if "pyjuice" in estimators or "pjtree" in estimators:
        mi = pyjuice_mutual_information(x_tree)
        ref = {tuple(sorted(e)) for e in kruskal_tree(mi)}
        for t in out.values():
            edges = {tuple(sorted((c, int(p)))) for c, p in enumerate(t["parent"]) if p >= 0}
            t["shared_with_pyjuice"] = len(edges & ref)
            t["pyjuice_mi_total"] = round(sum(float(mi[e]) for e in edges), 4)
    for est, t in out.items():
        parent = t["parent"]
        t["inner"] = int(np.count_nonzero(np.bincount(parent[parent >= 0],
                                                      minlength=len(parent))))
        row = {k: v for k, v in t.items() if k != "parent"}
        print(json.dumps(dict(kind="tree", estimator=est, device=str(dev), **row)), flush=True)
    return out


def test_ll(model, xte: torch.Tensor, batches: int) -> float:
    with torch.no_grad():
        return sum(float(model(xte[s * BATCH:(s + 1) * BATCH]).double().sum())
                   for s in range(batches)) / (batches * BATCH)


def train(circuit: Circuit, xg: torch.Tensor, xte: torch.Tensor, a: argparse.Namespace,
          dev: torch.device, precision: str = "tf32", graphs: bool = True) -> dict:
    """Compile, then ``a.epochs`` epochs of mini-batch EM; test log-likelihood per epoch.
    ``precision``: the Triton backend's on a GPU, or ``torch`` (the torch backend);
    ``graphs``: the Triton backend's ``cuda_graphs`` option."""
    t0 = time.time()
    if dev.type == "cuda" and precision != "torch":
        model = pccc.compile(circuit, backend="triton", device=dev, precision=precision,
                             cuda_graphs=graphs)
        model.param_grads = False  # EM reads flows alone
    else:
        model = pccc.compile(circuit, backend="torch", device=dev)
    sync(dev)
    t1 = time.time()
    n_train = 2 if a.quick else xg.shape[0] // BATCH
    n_test = 2 if a.quick else xte.shape[0] // BATCH
    lls = [round(test_ll(model, xte, n_test), 3)]
    opt = MiniBatchEM(model, step_size=0.1, pseudocount=0.1)
    times = []
    for _ in range(a.epochs):
        sync(dev)
        e0 = time.time()
        for s in range(n_train):
            ll = model(xg[s * BATCH:(s + 1) * BATCH])
            ll.mean().backward()
            opt.step()
            model.zero_grad(set_to_none=True)
        sync(dev)
        times.append(round(time.time() - e0, 3))
        lls.append(round(test_ll(model, xte, n_test), 3))
    return dict(compile_s=round(t1 - t0, 3), epoch_s=times, test_ll=lls)


def table(rows: list[dict]) -> None:
    trees = {r["estimator"]: r for r in rows if r["kind"] == "tree"}
    print(f"{'estimator':9} {'tree s':>7} {'inner':>5} {'shared':>6} {'PJ MI':>9} "
          f"{'L':>4} {'init':>5} {'prec':>5} {'graph':>5} {'seed':>4} "
          f"{'test LL by epoch':>28}")
    for r in rows:
        if r["kind"] != "run":
            continue
        t = trees[r["estimator"]]
        print(f"{r['estimator']:9} {t['tree_s']:>7} {t['inner']:>5} "
              f"{t.get('shared_with_pyjuice', '-'):>6} {t.get('pyjuice_mi_total', '-'):>9} "
              f"{r['latents']:>4} {r['init']:>5} {r.get('precision', '-'):>5} "
              f"{'on' if r.get('graphs') else 'off':>5} "
              f"{r.get('seed', 0):>4} "
              f"{' '.join(f'{v:.2f}' for v in r['test_ll']):>28}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mnist", help="MNIST .npz (x_train, x_test)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--estimators", default="binned,soft,pyjuice")
    ap.add_argument("--latents", default="32,128")
    ap.add_argument("--init", default="4:4,4:2,old",
                    help="initial draws: SUMS:INPUTS spreads of exp(-s u), or old (u + 0.5)")
    ap.add_argument("--seeds", default="0", help="initial draws from each of these seeds")
    ap.add_argument("--graphs", default="on",
                    help="on,off: the Triton backend with and without CUDA graphs")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--precisions", default="tf32",
                    help="the Triton backend's precisions to train with (torch: the torch "
                         "backend, float32, on the same device)")
    ap.add_argument("--quick", action="store_true",
                    help="trees from 2,000 images, 2 test and 2 training batches")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    a = ap.parse_args()
    dev = torch.device(a.device)
    d = np.load(a.mnist)
    xg = torch.as_tensor(d["x_train"].reshape(len(d["x_train"]), -1).astype(np.int64), device=dev)
    xte = torch.as_tensor(d["x_test"].reshape(len(d["x_test"]), -1).astype(np.int64), device=dev)
    rows: list[dict] = []
    trees = learn_trees(xg[:2000 if a.quick else 20000], a.estimators.split(","), dev)
    rows += [dict(kind="tree", estimator=k, **{n: v for n, v in t.items() if n != "parent"})
             for k, t in trees.items()]
    spec = InputSpec.parse("categorical", card=256)
    card = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    for est, t in trees.items():
        for lat in (int(v) for v in a.latents.split(",")):
            for init, seed, prec, graphs in (
                    (i, int(sd), p, g == "on") for i in a.init.split(",")
                    for p in a.precisions.split(",")
                    for g in (a.graphs.split(",") if p != "torch" else ["on"])
                    for sd in a.seeds.split(",")):
                if init == "old":
                    c = near_uniform(hclt_from_tree(t["parent"], lat, spec, seed=seed), seed)
                else:
                    sums, inputs = (float(v) for v in init.split(":"))
                    c = hclt_from_tree(t["parent"], lat, spec, seed=seed,
                                       init_spread=(sums, inputs))
                r = dict(kind="run", estimator=est, latents=lat, init=init, seed=seed,
                         precision=prec, graphs=graphs and prec != "torch", card=card,
                         edges=hclt_edge_count(t["parent"], lat),
                         **train(c, xg, xte, a, dev, prec, graphs))
                rows.append(r)
                print(json.dumps(r), flush=True)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "tree_quality.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    table(rows)


if __name__ == "__main__":
    main()
