"""GPU benchmark of the Triton backend (and a correctness check), beside PyJuice 2.6.3.

Workloads (the issue's five): HCLT with 32, 128, 256 latents and PD (28x28, split intervals
4x4) with 64 and 256 latents over MNIST's 784 pixels as categorical(256) inputs; batch 512,
one mini-batch EM step (step 0.1, pseudocount 0.1) per batch, 60,000 examples per epoch.

Per workload: structure time, compile time (``pccc.compile`` to a module on the device, the
way PyJuice's ``juice.compile`` + ``.to(device)`` is timed: both sides JIT their kernels on the
first batch), the first batch (that JIT plus one forward+backward), first-epoch and
second-epoch time, peak GPU memory, edges; and the model's quality beside its speed: the test
log-likelihood after each epoch (mean over the first 9,728 MNIST test images, evaluated after
every quarter epoch, untimed) and the time from data to PyJuice's 2-epoch test log-likelihood
(structure + compile + first batch + training until reached; up to 4 epochs). ``--check``
compares the backend with the torch backend (float64, same GPU) on small circuits, per
precision. ``--pyjuice`` runs ``benchmarks/pyjuice_quality.py`` (PyJuice 2.6.3 on the same
workloads, CUDA graphs by default, ``--pj-modes graphs,plain`` for both) in a subprocess first.
One JSON line per result; tables last.

Run: ``python benchmarks/gpu_bench.py --check --pyjuice [--which hclt32,pd64] [--out DIR]``
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pccc  # noqa: E402
import pccc.backends.triton  # noqa: E402,F401  (imported up front, as `import pyjuice` is)
from benchmarks.bench_options import parse_options  # noqa: E402
from benchmarks.seed_stats import print_seed_summary  # noqa: E402
from pccc.optim import MiniBatchEM  # noqa: E402

DEV = "cuda"
os.environ["TRITON_INTERPRET"] = "0"  # the test helpers imported below default it to 1
BATCH = 512


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def check(x: np.ndarray) -> list[dict]:
    """Triton vs the torch backend in float64 on the GPU: ll, gradients, EM step."""
    from pccc.structures import HCLT
    from tests.test_triton_backend import _dense_circuit

    rng = np.random.default_rng(0)
    cases = [("dense-32", _dense_circuit(), rng.integers(0, 5, size=(300, 4))),
             ("hclt-16x64", HCLT(x[:2000, :64], 16, num_cats=256), x[2000:2600, :64])]
    out = []
    for name, c, data in cases:
        data = data.copy()
        data[rng.random(data.shape) < 0.1] = -1
        xt = torch.as_tensor(data, device=DEV)
        ref = pccc.compile(c, backend="torch", device=DEV, dtype=torch.float64)
        lr = ref(xt)
        lr.mean().backward()
        MiniBatchEM(ref, 0.5, 0.1).step()
        for prec in ("fp32", "tf32", "bf16"):
            tri = pccc.compile(c, backend="triton", device=DEV, precision=prec)
            lt = tri(xt)
            lt.mean().backward()
            g = _rel(tri.sum_logits.grad, ref.sum_logits.grad)
            MiniBatchEM(tri, 0.5, 0.1).step()
            w = _rel(torch.exp(tri.log_weights()).nan_to_num(0),
                     torch.exp(ref.log_weights()).nan_to_num(0))
            out.append(dict(kind="check", case=name, precision=prec, ll_rel=_rel(lt, lr),
                            grad_rel=g, em_weights_rel=w, finite=bool(torch.isfinite(lt).all())))
            print(json.dumps(out[-1]), flush=True)
    return out


def build(name: str, x: np.ndarray, xg: torch.Tensor, seed: int = 0):
    """pccc's default structure: HCLT's tree from the first 20,000 training images on the GPU
    (where the data lives, as PyJuice's ``HCLT`` computes its estimate), or PD; ``seed``: of
    the initial parameters (and PD's block connections)."""
    from pccc.structures import HCLT, PD

    if name.startswith("hclt"):
        return HCLT(xg[:20000], int(name[4:]), num_cats=256, seed=seed)
    return PD((28, 28), int(name[2:]), split_intervals=(4, 4), num_cats=256, seed=seed)


def epoch(model, opt, xg: torch.Tensor, batches: int = 0) -> float:
    """Mean train log-likelihood of one epoch (``batches`` > 0: only that many batches)."""
    tot = 0.0
    n = xg.shape[0] if not batches else batches * BATCH
    for s in range(0, n - BATCH + 1, BATCH):
        lls = model(xg[s: s + BATCH])
        lls.mean().backward()
        opt.step()
        model.zero_grad(set_to_none=True)
        tot += float(lls.detach().mean())
    return tot / (n // BATCH)


def profile(model, opt, xg: torch.Tensor, steps: int = 3) -> None:
    """The top GPU kernels of a few training batches (torch.profiler)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as prof

    with prof(activities=[ProfilerActivity.CUDA]) as p:
        epoch(model, opt, xg, steps)
        torch.cuda.synchronize()
    print(p.key_averages().table(sort_by="cuda_time_total", row_limit=14, max_name_column_width=50),
          flush=True)
    kinds: dict[str, list[float]] = {}
    for ev in p.key_averages():
        t = getattr(ev, "device_time_total", 0.0) or getattr(ev, "cuda_time_total", 0.0)
        if t <= 0 or str(getattr(ev, "device_type", "")) != "DeviceType.CUDA":
            continue  # kernels only (the CPU-side ops carry their kernels' time too)
        k = re.sub(r"_b\d+_c\d+.*", "", ev.key)  # sum kernels by role, not shape
        acc = kinds.setdefault(k, [0.0, 0])
        acc[0] += t / steps / 1000
        acc[1] += ev.count // steps
    tot = sum(v[0] for v in kinds.values())
    print(f"kernel time per batch {tot:.3f} ms in {sum(v[1] for v in kinds.values())} launches; "
          + ", ".join(f"{k} {v[0]:.3f} ms/{v[1]}" for k, v in
                      sorted(kinds.items(), key=lambda kv: -kv[1][0])), flush=True)


def test_ll(model, xte: torch.Tensor) -> float:
    """Mean test log-likelihood over the whole batches of ``xte`` (9,728 MNIST images)."""
    n = (xte.shape[0] // BATCH) * BATCH
    with torch.no_grad():
        return sum(float(model(xte[s: s + BATCH]).double().sum()) for s in range(0, n, BATCH)) / n


def train_traced(model, opt, xg: torch.Tensor, xte: torch.Tensor, epochs: int, target: float | None,
                 pieces: int = 4) -> tuple[list[float], list[float], float | None, float]:
    """Train ``epochs`` epochs (more, up to ``2 * epochs``, while the test log-likelihood is
    below ``target``), evaluating the test set after every ``1 / pieces`` of an epoch; the
    evaluations are not timed.

    Returns:
        per-epoch times, per-epoch test log-likelihoods, the training time until the test
        log-likelihood first reached ``target`` (None: never), and the last train epoch's mean
        log-likelihood.
    """
    nb = xg.shape[0] // BATCH
    cuts = [round(nb * (i + 1) / pieces) for i in range(pieces)]
    times: list[float] = []
    lls: list[float] = []
    reached, clock, train_ll = None, 0.0, 0.0
    while len(times) < epochs or (target is not None and reached is None
                                  and len(times) < 2 * epochs):
        t_ep, tot, start, ll = 0.0, 0.0, 0, None
        for cut in cuts:
            t0 = time.time()
            for i in range(start, cut):
                lls_b = model(xg[i * BATCH: (i + 1) * BATCH])
                lls_b.mean().backward()
                opt.step()
                model.zero_grad(set_to_none=True)
                tot += float(lls_b.detach().mean())
            torch.cuda.synchronize()
            t_ep += time.time() - t0
            start = cut
            ll = None
            if cut == nb or (target is not None and reached is None):
                ll = test_ll(model, xte)
                if target is not None and reached is None and ll >= target:
                    reached = clock + t_ep
        clock += t_ep
        times.append(round(t_ep, 3))
        lls.append(round(ll if ll is not None else test_ll(model, xte), 3))
        train_ll = tot / nb
    return times, lls, reached, train_ll


def workload(name: str, x: np.ndarray, xg: torch.Tensor, xte: torch.Tensor, precision: str,
             do_profile: bool = False, grads: bool = False, pipeline: str | None = None,
             target: float | None = None, options: dict | None = None, seed: int = 0) -> dict:
    """Build, compile and train one workload for 2 epochs (more while the test
    log-likelihood is below ``target``, PyJuice's after 2 epochs)."""
    gc.collect()  # earlier workloads' modules (and their CUDA graph pools) out of the peak
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    c = build(name, x, xg, seed)
    t1 = time.time()
    model = pccc.compile(c, backend="triton", device=DEV, precision=precision, pipeline=pipeline,
                         **(options or {}))
    model.param_grads = grads  # EM reads flows; PyJuice computes no gradients either
    torch.cuda.synchronize()
    t2 = time.time()
    mem_compile = torch.cuda.max_memory_allocated() / 2**30
    lls = model(xg[:BATCH])  # JIT of every kernel: the first batch can run after this
    lls.mean().backward()
    model.zero_grad(set_to_none=True)
    model.zero_flows()
    torch.cuda.synchronize()
    t3 = time.time()
    mem_first = torch.cuda.max_memory_allocated() / 2**30
    opt = MiniBatchEM(model, step_size=0.1, pseudocount=0.1)
    times, lls_test, reached, ll = train_traced(model, opt, xg, xte, 2, target)
    peak = torch.cuda.max_memory_allocated() / 2**30
    if do_profile:
        profile(model, opt, xg)
    return dict(kind="ours", name=name, seed=seed, precision=precision, param_grads=grads,
                pipeline=pipeline or "", card=torch.cuda.get_device_name(0),
                structure_s=round(t1 - t0, 2), compile_s=round(t2 - t1, 3),
                first_batch_s=round(t3 - t2, 2), to_first_batch_s=round(t3 - t1, 2),
                first_epoch_s=times[0], epoch_s=times[1], epoch_times=times,
                test_ll=lls_test, test_ll_2=lls_test[1], train_ll_epoch2=round(ll, 2),
                target_ll=target,
                time_to_target_s=None if reached is None else round(t3 - t0 + reached, 2),
                peak_gib=round(peak, 2),
                peak_compile_gib=round(mem_compile, 2), peak_first_batch_gib=round(mem_first, 2),
                alloc_gib=round(torch.cuda.memory_allocated() / 2**30, 2),
                num_edges=int(model.plan.num_sum_edges()),
                startup=getattr(model.executor, "startup_log", []),
                compile_workers=getattr(model.executor, "worker_log", []))


def pyjuice(mnist: str, cudagraph: bool, site: str, which: str, seed: int | None = None
            ) -> list[dict]:
    """PyJuice's runs of the workloads (``pyjuice_quality.py``) in a subprocess (``seed``:
    torch's seed before each workload; None: torch's default)."""
    env = dict(os.environ, PYTHONPATH=site, PYJUICE_DISABLE_CUDA_KERNELS="1",
               PJ_CUDAGRAPH="1" if cudagraph else "0")
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyjuice_quality.py")
    seed_arg = [] if seed is None else ["--seed", str(seed)]
    proc = subprocess.run([sys.executable, script, mnist, "--which", which, *seed_arg], env=env,
                          capture_output=True, text=True, timeout=1500)
    rows = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    for r in rows:  # the time from data to PyJuice's model after 2 epochs
        r["seed"] = seed
        r["time_to_2_epochs_s"] = round(r["structure_s"] + r["compile_s"] + r["graph_record_s"]
                                        + sum(r["epoch_times"][:2]), 2)
    if proc.returncode:
        print(proc.stderr[-3000:], file=sys.stderr)
    for r in rows:
        print(json.dumps(r), flush=True)
    return rows


def startup_table(rows: list[dict]) -> None:
    """Where each workload's first calls went (``TritonExecutor.startup_log``): per pass,
    the parallel compile, the first run and the CUDA graph's recording, in seconds."""
    print(f"{'workload':10} {'pass':12} {'launches':>8} {'par. JIT':>8} {'1st run':>8} "
          f"{'capture':>8}")
    for r in rows:
        for e in r.get("startup") or []:
            cap = e["graph_capture_s"]
            print(f"{r['name']:10} {e['pass'][:12]:12} {e['compiled_launches']:>8} "
                  f"{e['parallel_compile_s']:>8.3f} {e['first_run_s']:>8.3f} "
                  f"{'-' if cap is None else f'{cap:.3f}':>8}")
        if "peak_compile_gib" in r:  # the peak so far at each point: where the peak is
            print(f"{r['name']:10} {'peak GiB':12} through compile {r['peak_compile_gib']}, "
                  f"through first batch {r['peak_first_batch_gib']}, overall {r['peak_gib']}")
        for w in r.get("compile_workers") or []:
            print(f"{r['name']:10} {'workers':12} {w['tasks']:>8} capture {w['capture_s']:.3f} s, "
                  f"workers {w['workers_s']:.3f} s ({w['worker_compile_s']:.1f} s of compiles, "
                  f"longest {w.get('longest_s', 0.0):.2f} s, "
                  f"{w['failed']} failed{': ' + w['first_error'] if w['first_error'] else ''})")


def table(rows: list[dict]) -> None:
    pj = {(r["name"], r["cudagraph"]): r for r in rows if r["kind"] == "pyjuice"}
    print(f"{'workload':10} {'edges':>10} {'epoch s':>8} {'PJ cg':>7} {'ratio':>6} "
          f"{'PJ pln':>7} {'ratio':>6} {'compile':>8} {'PJ cmp':>7} {'ratio':>6} "
          f"{'1st bat':>7} {'peak GiB':>8} {'PJ GiB':>7} {'1st ep':>7}")
    for r in rows:
        if r["kind"] != "ours":
            continue
        p = pj.get((r["name"], True), {})
        pe, pc, pm = p.get("epoch_s"), p.get("compile_s"), p.get("peak_gib")
        ratio = f"{r['epoch_s'] / pe:.2f}" if pe else "-"
        plain = pj.get((r["name"], False), {}).get("epoch_s")  # PyJuice without graphs
        ratio_p = f"{r['epoch_s'] / plain:.2f}" if plain else "-"
        ratio_c = f"{r['compile_s'] / pc:.3f}" if pc else "-"
        print(f"{r['name']:10} {r['num_edges']:>10} {r['epoch_s']:>8} {pe or '-':>7} "
              f"{ratio:>6} {plain or '-':>7} {ratio_p:>6} {r['compile_s']:>8} {pc or '-':>7} "
              f"{ratio_c:>6} {r['first_batch_s']:>7} {r['peak_gib']:>8} {pm or '-':>7} "
              f"{r['first_epoch_s']:>7}")
    print(f"{'workload':10} {'test LL 2 ep':>12} {'PJ 2 ep':>9} {'gap':>6} "
          f"{'t to PJ LL':>10} {'PJ t':>7} {'ratio':>6}")
    for r in rows:
        if r["kind"] != "ours":
            continue
        p = pj.get((r["name"], True)) or pj.get((r["name"], False)) or {}
        pll = p["test_ll"][1] if p.get("test_ll") else None
        gap = f"{r['test_ll_2'] - pll:+.2f}" if pll is not None else "-"
        t, pt = r.get("time_to_target_s"), p.get("time_to_2_epochs_s")
        ratio = f"{t / pt:.2f}" if t is not None and pt else "-"
        print(f"{r['name']:10} {r['test_ll_2']:>12} {pll or '-':>9} {gap:>6} "
              f"{t if t is not None else 'never':>10} {pt or '-':>7} {ratio:>6}")
    for r in rows:
        if r["kind"] == "check":
            print(f"check {r['case']:11} {r['precision']:5} ll {r['ll_rel']:.1e} "
                  f"grad {r['grad_rel']:.1e} em {r['em_weights_rel']:.1e}")


def warm_runs(which: list[str], a: argparse.Namespace) -> list[dict]:
    """Each workload once more in a new process that inherits this one's cache folders
    (``TRITON_CACHE_DIR``, ``PCCC_CACHE_DIR``, now filled): rows of kind ``ours-warm``."""
    out = []
    for name in which:
        cmd = [sys.executable, os.path.abspath(__file__), "--which", name, "--mnist", a.mnist,
               "--precision", a.precision, "--out", os.path.join(a.out, f"warm-{name}"),
               *(f"--option={o}" for o in a.option)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        for ln in proc.stdout.splitlines():
            if ln.startswith("{") and json.loads(ln).get("kind") == "ours":
                r = dict(json.loads(ln), kind="ours-warm")
                out.append(r)
                print(json.dumps(r), flush=True)
        if proc.returncode:
            print(proc.stderr[-2000:], file=sys.stderr)
    if out:
        print(f"{'warm run':10} {'structure':>9} {'compile':>8} {'1st bat':>7} {'1st ep':>7}")
        for r in out:
            print(f"{r['name']:10} {r['structure_s']:>9} {r['compile_s']:>8} "
                  f"{r['first_batch_s']:>7} {r['first_epoch_s']:>7}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mnist", default=".bench/mnist.npz")
    ap.add_argument("--which", default="hclt32,hclt128,hclt256,pd64,pd256")
    ap.add_argument("--precision", default="tf32")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--pyjuice", action="store_true")
    ap.add_argument("--pj-modes", default="graphs",
                    help="PyJuice runs: with CUDA graphs (graphs) and/or without (plain)")
    ap.add_argument("--grads", action="store_true",
                    help="also compute the parameters' gradients (param_grads=True)")
    ap.add_argument("--pipeline", default=None,
                    help="pass pipeline (default: the training pipeline)")
    ap.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                    help="a Triton backend option (repeatable; e.g. cuda_graphs=false, "
                         "small_part=0, tiles.fwd=64): see backends/triton/options.py")
    ap.add_argument("--seeds", default="",
                    help="comma-separated seeds: every workload once per seed on both sides "
                         "(ours: initial parameters; PyJuice: torch's seed), then the test "
                         "log-likelihoods' means and spread")
    ap.add_argument("--warm", action="store_true",
                    help="then each workload again in a new process with the caches this one "
                         "filled (Triton's and pccc's): the start-up of a second run")
    ap.add_argument("--pj-site", default="/tmp/site")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    a = ap.parse_args()
    options = parse_options(a.option)
    d = np.load(a.mnist)
    x = d["x_train"].reshape(len(d["x_train"]), -1).astype(np.int64)
    xt = d["x_test"].reshape(len(d["x_test"]), -1).astype(np.int64)
    xg, xte = torch.as_tensor(x, device=DEV), torch.as_tensor(xt, device=DEV)
    rows: list[dict] = []
    modes = a.pj_modes.split(",")
    which = [w for w in a.which.split(",") if w]
    seeds = [int(v) for v in a.seeds.split(",")] if a.seeds else [None]
    for seed in seeds:
        seeded: list[dict] = []
        if a.pyjuice and "graphs" in modes:  # the target mode first: a time limit cuts the rest
            seeded += pyjuice(os.path.abspath(a.mnist), True, a.pj_site, ",".join(which), seed)
        targets = {r["name"]: r["test_ll"][1] for r in seeded if len(r.get("test_ll", [])) > 1}
        for name in which:
            try:
                seeded.append(workload(name, x, xg, xte, a.precision, a.profile, a.grads,
                                       a.pipeline, targets.get(name), options,
                                       0 if seed is None else seed))
                print(json.dumps(seeded[-1]), flush=True)
                table(seeded)  # partial tables survive a time limit
            except Exception as e:  # keep going: one failing workload must not hide the rest
                print(f"{name}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        rows += seeded
        if len(seeds) > 1:
            print_seed_summary(rows)
    if a.warm:
        rows += warm_runs(which, a)
    if a.check:  # after the workloads: the float64 torch checks leave cuBLAS workspaces
        rows += check(x)  # allocated, which would count in the workloads' peaks
    if a.pyjuice and "plain" in modes:
        rows += pyjuice(os.path.abspath(a.mnist), False, a.pj_site, ",".join(which))
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "gpu_bench.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    if len(seeds) > 1:
        print_seed_summary(rows)
    else:
        startup_table(rows)
        table(rows)


if __name__ == "__main__":
    main()
