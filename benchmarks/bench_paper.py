"""The PyJuice paper's structures, and the largest circuits that train, on one GPU: pccc
(Triton backend, tf32) beside PyJuice 2.6.3 (CUDA graphs) in one command.

    python benchmarks/bench_paper.py [--which pd-mid,...] [--out DIR]     # the paper's four
    python benchmarks/bench_paper.py --scale [--kinds pd,hclt]            # largest that trains
    python benchmarks/bench_paper.py --quick                              # CPU check, no GPU

Paper mode: for each of ``paper_structures.PAPER`` (PD-mid, PD-large, HCLT-mid, HCLT-large over
32x32x3 categorical(256) inputs; 60,000 synthetic images, ``paper_structures.synthetic_images``)
and each side, in a subprocess of its own (so that running out of memory ends only that run):
structure time, compile time, the first batch (kernel JIT / CUDA-graph recording), ``E``
mini-batch EM epochs (batch 512, step 0.1, pseudocount 0.1, one step per batch) and ``E``
full-batch EM epochs (flows of all 117 batches accumulated, then one step of size 1), peak GPU
memory from the compile on (``peak_gib``; the structure's, e.g. HCLT's mutual information on the
GPU, is ``peak_structure_gib``). A side that runs out of memory gives ``"status": "OOM"`` and
the stage. Every epoch covers the 117 whole batches of 512 (59,904 examples).

Scale mode: PD over square MNIST-shaped images (split intervals 4x4, ``max_prod_block_conns``
4; side x latents from ``--pd-sides`` and ``--pd-latents``) and HCLT over MNIST (``--hclt-latents``;
tree from 20,000 images), in increasing order of edges, one trial per subprocess: build,
compile, first batch, then ``--batches`` mini-batch EM batches timed (batch 512, EM every
batch); a side stops climbing at its first failure. Reported: each trial's edges and status
and, at the largest size that trained, the time per batch and the epoch it implies (117
batches: ``epoch_s_est``).

Quick mode runs pccc's side alone, in this process, on the CPU with the torch backend over tiny
structures, and prints the same rows (plus the closed-form edge counts), to check the script
without a GPU; ``--quick --scale`` climbs tiny ladders the same way, in subprocesses.

One JSON line per run (also in ``DIR/bench_paper.jsonl``), tables last. Internal: ``--child``
runs pccc's side of one structure (what the subprocesses run).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_options import parse_options  # noqa: E402
from paper_structures import (  # noqa: E402
    PAPER,
    TREE_EXAMPLES,
    Structure,
    build_ours,
    edge_count,
    learn_tree,
    synthetic_images,
)

#: examples of an epoch (the paper's: 60,000)
EPOCH_EXAMPLES = 60000


def is_oom(e: BaseException) -> bool:
    """Whether ``e`` is running out of GPU (or host) memory."""
    return isinstance(e, (torch.cuda.OutOfMemoryError, MemoryError)) or (
        isinstance(e, RuntimeError) and "out of memory" in str(e).lower())


class Run:
    """Times the stages and epochs of one side's run of one structure into ``row``.

    ``xg`` is the data (``uint8 [N, V]``, on the device); batch ``i`` is its rows
    ``i*B .. (i+1)*B`` as int64. :meth:`execute` records running out of memory (or any other
    failure) as the row's ``status`` and the stage it happened in.
    """

    def __init__(self, row: dict, xg: torch.Tensor, batch: int):
        self.row, self.xg, self.batch = row, xg, batch
        self.num_batches = xg.shape[0] // batch
        self.cuda = xg.is_cuda
        row.update(status="ok", batch=batch, examples=self.num_batches * batch)
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def peak(self) -> float | None:
        return round(torch.cuda.max_memory_allocated() / 2**30, 2) if self.cuda else None

    def batch_at(self, i: int) -> torch.Tensor:
        return self.xg[i * self.batch: (i + 1) * self.batch].long()

    def stage(self, name: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` as stage ``name`` (its time in ``row[name + "_s"]``)."""
        self.row["stage"] = name
        self.sync()
        t0 = time.perf_counter()
        out = fn()
        self.sync()
        self.row[f"{name}_s"] = round(time.perf_counter() - t0, 3)
        return out

    def epochs(self, name: str, step: Callable[[int], torch.Tensor],
               end: Callable[[], None] | None, n: int) -> None:
        """``n`` timed epochs of ``step(i)`` over every batch, then ``end()`` (if any)."""
        self.row["stage"] = name
        times, lls = [], []
        for _ in range(n):
            self.sync()
            t0 = time.perf_counter()
            tot = torch.zeros((), device=self.xg.device)
            for i in range(self.num_batches):
                tot += step(i)
            if end is not None:
                end()
            self.sync()
            times.append(round(time.perf_counter() - t0, 3))
            lls.append(round(float(tot) / self.num_batches, 3))
        self.row.update({f"{name}_epoch_times": times, f"{name}_epoch_s": times[-1],
                         f"{name}_train_ll": lls})

    def trial(self, step: Callable[[int], torch.Tensor], n: int) -> None:
        """``n`` timed batches of ``step`` (from batch 1: batch 0 was the first batch)."""
        self.row["stage"] = "trial"
        self.sync()
        t0 = time.perf_counter()
        for i in range(1, n + 1):
            step(i % self.num_batches)
        self.sync()
        per = (time.perf_counter() - t0) / n
        self.row.update(batch_s=round(per, 4),
                        epoch_s_est=round(per * (EPOCH_EXAMPLES // self.batch), 2))

    def execute(self, body: Callable[[], None]) -> dict:
        """Run ``body``; return the row with its status (``ok``, ``OOM``, ``failed``)."""
        try:
            body()
            self.row.pop("stage", None)
        except Exception as e:  # the row records it: the parent keeps going
            self.row.update(status="OOM" if is_oom(e) else "failed",
                            error=f"{type(e).__name__}: {e}"[:500])
        self.row["peak_gib"] = self.peak()
        return self.row


def run_ours(r: Run, s: Structure, a: argparse.Namespace) -> None:
    """pccc's side of one structure: build, compile, first batch, then epochs or a trial."""
    import pccc
    from pccc.ir import counts
    from pccc.optim import FullBatchEM, MiniBatchEM

    seed = None if a.uniform else 0
    parent = None
    if s.kind == "hclt":
        parent = r.stage("tree", lambda: learn_tree(r.xg[:a.tree_examples].long()))
    c = r.stage("structure", lambda: build_ours(s, parent, seed))
    k = counts(c)
    se, pe = edge_count(s, parent)
    r.row.update(sum_edges=k.sum_edges, product_edges=k.product_edges,
                 edges=k.sum_edges + k.product_edges, closed_form_edges=se + pe)
    if r.cuda:
        r.row["peak_structure_gib"] = r.peak()
        torch.cuda.reset_peak_memory_stats()
    opts = dict(parse_options(a.option), precision=a.precision) if a.backend == "triton" else {}
    r.row.update(options=a.option, pipeline=a.pipeline or "")
    model = r.stage("compile", lambda: pccc.compile(c, backend=a.backend, device=r.xg.device,
                                                    pipeline=a.pipeline, **opts))
    r.row["plan_sum_edges"] = int(model.plan.num_sum_edges())
    if hasattr(model, "param_grads"):
        model.param_grads = False  # EM reads flows; PyJuice computes no gradients either

    def step(i: int, opt: Any) -> torch.Tensor:
        lls = model(r.batch_at(i))
        lls.mean().backward()
        model.zero_grad(set_to_none=True)
        if opt is not None:
            opt.step()
        return lls.detach().mean()

    def first() -> None:
        step(0, None)
        model.zero_flows()

    r.stage("first_batch", first)
    mb = MiniBatchEM(model, step_size=0.1, pseudocount=0.1)
    if a.mode == "trial":
        r.trial(lambda i: step(i, mb), a.batches)
        return
    r.epochs("minibatch", lambda i: step(i, mb), None, a.epochs)
    fb = FullBatchEM(model, pseudocount=0.1)
    r.epochs("fullbatch", lambda i: step(i, None), fb.step, a.epochs)


def ours_row(s: Structure, xg: torch.Tensor, a: argparse.Namespace) -> dict:
    gc.collect()
    r = Run(dict(kind="ours", structure=s.name, spec=s.spec(), mode=a.mode, backend=a.backend,
                 precision=a.precision if a.backend == "triton" else "fp32",
                 card=torch.cuda.get_device_name(0) if xg.is_cuda else "cpu"), xg, a.batch)
    return r.execute(lambda: run_ours(r, s, a))


def _last_json(text: str) -> dict | None:
    rows = [ln for ln in text.splitlines() if ln.startswith("{")]
    return json.loads(rows[-1]) if rows else None


def cap_memory(gib: float) -> None:
    """Let this process allocate at most ``gib`` GiB of the GPU (0: no cap)."""
    if gib > 0 and torch.cuda.is_available():
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, gib * 2**30 / total))


def subprocess_row(side: str, s: Structure, data: str, a: argparse.Namespace, mode: str) -> dict:
    """One side's run of ``s`` in a subprocess; its JSON row (or why there is none)."""
    common = ["--mode", mode, "--epochs", str(a.epochs), "--batches", str(a.batches),
              "--gib", str(a.gib),
              "--batch", str(a.batch), "--tree-examples", str(a.tree_examples)]
    env = dict(os.environ)
    if side == "ours":
        cmd = [sys.executable, __file__, "--child", json.dumps(s.spec()), "--data", data,
               "--precision", a.precision, "--backend", a.backend] + common
        if a.uniform:
            cmd.append("--uniform")
        cmd += [f"--option={o}" for o in a.option]
        if a.pipeline:
            cmd += ["--pipeline", a.pipeline]
    else:
        cmd = [sys.executable, str(HERE / "pyjuice_paper.py"), json.dumps(s.spec()), data] + common
        env.update(PYTHONPATH=os.pathsep.join(p for p in (a.pj_site, env.get("PYTHONPATH")) if p),
                   PYJUICE_DISABLE_CUDA_KERNELS="1")
        if not a.pj_cudagraph:
            cmd.append("--no-cudagraph")
    base = dict(kind="ours" if side == "ours" else "pyjuice", structure=s.name, spec=s.spec(),
                mode=mode)
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=a.timeout)
    except subprocess.TimeoutExpired:
        return dict(base, status="timeout", timeout_s=a.timeout)
    row = _last_json(proc.stdout)
    if row is None:  # killed (e.g. by the host running out of memory) or crashed
        return dict(base, status="failed", returncode=proc.returncode,
                    error=proc.stderr[-800:])
    return row


