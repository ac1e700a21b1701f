"""What the first training batch compiles, and how long it takes, without a GPU.

The first batch of EM training (forward, the backward it predicts, the EM step's kernels) is
recorded as the Triton module's parallel compile records it on a GPU (``prejit``): every
launch, with its kernel, keywords and arguments, none run. The launches are reduced to the
binaries Triton would build (below), and each binary is compiled ahead of time for an H100
(``sm_90``: Triton front end, LLVM and ``ptxas``, as Triton's own AOT tool
``triton.tools.compile`` does: ``ASTSource`` and ``triton.compile`` with a ``GPUTarget``), one
after another, in a subprocess without the interpreter and with an empty Triton cache. The
report: launches, binaries, and the serial compile seconds per kernel family, which is the
work the first batch's thread pool shares out on the GPU host.

A binary is one set of: the kernel and its constexpr values, each tensor's dtype, and for each
integer argument whether it is 1 (Triton makes it a constant) and whether it is a multiple of
16 (a divisibility hint), except for parameters a kernel marks ``do_not_specialize``; tensors
are taken as 16-byte aligned (as CUDA allocations are).

    python benchmarks/jit_cost.py hclt128 [--mnist .bench/mnist.npz] [--option round_fanin=true]
    python benchmarks/jit_cost.py hclt128 --compare round_fanin=true     # both, one table

``--registers`` adds each binary's registers and spill stack a thread (``cuobjdump
--dump-resource-usage`` on its cubin; with ``--detail``, per binary). Register allocation
changes between Triton releases (3.7.1 gives the sum backward 255 registers where the GPU
host's 3.6.0 gives 167), so ``--triton-site DIR`` builds with the Triton installed in DIR
(``pip install --no-deps --target DIR triton==3.6.0``) instead of this environment's:

    python benchmarks/jit_cost.py hclt32 --option flows_in_nodes=true --registers --detail \
        --only sum_bwd --triton-site /tmp/t36site

Workloads are ``gpu_bench.py``'s; ``--programs 528`` (the default) sizes the launches as on an
H100's 132 multiprocessors.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: launch keywords that are compile options, not kernel parameters
_OPTIONS = ("num_warps", "num_stages")


class _Stop(Exception):
    pass


def _describe(v: Any) -> list:
    import torch

    if isinstance(v, torch.Tensor):
        return ["tensor", str(v.dtype).removeprefix("torch.")]
    if isinstance(v, bool):
        return ["bool", v]
    if isinstance(v, int):
        return ["int", v]
    if isinstance(v, float):
        return ["float", v]
    if v is None:
        return ["none", None]
    if isinstance(v, str):
        return ["str", v]
    raise TypeError(f"an argument of type {type(v).__name__}")


def record(name: str, mnist: str | None, options: dict, programs: int, batch: int) -> dict:
    """The first EM-training batch's launches of workload ``name`` (kernel table path and,
    per launch, the table name, arguments and keywords described as JSON values)."""
    from benchmarks.gpu_bench import build  # (sets TRITON_INTERPRET=0 for its own runs)

    os.environ["TRITON_INTERPRET"] = "1"  # a CPU module; its kernels are recorded, not run
    import numpy as np
    import torch

    import pccc
    import pccc.backends.triton.prejit as pj
    from pccc.optim import MiniBatchEM

    rng = np.random.default_rng(0)
    if mnist and os.path.exists(mnist):
        x = np.load(mnist)["x_train"].reshape(60000, -1).astype(np.int64)[:20000]
    else:
        x = rng.integers(0, 256, size=(20000, 784))
    xt = torch.as_tensor(x)
    t0 = time.perf_counter()
    c = build(name, x, xt)
    model = pccc.compile(c, backend="triton", device="cpu", programs=programs, **options)
    compile_s = time.perf_counter() - t0
    model.param_grads = False  # as gpu_bench: EM reads flows, no gradients
    MiniBatchEM(model, step_size=0.1, pseudocount=0.1)
    runner = model.executor
    runner.parallel_jit = True  # as on a GPU: the first forward records, then compiles
    calls: list = []

    def capture(launches: list, *_: Any, **__: Any) -> int:
        calls.extend(launches)
        raise _Stop

    real = pj.compile_parallel
    pj.compile_parallel = capture
    try:
        model(xt[:batch]).sum().backward()
    except _Stop:
        pass
    finally:
        pj.compile_parallel = real
    table = runner.dp.k
    out = []
    for tname, _, _, args, kw in calls:
        out.append({"name": tname, "args": [_describe(a) for a in args],
                    "kw": {k: _describe(v) for k, v in kw.items()}})
    return {"table": table.__file__, "launches": out, "compile_s": round(compile_s, 2)}


_TYPES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "float64": "fp64",
          "int32": "i32", "int64": "i64", "int16": "i16", "int8": "i8", "uint8": "u8",
          "bool": "i1"}


def _kernel_parts(entry: Any) -> tuple[Any, dict, set]:
    """(JITFunction, bound constexprs, do_not_specialize names) of a kernel table entry."""
    from pccc.backends.triton.lazyjit import LazyKernel
    from pccc.backends.triton.specialized import Specialized

    bound: dict = {}
    if isinstance(entry, Specialized):
        bound, entry = dict(entry.constexprs), entry.kernel
    dns: set = set()
    if isinstance(entry, LazyKernel):
        dns = set(entry.__dict__["_options"].get("do_not_specialize", ()))
        entry = entry.jit
    return entry, bound, dns


def binary(entry: Any, launch: dict) -> tuple[Any, dict, dict, dict, dict]:
    """(JITFunction, signature, constexprs, attrs, options) of one launch (module docstring)."""
    fn, bound, dns = _kernel_parts(entry)
    params = inspect.signature(fn.fn).parameters
    names = list(params)
    is_const = {n: "constexpr" in str(p.annotation) for n, p in params.items()}
    values = dict(zip(names, launch["args"]))
    options = {k: v[1] for k, v in launch["kw"].items() if k in _OPTIONS}
    values.update({k: v for k, v in launch["kw"].items() if k not in _OPTIONS})
    sig: dict = {}
    consts: dict = dict(bound)
    attrs: dict = {}
    for i, n in enumerate(names):
        if n in bound:
            sig[n] = "constexpr"
            continue
        kind, v = values.get(n, ["none", None])
        if is_const[n] or kind in ("none", "str"):
            sig[n], consts[n] = "constexpr", v
        elif kind == "tensor":
            sig[n] = "*" + _TYPES[v]
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif kind == "bool":
            sig[n] = "i1"
        elif kind == "float":
            sig[n] = "fp32"
        elif n not in dns and v == 1:
            sig[n], consts[n] = "constexpr", 1
        else:
            sig[n] = "i32" if -2**31 <= v < 2**31 else "i64"
            if n not in dns and v % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
    return fn, sig, consts, attrs, options


def registers(cubin: bytes) -> tuple[int, int]:
    """(registers, spill stack bytes) a thread of a cubin (``cuobjdump`` of the Triton that
    built it); (-1, -1) where they cannot be read."""
    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin",
                        "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        try:
            text = subprocess.run([tool, "--dump-resource-usage", f.name], capture_output=True,
                                  text=True, timeout=60).stdout
        except OSError:
            return -1, -1
    fields = dict(w.split(":", 1) for w in text.split() if w.startswith(("REG:", "STACK:")))
    return int(fields.get("REG", -1)), int(fields.get("STACK", -1))


def build_all(spec_path: str, only: str = "") -> None:
    """The subprocess: compile every distinct binary of the recorded launches (of kernels
    whose table name contains ``only``) for sm_90 (``TRITON_INTERPRET=0``, an empty
    ``TRITON_CACHE_DIR``), print one JSON line each."""
    import importlib.util

    import triton
    from triton.backends.compiler import GPUTarget

    rec = json.load(open(spec_path))
    spec = importlib.util.spec_from_file_location("jit_cost_table", rec["table"])
    assert spec is not None and spec.loader is not None
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    seen: set = set()
    target = GPUTarget("cuda", 90, 32)
    for launch in rec["launches"]:
        if only not in launch["name"]:
            continue
        fn, sig, consts, attrs, options = binary(getattr(table, launch["name"]), launch)
        key = (launch["name"], json.dumps(sig, sort_keys=True), repr(sorted(consts.items())),
               repr(sorted(attrs)), repr(sorted(options.items())))
        if key in seen:
            continue
        seen.add(key)
        t0 = time.perf_counter()
        out = triton.compile(triton.compiler.ASTSource(fn, sig, consts, attrs), target=target,
                             options=options)
        dt = time.perf_counter() - t0
        bound = _kernel_parts(getattr(table, launch["name"]))[1]
        launch_consts = {k: v for k, v in consts.items() if k not in bound}
        regs, spill = registers(out.asm["cubin"]) if out.asm.get("cubin") else (-1, -1)
        print(json.dumps({"name": launch["name"], "kernel": fn.__name__, "s": round(dt, 3),
                          "consts": launch_consts, "hints": sorted(i for (i,) in attrs),
                          "warps": options.get("num_warps", 4), "regs": regs,
                          "spill": spill, "triton": triton.__version__,
                          "ok": bool(out.asm.get("cubin"))}), flush=True)


def measure(name: str, a: argparse.Namespace, options: dict) -> dict:
    """Record in this process, compile in a clean subprocess; the summary row."""
    rec = record(name, a.mnist, options, a.programs, a.batch)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "launches.json")
        with open(path, "w") as f:
            json.dump(rec, f)
        env = dict(os.environ, TRITON_INTERPRET="0", TRITON_CACHE_DIR=os.path.join(tmp, "tc"))
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (a.triton_site, root,
                                                         env.get("PYTHONPATH", "")) if p)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--build", path,
                               "--only", a.only], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    rows = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    per: dict = defaultdict(float)
    count: Counter = Counter()
    for r in rows:
        per[r["kernel"]] += r["s"]
        count[r["kernel"]] += 1
    return {"workload": name, "options": options, "launches": len(rec["launches"]),
            "binaries": len(rows), "compile_s": round(sum(r["s"] for r in rows), 2),
            "subprocess_s": round(wall, 2), "pccc_compile_s": rec["compile_s"],
            "all_cubins": all(r["ok"] for r in rows), "binary_list": rows,
            "per_kernel": {k: [count[k], round(per[k], 2)] for k in sorted(per, key=per.get,
                                                                              reverse=True)}}


def _options(items: list[str]) -> dict:
    out: dict = {}
    for item in items:
        k, _, v = item.partition("=")
        out[k] = {"true": True, "false": False}.get(v.lower(), int(v) if v.isdigit() else v)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("which", nargs="*", default=["hclt128"])
    ap.add_argument("--mnist", default=".bench/mnist.npz", help="MNIST .npz (else random pixels)")
    ap.add_argument("--option", action="append", default=[], help="a module option, k=v")
    ap.add_argument("--compare", action="append", default=[],
                    help="also measure with this option (k=v) added; one row each")
    ap.add_argument("--programs", type=int, default=528)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--detail", action="store_true", help="also list every binary")
    ap.add_argument("--only", default="", help="only kernels whose table name contains this")
    ap.add_argument("--registers", action="store_true",
                    help="report registers and spills (cuobjdump)")
    ap.add_argument("--triton-site", default="",
                    help="build with the Triton installed in this folder")
    ap.add_argument("--build", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.build:
        build_all(a.build, a.only)
        return
    base = _options(a.option)
    rows = []
    for name in a.which:
        for extra in [None, *a.compare]:
            opts = dict(base, **(_options([extra]) if extra else {}))
            rows.append(measure(name, a, opts))
            r = rows[-1]
            top = ", ".join(f"{k} {n}/{s:.1f}s" for k, (n, s) in list(r["per_kernel"].items())[:4])
            print(f"{name:9} {json.dumps(opts):28} launches {r['launches']:4} binaries "
                  f"{r['binaries']:3} compile {r['compile_s']:6.1f} s  ({top})", flush=True)
            if a.registers and r["binary_list"]:
                regs = [b["regs"] for b in r["binary_list"]]
                print(f"{'':9} registers {min(regs)}-{max(regs)}, spilling binaries "
                      f"{sum(b['spill'] > 0 for b in r['binary_list'])} (Triton "
                      f"{r['binary_list'][0]['triton']})")
            for b in r["binary_list"] if a.detail else []:
                regs = f" w{b['warps']} regs {b['regs']} spill {b['spill']}" if a.registers \
                    else ""
                print(f"    {b['s']:6.2f} s  {b['name']:28}{regs} {b['consts']} hints "
                      f"{b['hints']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
