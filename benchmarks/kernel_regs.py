"""Registers, local memory and compile time of a workload's kernels, compiled offline for a
GPU target on any machine (no GPU needed: Triton's compiler and ptxas run on the CPU).

The first training batch (forward and backward, EM statistics as in the benchmark) runs on
the CPU with a stand-in for the kernel module that records every launch instead of running it
(``backends/triton/prejit.py``); each distinct specialization is then specialized exactly as
Triton's JIT would on the card (argument types, 16-byte alignment, integers equal to 1) and
compiled for ``sm_90`` one after another. The card's multiprocessor count (``--sms``) sets the
column tiles and batch splits the runtime picks, as it does on the card.

    python benchmarks/kernel_regs.py hclt128 [--sms 132] [--mnist .bench/mnist.npz]

Workloads are ``gpu_bench.py``'s (HCLT from MNIST: ``--mnist``; without it, random pixels) and
``dense`` (the 32-node test circuit of ``tests/test_triton_backend.py``). Registers come from
``cuobjdump --dump-resource-usage``, local memory (spills) likewise. It uses Triton 3.6's
binder and ``_pack_args`` (not public API): a tool for measurements, not for the backend.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

os.environ["TRITON_INTERPRET"] = "0"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def workload(name: str, mnist: str | None):
    """The circuit of a benchmark workload (or the dense test circuit) and a batch for it."""
    rng = np.random.default_rng(0)
    if name == "dense":
        from tests.test_triton_backend import _dense_circuit

        return _dense_circuit(), rng.integers(0, 5, size=(512, 4))
    from benchmarks.gpu_bench import build

    if mnist and os.path.exists(mnist):
        x = np.load(mnist)["x_train"].reshape(60000, -1).astype(np.int64)
    else:
        x = rng.integers(0, 256, size=(20000, 784))
    return build(name, x), x[:512]


def record(circuit, x: np.ndarray, sms: int, precision: str):
    """The distinct kernel launches of one forward and EM backward, as (fn, args, kwargs)."""
    from pccc.backends.triton import TritonCompiledCircuit
    from pccc.backends.triton.prejit import Recorder, distinct
    from pccc.passes import compile_plan

    # the module itself, not pccc.compile: that refuses a CPU without the interpreter
    model = TritonCompiledCircuit(compile_plan(circuit), device="cpu", precision=precision)
    model.param_grads = False
    model.dp.programs = 4 * sms  # the column tiles and splits of the card, not of the CPU
    rec = Recorder(model.dp.k)
    model.dp.k = rec  # type: ignore[assignment]  # launches recorded, not run
    model(torch.as_tensor(x)).mean().backward()
    return [(fn, args, kw) for fn, _, args, kw in distinct(rec.calls)]


def compile_one(fn, args, kw, target):
    """Compile one launch for ``target`` as the JIT would specialize it; (kernel, seconds)."""
    from triton.compiler.compiler import ASTSource, compile, make_backend
    from triton.runtime.jit import create_function_from_signature

    backend = make_backend(target)
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound, spec, options = binder(*args, **kw)
    options, signature, constexprs, attrs = fn._pack_args(backend, kw, bound, spec, options)
    t = time.perf_counter()
    k = compile(ASTSource(fn, signature, constexprs, attrs), target=target,
                options=options.__dict__)
    return k, time.perf_counter() - t


def resources(cubin: bytes) -> tuple[int, int]:
    """(registers, local memory bytes) of a cubin, from cuobjdump."""
    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin",
                        "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([tool, "--dump-resource-usage", f.name], capture_output=True,
                             text=True, check=True).stdout
    reg = re.search(r"REG:(\d+)", out)
    local = re.search(r"LOCAL:(\d+)", out)
    return int(reg.group(1)) if reg else -1, int(local.group(1)) if local else -1


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workload", help="hclt32 ... pd256 (gpu_bench.py's), or dense")
    ap.add_argument("--sms", type=int, default=132, help="multiprocessors (H100: 132)")
    ap.add_argument("--arch", type=int, default=90, help="compute capability, e.g. 90")
    ap.add_argument("--precision", default="tf32")
    ap.add_argument("--mnist", default=".bench/mnist.npz")
    ap.add_argument("--only", default="", help="compile only kernels whose name contains this")
    ap.add_argument("--dump", default="", help="write each kernel's TTGIR and PTX here")
    a = ap.parse_args(argv)
    from triton.backends.compiler import GPUTarget

    target = GPUTarget("cuda", a.arch, 32)
    circuit, x = workload(a.workload, a.mnist)
    launches = record(circuit, x, a.sms, a.precision)
    rows = []
    for i, (fn, args, kw) in enumerate(launches):
        if a.only not in fn.__name__:
            continue
        k, secs = compile_one(fn, args, kw, target)
        reg, local = resources(k.asm["cubin"])
        if a.dump:
            os.makedirs(a.dump, exist_ok=True)
            for ext in ("ttgir", "ptx"):
                with open(os.path.join(a.dump, f"{i:02d}_{fn.__name__}.{ext}"), "w") as f:
                    f.write(k.asm[ext])
        consts = ",".join(f"{n}={v}" for n, v in sorted(kw.items()) if n != "num_warps")
        rows.append(dict(kernel=fn.__name__, consts=consts, warps=kw.get("num_warps", 4),
                         regs=reg, local=local, shared=k.metadata.shared,
                         compile_s=round(secs, 2)))
        r = rows[-1]
        print(f"{r['kernel']:32} {r['consts'][:48]:48} w{r['warps']} regs {reg:4} "
              f"local {local:5} smem {r['shared']:6} {secs:6.2f} s", flush=True)
    total = sum(r["compile_s"] for r in rows)
    print(f"{len(rows)} specializations, {total:.1f} s compiled one after another "
          f"({a.workload}, sm_{a.arch})")
    return rows


if __name__ == "__main__":
    main()