def largest_that_trains(ladder: Sequence[Structure], trial: Callable[[Structure], dict]
                        ) -> list[dict]:
    """Trials of ``ladder`` (in increasing size) until the first that does not train."""
    rows = []
    for s in ladder:
        rows.append(trial(s))
        print(json.dumps(rows[-1]), flush=True)
        if rows[-1].get("status") != "ok":
            break
    return rows


def scale_ladders(a: argparse.Namespace) -> dict[str, list[Structure]]:
    """PD (side x latents, by closed-form edges) and HCLT (by latents) trials."""
    pd = [Structure(f"pd{side}-L{lat}", "pd", lat, shape=(side, side), split_intervals=(4, 4),
                    max_prod_block_conns=4)
          for side in _ints(a.pd_sides) for lat in _ints(a.pd_latents)]
    pd.sort(key=lambda s: sum(edge_count(s)))
    hclt = [Structure(f"hclt-L{lat}", "hclt", lat, shape=(28, 28))
            for lat in sorted(_ints(a.hclt_latents))]
    return {k: v for k, v in (("pd", pd), ("hclt", hclt)) if k in a.kinds.split(",")}


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t]


def images_for(s: Structure, n: int, mnist: str) -> np.ndarray:
    """MNIST's training images for 28x28 structures (when the file is there), else
    synthetic images of the structure's shape (``uint8 [n, V]``)."""
    if tuple(s.shape) == (28, 28) and os.path.exists(mnist):
        x = np.load(mnist)["x_train"].reshape(-1, 784)
        return np.ascontiguousarray(np.resize(x, (n, 784)).astype(np.uint8))
    shape = s.shape if len(s.shape) == 3 else (1,) + tuple(s.shape)
    return synthetic_images(n, shape)


