"""Compile workers (``backends/triton/compile_workers.py``, ``jit_worker.py``).

The constants' encoding keeps what Triton's own JSON loses (a string constexpr that names a
dtype stays a string). Heavy, offline for sm_90 without a GPU: a stand-in CUDA driver lets
Triton specialize a workload's recorded first-batch launches in this process; two workers
compile them into an empty Triton cache; then this process's own warm-ups of the same
launches compile nothing new (every binary is a cache hit under the key Triton's JIT
computes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

os.environ.setdefault("TRITON_INTERPRET", "1")  # (as every test: the kernels are made once)

import pytest  # noqa: E402

pytest.importorskip("triton")

import triton.language as tl  # noqa: E402

from pccc.backends.triton import jit_worker  # noqa: E402
from pccc.backends.triton.compile_workers import encode_constant  # noqa: E402


def test_constants_come_back_as_they_were():
    for value in (64, True, False, 1.5, None, "tf32", "fp32", "bcast", tl.float32,
                  tl.constexpr(8)):
        key, back = jit_worker.decode_constant(json.loads(json.dumps(encode_constant((3,),
                                                                                     value))))
        assert key == (3,)
        assert type(back) is type(value) and str(back) == str(value), (value, back)
    # a Triton function travels by name (checked with real kernels by the heavy test)
    _, back = jit_worker.decode_constant([[0], "jit", "pccc.backends.triton.kernels_sum:_rows"])
    from pccc.backends.triton import kernels_sum
    assert back is kernels_sum._rows


def test_unknown_constants_are_left_to_this_process():
    assert encode_constant((0,), object()) is None
    assert encode_constant((0,), tl.constexpr([1, 2])) is None
    with pytest.raises(ValueError, match="tag"):
        jit_worker.decode_constant([[0], "pickle", "x"])


_SCRIPT = r"""
import json, os, sys, time
import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.backends.driver import DriverBase
from triton.runtime import driver


class StandIn(DriverBase):
    '''A CUDA driver for specialization only: an H100 target, device 0, stream 0.'''
    @classmethod
    def is_active(cls):
        return True
    def map_python_to_cpp_type(self, ty):
        return ty
    def get_current_target(self):
        return GPUTarget("cuda", 90, 32)
    def get_active_torch_device(self):
        return torch.device("cpu")
    def get_benchmarker(self):
        raise NotImplementedError
    def get_current_device(self):
        return 0
    def get_current_stream(self, device=None):
        return 0


driver.set_active(StandIn())
import importlib.util
from pccc.backends.triton.lazyjit import canonical_keys

canonical_keys()  # as a Triton module on a GPU does when it is made
from pccc.backends.triton.compile_workers import compile_in_workers

