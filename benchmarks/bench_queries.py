"""Query throughput of pccc beside PyJuice 2.6.3: samples, conditional samples, conditionals,
MPE completions.

Workloads: HCLT-256 (tree from the first 20,000 training images) and PD-256 (28x28, split
intervals 4x4) over MNIST's 784 pixels as categorical(256) inputs, with their initial random
parameters (a query's cost does not depend on the values). Queries, each timed after one
untimed call of the same shape (JIT, CUDA graphs), with the device synchronized:

- ``sample``: 10,000 unconditional samples (in passes of ``--batch`` rows);
- ``cond_sample``: one sample given the top half of each of the first 10,000 test images
  (rows 14..27 free), in passes of ``--batch`` rows;
- ``conditional``: ``log p(X_v = k | e)`` for a batch of 512 test images, a random half of
  each row's pixels missing;
- ``mpe``: max-product completions of 512 test images whose bottom half is missing (PyJuice
  has no MPE decoding: pccc's alone).

Rates are rows per second. pccc runs ``pccc.query`` on the module of ``--backend`` (Triton by
default on a CUDA device: every query in its own kernels, sampling and MPE through the
max-product forward and top-down kernels of ``backends/triton/queries.py``). On a Triton module
a check line follows the rates (``"check"``): the MPE ``log p`` of the first 64 rows beside the
torch module's decoding of the same plan (largest difference), and the mean ``log p`` of 2,000
samples of each (both estimate minus the entropy: they should agree within a few standard
errors). PyJuice runs in a subprocess (``--pyjuice``), as
``gpu_bench.py`` runs it: ``juice.queries.sample(pc, num_samples=...)``; for conditional samples
``juice.queries.marginal(pc, data, missing_mask)`` then ``juice.queries.sample(pc,
conditional=True)`` per pass; ``juice.queries.conditional(pc, data, missing_mask)``. One JSON
line per result, a table last.

Run on the GPU machine: ``source benchmarks/device_env.sh; python benchmarks/bench_queries.py
--pyjuice [--which hclt256,pd256] [--out DIR]``. ``--quick`` runs pccc's part on the CPU on a
tiny HCLT (16 pixels, 4 latents, torch backend; ``--backend triton`` with ``TRITON_INTERPRET=1``
runs the Triton kernels under the interpreter): a check that the script works, not a result.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

QUERIES = ("sample", "cond_sample", "conditional", "mpe")


def load_mnist(path: str, quick: bool) -> tuple[np.ndarray, np.ndarray]:
    """Training and test images as int64 ``[N, 784]`` (``--quick`` without the file: random
    pixels)."""
    if os.path.exists(path):
        d = np.load(path)
        return (d["x_train"].reshape(len(d["x_train"]), -1).astype(np.int64),
                d["x_test"].reshape(len(d["x_test"]), -1).astype(np.int64))
    if not quick:
        raise SystemExit(f"{path}: no such file (MNIST as in .bench/mnist.npz)")
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (2000, 784)), rng.integers(0, 256, (600, 784))


def inputs(xte: np.ndarray, num_vars: int, n_sample: int, n_query: int, side: int
           ) -> dict[str, np.ndarray]:
    """The evidence of each query (``-1`` = missing) over the first ``num_vars`` pixels of
    images ``side`` pixels wide."""
    x = xte[:, :num_vars]
    top = np.arange(num_vars) < (num_vars // side // 2) * side  # the top half's pixels
    reps = -(-n_sample // len(x))
    cond = np.tile(x, (reps, 1))[:n_sample].copy()
    cond[:, ~top] = -1
    half = x[:n_query].copy()
    rng = np.random.default_rng(0)
    for row in half:
        row[rng.permutation(num_vars)[: num_vars // 2]] = -1
    mpe = x[:n_query].copy()
    mpe[:, ~top] = -1
    return {"cond_sample": cond, "conditional": half, "mpe": mpe}


def timed(fn: Callable[[], Any], device: str) -> float:
    """Seconds of ``fn()`` after one untimed call."""
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t


def pccc_side(name: str, x: np.ndarray, xte: np.ndarray, a: argparse.Namespace) -> list[dict]:
    import pccc
    from pccc import query
    from pccc.structures import HCLT, PD

    t0 = time.perf_counter()
    if a.quick:
        circuit, side = HCLT(x[:2000, 400:416], 4, num_cats=256, device="cpu"), 4
    elif name.startswith("hclt"):
        circuit, side = HCLT(torch.as_tensor(x[:20000], device=a.device), int(name[4:]),
                             num_cats=256), 28
    else:
        circuit, side = PD((28, 28), int(name[2:]), split_intervals=(4, 4), num_cats=256), 28
    t1 = time.perf_counter()
    model = pccc.compile(circuit, backend=a.backend, device=a.device)
    t2 = time.perf_counter()
    nv = circuit.num_vars
    ev = inputs(xte if not a.quick else xte[:, 400:], nv, a.samples, a.rows, side)
    dev = model.device
    evt = {k: torch.as_tensor(v, device=dev) for k, v in ev.items()}
    bs = a.batch
    runs: dict[str, Callable[[], Any]] = {
        "sample": lambda: query.sample(model, a.samples, seed=0, batch_size=bs),
        "cond_sample": lambda: query.sample(model, a.samples, evidence=evt["cond_sample"],
                                            seed=0, batch_size=bs),
        "conditional": lambda: query.conditional(model, evt["conditional"]),
        "mpe": lambda: query.mpe(model, evt["mpe"]),
    }
    out = []
    for q in QUERIES:
        n = a.samples if q in ("sample", "cond_sample") else a.rows
        s = timed(runs[q], a.device)
        out.append(dict(side="pccc", workload=name, query=q, rows=n, seconds=round(s, 4),
                        rows_per_s=round(n / s, 1), backend=model.backend_name,
                        device=_card(a.device), structure_s=round(t1 - t0, 2),
                        compile_s=round(t2 - t1, 2)))
        print(json.dumps(out[-1]), flush=True)
    if model.backend_name == "triton":
        out.append(dict(side="check", workload=name, **check_against_torch(model, evt["mpe"])))
        print(json.dumps(out[-1]), flush=True)
    return out


def check_against_torch(model: Any, x: torch.Tensor, n: int = 2000) -> dict[str, float]:
    """The Triton module's MPE and samples beside the torch module of the same plan's."""
    from pccc import query
    from pccc.backends.torch import queries as tq

    twin = tq.twin(model)
    rows = x[:64]
    _, ll = query.mpe(model, rows)
    _, ll_t = query.mpe(twin, rows)
    fin = torch.isfinite(ll_t)
    out = {"mpe_max_abs_diff": float((ll[fin] - ll_t[fin]).abs().max()) if fin.any() else 0.0}
    for side, m in (("triton", model), ("torch", twin)):
        draws = query.sample(m, n, seed=1)
        lp = model(draws).double()
        out[f"sample_mean_ll_{side}"] = round(float(lp.mean()), 3)
        out[f"sample_mean_ll_{side}_se"] = round(float(lp.std() / n**0.5), 3)
    return out


def _card(device: str) -> str:
    return torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"


def pyjuice_side(names: list[str], a: argparse.Namespace) -> list[dict]:
    """PyJuice's runs (``--pj-only``, in the subprocess ``--pyjuice`` starts)."""
    import pyjuice as juice

    dev = torch.device(a.device)
    x, xte = load_mnist(a.mnist, False)
    xg = torch.from_numpy(x).to(dev)
    ev = {k: torch.from_numpy(v).to(dev) for k, v in inputs(xte, 784, a.samples, a.rows,
                                                            28).items()}
    out = []
    for name in names:
        lat = int(name[4:] if name.startswith("hclt") else name[2:])
        ns = juice.structures.HCLT(xg[:20000].float(), num_latents=lat) if \
            name.startswith("hclt") else juice.structures.PD(
                data_shape=(28, 28), num_latents=lat, split_intervals=(4, 4),
                structure_type="sum_dominated")
        pc = juice.compile(ns)
        pc.to(dev)
        out += _pyjuice_queries(juice, pc, ev, name, a)
        torch.cuda.empty_cache()
    return out


