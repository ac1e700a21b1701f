"""``pccc demo``: the main job on an embedded default, with nothing to download.

Builds a small random circuit and a data set from a fixed seed, writes both into a folder
(default ``./pccc-demo/``), prints the circuit's summary and evaluates the data with the
reference backend; then compiles it (passes + torch backend), checks the compiled module
against the reference, trains it with mini-batch EM on 80% of the rows, writes the trained
circuit (``trained.jpc``) and the compiled module (``model.pccm``), and reports the held-out
log-likelihood before and after training.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from pccc.ir import CircuitBuilder
from pccc.ir.circuit import Circuit
from pccc.ir.errors import PcccError


def _region(b: CircuitBuilder, rng: np.random.Generator, vars_: list[int], k: int) -> int:
    """A vector of ``k`` nodes over ``vars_``: Bernoulli leaves, then at each split a mixture
    of an element-wise product and a product with shuffled (explicit) edges."""
    if len(vars_) == 1:
        return b.input(vars_[0], "bernoulli", n=k)
    half = len(vars_) // 2
    left = _region(b, rng, vars_[:half], k)
    right = _region(b, rng, vars_[half:], k)
    plain = b.product([left, right])
    edges = np.stack([rng.permutation(k), rng.permutation(k)], axis=1)
    crossed = b.product([left, right], edges=edges)
    return b.sum([plain, crossed], n=k)


def demo_circuit(num_vars: int = 16, k: int = 4, seed: int = 0) -> Circuit:
    """A smooth, decomposable, normalized circuit over ``num_vars`` binary variables."""
    rng = np.random.default_rng(seed)
    b = CircuitBuilder(rng=rng)
    order = [int(v) for v in rng.permutation(num_vars)]
    top = _region(b, rng, order, k)
    root = b.sum([top], n=1)
    return b.build(root, num_vars=num_vars)


def demo_data(num_vars: int = 16, rows: int = 500, seed: int = 1,
              missing: float = 0.1) -> np.ndarray:
    """Binary data from a mixture of 3 product-of-Bernoullis, some values missing (-1)."""
    rng = np.random.default_rng(seed)
    probs = rng.uniform(0.1, 0.9, size=(3, num_vars))
    comp = rng.integers(0, 3, size=rows)
    x = (rng.random((rows, num_vars)) < probs[comp]).astype(np.int64)
    x[rng.random(x.shape) < missing] = -1
    return x


def _write_csv(x: np.ndarray, path: Path) -> None:
    from pccc.formats import atomic_write

    text = "\n".join(",".join("?" if v < 0 else str(v) for v in row) for row in x) + "\n"
    with atomic_write(path) as f:
        f.write(text.encode())


def run(args: argparse.Namespace) -> int:
    from pccc import formats
    from pccc.cli.cmd_eval import evaluator, log_likelihoods
    from pccc.cli.cmd_info import print_summary
    from pccc.data import load_data
    from pccc.ir import verify

    folder = Path(args.dir)
    if folder.exists() and not folder.is_dir():
        raise PcccError(f"{folder} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    circuit = demo_circuit(args.vars, args.k, args.seed)
    verify(circuit)
    cpath, dpath = folder / "circuit.pcir", folder / "data.csv"
    formats.save(circuit, cpath)
    _write_csv(demo_data(args.vars, args.rows, args.seed + 1), dpath)
    print(f"wrote {cpath} and {dpath}")
    print_summary(formats.load(cpath))
    x = load_data(dpath, circuit)
    ll = log_likelihoods(evaluator(circuit, "reference"), x, 4096)
    print(f"examples: {ll.size} ({int((x < 0).sum())} missing values, marginalized)")
    print(f"same as: pccc eval {cpath} --data {dpath}")
    label = "mean log-likelihood" if args.no_train else "mean log-likelihood (reference)"
    print(f"{label}: {float(np.mean(ll))!r}")
    if args.no_train:
        return 0
    return _compile_and_train(circuit, x, ll, folder, args)


def _compile_and_train(circuit: Circuit, x: np.ndarray, ref_ll: np.ndarray, folder: Path,
                       args: argparse.Namespace) -> int:
    """Compile with the torch backend, compare with the reference, train, save."""
    import torch

    import pccc
    from pccc.training import TrainConfig, evaluate, train

    model = pccc.compile(circuit, backend="torch", device="cpu", dtype=torch.float64)
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    err = float(np.max(np.abs(got - ref_ll)))
    print(f"compiled ({model.plan.summary().splitlines()[0]}); max |torch - reference| = "
          f"{err:.2e}")
    cut = int(0.8 * len(x))
    train_x, test_x = x[:cut], x[cut:]
    before = evaluate(model, test_x)
    cfg = TrainConfig(epochs=args.epochs, batch_size=64, step_size=0.1, pseudocount=0.1,
                      patience=0, progress=False)
    hist = train(model, train_x, None, cfg)
    after = evaluate(model, test_x)
    tpath, mpath, hpath = folder / "trained.jpc", folder / "model.pccm", folder / "heldout.csv"
    _write_csv(test_x, hpath)
    pccc.save(model, tpath)
    pccc.save(model, mpath)
    print(f"trained {len(hist.train_ll)} epochs of mini-batch EM on {cut} rows; wrote {tpath} "
          f"and {mpath}")
    print(f"held-out mean log-likelihood before training: {before!r}")
    print(f"same as: pccc eval {mpath} --data {hpath}")
    print(f"mean log-likelihood: {after!r}")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="build a circuit and data; evaluate, compile, train",
                       description="The main job on an embedded default: generate a random "
                                   "circuit and data (fixed seed), write them to DIR, print "
                                   "the circuit's summary and the mean log-likelihood, then "
                                   "compile it, train it with EM and save the results.")
    p.add_argument("--dir", default="pccc-demo", help="output folder (default: ./pccc-demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vars", type=int, default=16, help="number of binary variables")
    p.add_argument("--k", type=int, default=4, help="nodes per vector")
    p.add_argument("--rows", type=int, default=500, help="examples in the data set")
    p.add_argument("--epochs", type=int, default=10, help="EM epochs of the training step")
    p.add_argument("--no-train", action="store_true",
                   help="stop after the reference evaluation (no compile, no training)")
    p.set_defaults(func=run)