rec = json.load(open(sys.argv[1]))
spec = importlib.util.spec_from_file_location("table_under_test", rec["table"])
table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(table)
DT = {"float32": torch.float32, "int32": torch.int32, "int64": torch.int64,
      "int8": torch.int8, "int16": torch.int16, "uint8": torch.uint8, "bool": torch.bool,
      "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


def value(d):
    kind, v = d
    return torch.empty(64, dtype=DT[v]) if kind == "tensor" else v


launches = [(getattr(table, l["name"]), (1,), [value(a) for a in l["args"]],
             {k: value(v) for k, v in l["kw"].items()}) for l in rec["launches"]]
from pccc.backends.triton.compile_workers import capture
import ast


def fan_in(task):
    names = list(ast.literal_eval(task["signature"]))
    i = names.index("F") if "F" in names else -1
    return next((c[2] for c in task["constants"] if c[0] == [i]), 0)


fans = [fan_in(t) for t in capture(launches)[0]]
log = []
compile_in_workers(launches, 2, log.append)
cache = os.environ["TRITON_CACHE_DIR"]
before = sorted(os.listdir(cache))
t0 = time.perf_counter()
for kernel, grid, args, kw in launches:
    kernel.warmup(*args, grid=grid, **kw)
print(json.dumps({"log": log[0], "fans": fans, "before": before, "after": sorted(os.listdir(cache)),
                  "warm_s": time.perf_counter() - t0}))
"""


@pytest.mark.heavy
def test_workers_fill_the_cache_this_process_reads(tmp_path):
    from benchmarks import jit_cost

    rec = jit_cost.record("hclt16", None, {}, 528, 64)
    path = tmp_path / "launches.json"
    path.write_text(json.dumps(rec))
    script = tmp_path / "run.py"
    script.write_text(_SCRIPT)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TRITON_INTERPRET="0", TRITON_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=root)
    proc = subprocess.run([sys.executable, str(script), str(path)], env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    log = out["log"]
    assert log["tasks"] >= 6 and log["failed"] == 0, log
    assert len(out["before"]) >= log["tasks"]  # one cache entry per binary at least
    assert out["after"] == out["before"], "this process compiled what the workers had"
    fans = out["fans"]  # the widest sum kernels (the longest compiles) go first
    assert fans == sorted(fans, reverse=True) and fans[0] > fans[-1], fans


_KEY = r"""
import sys
from pccc.backends.triton import kernels_sum as k
from pccc.backends.triton.lazyjit import canonical_keys, resolve

canonical_keys()
if sys.argv[1] == "bwd-first":
    resolve(k.sum_bwd).cache_key
print(resolve(k.sum_fwd).cache_key)
"""


def test_every_process_gets_the_same_cache_keys(tmp_path):
    """Triton's key of ``sum_fwd`` depends on whether ``sum_bwd``'s was computed first; after
    ``canonical_keys`` it does not, whatever a process launches first (the compile workers
    and a warm second process rely on it)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TRITON_INTERPRET="0", PYTHONPATH=root)
    keys = [subprocess.run([sys.executable, "-c", _KEY, order], env=env, capture_output=True,
                           text=True, timeout=300).stdout.strip() for order in ("fwd-first",
                                                                                "bwd-first")]
    assert keys[0] and keys[0] == keys[1], keys


def test_forked_workers_answer_and_exit_with_their_pipes():
    """Forked workers answer every task (a failed one with its error, for this process to
    compile itself) and exit as soon as their task pipes close: each child closed its
    siblings' pipes, else the first worker would wait for the last one's exit."""
    import time

    from pccc.backends.triton.compile_workers import WorkerPool

    workers = WorkerPool(3)
    try:
        assert len(workers.procs) == 3 and all(p.poll() is None for p in workers.procs)
        task = {"kernel": "no_such_module:kernel", "target": {"backend": "cuda", "arch": 90,
                                                              "warp_size": 32},
                "signature": "{}", "attrs": "{}", "options": "{}", "constants": []}
        answers = workers.run([task] * 5)
        assert [a["ok"] for a in answers] == [False] * 5
        assert all("No module named 'no_such_module'" in a["error"] for a in answers), answers
    finally:
        t0 = time.perf_counter()
        procs = list(workers.procs)
        workers.close()
        took = time.perf_counter() - t0
    assert all(p.returncode == 0 for p in procs), [p.returncode for p in procs]
    assert took < 2.0, took  # (no worker waited out close()'s 5 s and was killed)


def test_a_stuck_worker_costs_the_wait_only(monkeypatch):
    """A worker that never answers (stopped here) holds a parallel compile for
    ``WAIT_S`` at most: the wait returns, logs the missing answers, and the warm-ups then
    compile what the cache lacks."""
    import signal
    import time

    from pccc.backends.triton import compile_workers as cw

    workers = cw.WorkerPool(1)
    os.kill(workers.procs[0].pid, signal.SIGSTOP)
    task = {"kernel": "no_such_module:kernel", "target": {}, "signature": "{}",
            "attrs": "{}", "options": "{}", "constants": []}
    monkeypatch.setattr(cw, "WAIT_S", 0.5)
    monkeypatch.setattr(cw, "pool", lambda n: workers)
    monkeypatch.setattr(cw, "capture", lambda launches: ([task], 0, [True]))
    log: list = []
    try:
        t0 = time.perf_counter()
        handed, wait = cw.start_in_workers([], 1, log.append)
        wait()
        took = time.perf_counter() - t0
    finally:
        os.kill(workers.procs[0].pid, signal.SIGCONT)
        workers.close()
    assert handed == [True] and 0.5 <= took < 3.0, took
    assert [e["first_error"] for e in log] == ["no answer within 0.5 s"], log