class DataFiles:
    """The examples of each input shape, written once to a scratch folder as ``.npy``."""

    def __init__(self, n: int, mnist: str):
        self.n, self.mnist = n, mnist
        self.dir = tempfile.TemporaryDirectory(prefix="bench_paper_")
        self.paths: dict[tuple[int, ...], str] = {}

    def path(self, s: Structure) -> str:
        if s.shape not in self.paths:
            p = os.path.join(self.dir.name, "x_" + "x".join(map(str, s.shape)) + ".npy")
            np.save(p, images_for(s, self.n, self.mnist))
            self.paths[s.shape] = p
        return self.paths[s.shape]


def paper(a: argparse.Namespace, files: DataFiles) -> list[dict]:
    rows = []
    for name in (w for w in a.which.split(",") if w):
        for side in a.sides.split(","):
            rows.append(subprocess_row(side, PAPER[name], files.path(PAPER[name]), a, "paper"))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def scale(a: argparse.Namespace, files: DataFiles) -> list[dict]:
    rows = []
    for kind, ladder in scale_ladders(a).items():
        for side in a.sides.split(","):
            def trial(s: Structure, side: str = side) -> dict:
                return subprocess_row(side, s, files.path(s), a, "trial")

            rows += [dict(r, scale=kind) for r in largest_that_trains(ladder, trial)]
    return rows