def _pyjuice_queries(juice: Any, pc: Any, ev: dict[str, torch.Tensor], name: str,
                     a: argparse.Namespace) -> list[dict]:
    def sample() -> None:
        for s in range(0, a.samples, a.batch):
            juice.queries.sample(pc, num_samples=min(a.batch, a.samples - s))

    def cond_sample() -> None:
        for s in range(0, a.samples, a.batch):
            e = ev["cond_sample"][s: s + a.batch]
            juice.queries.marginal(pc, data=e.clamp_min(0), missing_mask=e < 0)
            juice.queries.sample(pc, conditional=True)

    def conditional() -> None:
        e = ev["conditional"]
        juice.queries.conditional(pc, data=e.clamp_min(0), missing_mask=e < 0)

    out = []  # the fast query first: a slow sampler cut short by --pj-timeout loses least
    for q, fn in (("conditional", conditional), ("sample", sample),
                  ("cond_sample", cond_sample)):
        n = a.samples if q != "conditional" else a.rows
        s = timed(fn, a.device)
        out.append(dict(side="pyjuice", workload=name, query=q, rows=n, seconds=round(s, 4),
                        rows_per_s=round(n / s, 1), device=_card(a.device)))
        print(json.dumps(out[-1]), flush=True)
    return out


def run_pyjuice(which: str, a: argparse.Namespace) -> list[dict]:
    """PyJuice's side, one subprocess per workload, its lines printed as they come; after
    ``--pj-timeout`` seconds a workload's process is stopped and what it printed stands.
    PyJuice samples ``--pj-samples`` rows per sampling query (its sampler is slow; rows per
    second are compared)."""
    return [r for w in which.split(",") if w for r in _run_pyjuice_one(w, a)]