QUICK = {
    "pd-quick": Structure("pd-quick", "pd", 16, shape=(3, 8, 8), split_intervals=(3, 4, 4)),
    "hclt-quick": Structure("hclt-quick", "hclt", 8, shape=(3, 8, 8)),
}


def quick(a: argparse.Namespace) -> list[dict]:
    """pccc's side of tiny structures in this process (CPU, torch backend)."""
    rows = []
    for s in QUICK.values():
        xg = torch.from_numpy(synthetic_images(a.examples, s.shape, seed=1))
        rows.append(ours_row(s, xg, a))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _cell(r: dict | None, key: str) -> str:
    if r is None:
        return "-"
    if r.get("status") != "ok":
        return str(r.get("status"))
    v = r.get(key)
    if key == "edges" and v is not None and v >= 100_000:
        return f"{v / 1e6:.1f}M"
    return "-" if v is None else str(v)


def paper_table(rows: Sequence[dict]) -> None:
    keys = [("edges", "edges"), ("compile_s", "compile"), ("first_batch_s", "1st batch"),
            ("minibatch_epoch_s", "mini-batch epoch"), ("fullbatch_epoch_s", "full-batch epoch"),
            ("peak_gib", "peak GiB")]
    print(f"{'structure':11} " + " ".join(f"{h + ' ours / PJ':>26}" for _, h in keys))
    for name in dict.fromkeys(r["structure"] for r in rows if r.get("mode") != "trial"):
        ours = next((r for r in rows if r["structure"] == name and r["kind"] == "ours"), None)
        pj = next((r for r in rows if r["structure"] == name and r["kind"] == "pyjuice"), None)
        cells = []
        for k, _ in keys:
            ratio = ""
            if ours and pj and ours.get("status") == pj.get("status") == "ok" and \
                    k != "edges" and ours.get(k) and pj.get(k):
                ratio = f" ({ours[k] / pj[k]:.2f})"
            cells.append(f"{_cell(ours, k) + ' / ' + _cell(pj, k) + ratio:>26}")
        print(f"{name:11} " + " ".join(cells))


def scale_table(rows: Sequence[dict]) -> None:
    print(f"{'scale':6} {'side':8} {'largest that trains':22} {'edges':>9} {'epoch s (est)':>13} "
          f"{'first failure':22}")
    for kind in dict.fromkeys(r["scale"] for r in rows):
        for side in ("ours", "pyjuice"):
            got = [r for r in rows if r["scale"] == kind and r["kind"] == side]
            if not got:
                continue
            ok = [r for r in got if r.get("status") == "ok"]
            bad = next((r for r in got if r.get("status") != "ok"), None)
            best = ok[-1] if ok else None
            print(f"{kind:6} {side:8} {best['structure'] if best else 'none':22} "
                  f"{_cell(best, 'edges'):>9} {_cell(best, 'epoch_s_est'):>13} "
                  f"{(bad['structure'] + ' ' + bad['status']) if bad else 'none':22}")
        most = {side: max((r["edges"] for r in rows if r["scale"] == kind and r["kind"] == side
                           and r.get("status") == "ok"), default=0)
                for side in ("ours", "pyjuice")}
        if most["ours"] and most["pyjuice"]:
            top = [side for side in ("ours", "pyjuice") if all(
                r.get("status") == "ok" for r in rows if r["scale"] == kind and r["kind"] == side)]
            print(f"{kind:6} largest edges, ours / PyJuice: {most['ours'] / most['pyjuice']:.2f}"
                  + (f" (no failure on the ladder: {', '.join(top)})" if top else ""))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--which", default=",".join(PAPER))
    ap.add_argument("--sides", default="ours,pyjuice")
    ap.add_argument("--scale", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--kinds", default="pd,hclt", help="--scale: which structures")
    ap.add_argument("--pd-sides", default="28", help="--scale: PD image sides")
    ap.add_argument("--pd-latents", default="256,512,768,1024,1536,2048")
    ap.add_argument("--hclt-latents", default="256,512,1024,1536,2048,3072,4096")
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs of each kind")
    ap.add_argument("--batches", type=int, default=4, help="--scale: timed batches a trial")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--examples", type=int, default=EPOCH_EXAMPLES)
    ap.add_argument("--tree-examples", type=int, default=TREE_EXAMPLES)
    ap.add_argument("--precision", default="tf32")
    ap.add_argument("--backend", default="triton")
    ap.add_argument("--uniform", action="store_true", help="uniform initial parameters")
    ap.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                    help="ours: a Triton backend option (repeatable; as gpu_bench.py's)")
    ap.add_argument("--pipeline", default=None,
                    help="ours: the pass pipeline (default: the training pipeline), e.g. "
                         "'canonicalize,group-blocks{tolerance=0.125},partition-layers,"
                         "layout-params'")
    ap.add_argument("--mnist", default=".bench/mnist.npz")
    ap.add_argument("--pj-site", default="/tmp/site")
    ap.add_argument("--no-pj-cudagraph", dest="pj_cudagraph", action="store_false")
    ap.add_argument("--timeout", type=int, default=540, help="seconds a subprocess may run")
    ap.add_argument("--gib", type=float, default=0.0,
                    help="cap each side's GPU memory at this many GiB (0: the card's own): an "
                         "80 GB H100's 79.1 GiB on a larger card")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--data", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="paper", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.quick:  # tiny sizes, pccc's side on the CPU (torch backend)
        a.backend, a.batch, a.epochs, a.batches, a.tree_examples = "torch", 128, 2, 2, 512
        a.examples, a.sides = min(a.examples, 512), "ours"
        a.pd_sides, a.pd_latents, a.hclt_latents = "8", "16,32", "4,8"
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.child:  # pccc's side of one structure (a subprocess of this script)
        cap_memory(a.gib)
        xg = torch.from_numpy(np.load(a.data)).to("cuda" if torch.cuda.is_available() else "cpu")
        print(json.dumps(ours_row(Structure.from_spec(json.loads(a.child)), xg, a)), flush=True)
        return 0
    if a.quick and not a.scale:
        rows = quick(a)
    else:
        files = DataFiles(a.examples, a.mnist)
        rows = scale(a, files) if a.scale else paper(a, files)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "bench_paper.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    (scale_table if a.scale else paper_table)(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