def _run_pyjuice_one(which: str, a: argparse.Namespace) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([a.pj_site, os.environ.get(
        "PYTHONPATH", "")]), PYJUICE_DISABLE_CUDA_KERNELS="1")
    samples = a.pj_samples or a.samples
    cmd = [sys.executable, os.path.abspath(__file__), "--pj-only", "--which", which,
           "--mnist", os.path.abspath(a.mnist), "--samples", str(samples), "--rows",
           str(a.rows), "--batch", str(min(a.batch, samples)), "--device", a.device]
    rows: list[dict] = []
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    timer = threading.Timer(a.pj_timeout, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        for ln in proc.stdout:
            if ln.startswith("{"):
                rows.append(json.loads(ln))
                print(ln.rstrip(), flush=True)
    finally:
        timer.cancel()
        err = proc.stderr.read() if proc.stderr is not None else ""
        proc.wait()
    if proc.returncode:
        print(f"PyJuice's side on {which} exited with {proc.returncode} (-9: stopped after "
              f"{a.pj_timeout} s)\n{err[-3000:]}", file=sys.stderr)
    return rows


def table(rows: list[dict]) -> None:
    """Rows per second per workload and query, pccc beside PyJuice, with the ratio (check
    lines first)."""
    for r in rows:
        if r["side"] == "check":
            print(json.dumps(r))
    rows = [r for r in rows if r["side"] != "check"]
    by = {(r["side"], r["workload"], r["query"]): r for r in rows}
    names = sorted({r["workload"] for r in rows})
    card = next((r["device"] for r in rows), "?")
    print(f"\n| workload | query | pccc rows/s | PyJuice rows/s | pccc / PyJuice |  ({card})")
    print("|---|---|---:|---:|---:|")
    for w in names:
        for q in QUERIES:
            p, j = by.get(("pccc", w, q)), by.get(("pyjuice", w, q))
            if p is None and j is None:
                continue
            ratio = f"{p['rows_per_s'] / j['rows_per_s']:.2f}" if p and j else "-"
            print(f"| {w} | {q} | {p['rows_per_s'] if p else '-'} | "
                  f"{j['rows_per_s'] if j else '-'} | {ratio} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist", default=".bench/mnist.npz")
    ap.add_argument("--which", default="hclt256,pd256")
    ap.add_argument("--device", default=None, help="cuda (default) or cpu (--quick)")
    ap.add_argument("--backend", default=None, help="pccc backend (default: triton on cuda)")
    ap.add_argument("--samples", type=int, default=10000, help="samples per sampling query")
    ap.add_argument("--rows", type=int, default=512, help="rows of conditional and MPE")
    ap.add_argument("--batch", type=int, default=1000, help="samples per sampling pass")
    ap.add_argument("--pyjuice", action="store_true", help="PyJuice's side in a subprocess")
    ap.add_argument("--pj-site", default="/tmp/site", help="where PyJuice is installed")
    ap.add_argument("--pj-timeout", type=float, default=600.0,
                    help="seconds PyJuice's side may take per workload (its results so far "
                         "stand)")
    ap.add_argument("--pj-samples", type=int, default=0,
                    help="samples per sampling query on PyJuice's side (0: --samples)")
    ap.add_argument("--pj-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true",
                    help="pccc's part on the CPU on a tiny HCLT (checks the script)")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    a = ap.parse_args(argv)
    if a.quick:
        a.device, a.backend = a.device or "cpu", a.backend or "torch"
        a.samples, a.rows, a.batch, a.which = min(a.samples, 500), min(a.rows, 64), 250, "hclt4"
    a.device = a.device or "cuda"
    a.backend = a.backend or ("triton" if a.device.startswith("cuda") else "torch")
    names = [w for w in a.which.split(",") if w]
    if a.pj_only:
        pyjuice_side(names, a)
        return
    rows: list[dict] = []
    x, xte = load_mnist(a.mnist, a.quick)
    for name in names:
        try:
            rows += pccc_side(name, x, xte, a)
        except Exception as e:  # one failing workload must not hide the others
            print(f"{name}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    if a.pyjuice:  # after pccc's side: PyJuice's sampling is slow, its part may be cut short
        torch.cuda.empty_cache()
        rows += run_pyjuice(",".join(names), a)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "bench_queries.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    table(rows)


if __name__ == "__main__":
    main()
