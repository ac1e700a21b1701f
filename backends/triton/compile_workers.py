"""Compile a pass's kernels in worker processes before the parallel JIT loads them (option
``jit_workers``).

Threads share one interpreter, and Triton's compiler holds the GIL for part of its work, so
16 threads compile a first batch's kernels only about 4x faster than one (docs/backends.md).
Worker processes compile without that limit. With Triton's public API only:

1. **Specialization, in this process.** Each distinct launch's ``warmup`` runs under
   ``triton.knobs.runtime.jit_cache_hook``; the hook receives Triton's own specialization of
   the launch (signature, constexpr values, alignment hints, and the compile options inside
   its ``specialization_data``) and returns True, so nothing is compiled here.
2. **Compiles, in the workers.** Each worker (:mod:`.jit_worker`, a Python process started
   with the first module that asks for workers and kept for the process's life) imports the
   kernel's module, rebuilds ``ASTSource(fn, signature, constexprs, attrs)`` and calls
   ``triton.compile`` for this process's GPU target. The result lands in Triton's on-disk
   cache (the same ``TRITON_CACHE_DIR``) under the key this process's JIT computes for the
   same launch.
3. **Loading, here.** The thread-pool warm-ups of :mod:`.prejit` then find every binary in the
   cache and only load it.

A worker that fails on a task costs time only: the warm-up compiles what the cache lacks.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

#: the workers of this process (started once, grown on demand)
_POOL: WorkerPool | None = None
_POOL_LOCK = threading.Lock()


def encode_constant(key: tuple[int, ...], value: Any) -> list[Any] | None:
    """A constexpr value as :func:`.jit_worker.decode_constant` reads it (None: a value the
    workers cannot rebuild)."""
    import triton.language as tl
    from triton.runtime.jit import JITFunction

    if value is None or isinstance(value, (bool, int, float, str)):
        return [list(key), "py", value]
    if isinstance(value, tl.dtype):
        return [list(key), "dtype", str(value)]
    if isinstance(value, tl.constexpr):
        inner = value.value
        if inner is None or isinstance(inner, (bool, int, float, str)):
            return [list(key), "constexpr", inner]
        return None
    if isinstance(value, JITFunction):
        return [list(key), "jit", f"{value.fn.__module__}:{value.fn.__qualname__}"]
    return None


def _options(spec_json: str) -> dict[str, Any]:
    """The compile options of Triton's ``specialization_data`` (JSON lists back to tuples, as
    ``JITFunction.preload`` reads them)."""
    opts = json.loads(spec_json)["options"]
    return {k: tuple(v) if isinstance(v, list) else v for k, v in opts.items()}


def capture(launches: list[tuple[Any, Any, tuple[Any, ...], dict[str, Any]]]
            ) -> tuple[list[dict[str, Any]], int]:
    """Triton's specialization of each launch ``(kernel, grid, args, kwargs)`` (its
    ``warmup`` under a ``jit_cache_hook`` that stops before compiling): the tasks for the
    workers, and how many launches gave none (already compiled here, or a constexpr the
    workers cannot rebuild)."""
    from triton import knobs
    from triton.runtime import driver

    t = driver.active.get_current_target()
    target = {"backend": t.backend, "arch": t.arch, "warp_size": t.warp_size}
    tasks: list[dict[str, Any]] = []
    widths: list[int] = []
    seen: set[str] = set()
    skipped, called = 0, 0

    def hook(*, fn: Any, compile: dict[str, Any], **_: Any) -> bool:
        nonlocal skipped, called
        called += 1
        consts = [encode_constant(k, v) for k, v in compile["constants"].items()]
        if any(c is None for c in consts):
            skipped += 1
            return True
        jf = fn.jit_function
        task = {"kernel": f"{jf.fn.__module__}:{jf.fn.__qualname__}", "target": target,
                "signature": repr(compile["signature"]), "attrs": repr(compile["configs"][0]),
                "options": repr(_options(compile["specialization_data"])),
                "constants": consts}
        ident = json.dumps(task, sort_keys=True)
        if ident not in seen:
            seen.add(ident)
            tasks.append(task)
            names = list(compile["signature"])  # a sum kernel's fan-in F: the widest compile
            fan = compile["constants"].get((names.index("F"),), 0) if "F" in names else 0
            widths.append(fan if isinstance(fan, int) else 0)  # longest
        return True  # compiled by a worker, not here

    before = knobs.runtime.jit_cache_hook
    knobs.runtime.jit_cache_hook = hook
    try:
        for kernel, grid, args, kwargs in launches:
            n = called
            kernel.warmup(*args, grid=grid, **kwargs)
            if called == n:  # compiled already: the hook was not called
                skipped += 1
    finally:
        knobs.runtime.jit_cache_hook = before
    order = sorted(range(len(tasks)), key=lambda i: -widths[i])  # (stable among equals)
    return [tasks[i] for i in order], skipped


class WorkerPool:
    """``n`` compile workers (:mod:`.jit_worker` processes) fed from one task queue."""

    def __init__(self, n: int):
        self.procs: list[subprocess.Popen[str]] = []
        self.grow(n)

    def grow(self, n: int) -> None:
        """Start workers until there are ``n`` (they import while the caller goes on), with
        this process's import path and Triton cache folder."""
        from triton import knobs

        paths = json.dumps([p for p in sys.path if p and os.path.isdir(p)])
        boot = ("import json, sys; sys.path[:0] = json.loads(sys.argv[1]); "
                "from pccc.backends.triton.jit_worker import serve; serve(sys.argv[2])")
        while len(self.procs) < n:
            self.procs.append(subprocess.Popen(
                [sys.executable, "-c", boot, paths, knobs.cache.dir or ""], text=True,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                bufsize=1))

    def run(self, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Compile ``tasks`` in the order given (:func:`capture` puts the widest sum kernels,
        the longest compiles, first), each worker taking the next one when done; the answers
        (``ok``, ``s``, ``error``) in task order. A worker that died is
        dropped and its task answered as failed."""
        todo: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue()
        for i, task in enumerate(tasks):
            todo.put((i, dict(task, id=i)))
        answers: list[dict[str, Any]] = [{} for _ in tasks]

        def feed(proc: subprocess.Popen[str]) -> None:
            assert proc.stdin is not None and proc.stdout is not None
            while True:
                try:
                    i, task = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    proc.stdin.write(json.dumps(task) + "\n")
                    proc.stdin.flush()
                    line = proc.stdout.readline()
                    while line and '"ready"' in line:
                        line = proc.stdout.readline()
                    answers[i] = json.loads(line) if line else {
                        "id": i, "ok": False, "error": "worker exited"}
                except (OSError, ValueError) as e:
                    answers[i] = {"id": i, "ok": False, "error": f"{type(e).__name__}: {e}"}
                if not answers[i].get("ok") and proc.poll() is not None:
                    return  # this worker is gone; the others take the rest

        live = [p for p in self.procs if p.poll() is None]
        self.procs = live
        threads = [threading.Thread(target=feed, args=(p,), daemon=True) for p in live]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        for i, a in enumerate(answers):  # no live worker took these
            if not a:
                answers[i] = {"id": i, "ok": False, "error": "no worker"}
        return answers

    def close(self) -> None:
        """Stop the workers (their stdin closes; they exit after the task in hand)."""
        for p in self.procs:
            try:
                if p.stdin is not None:
                    p.stdin.close()
                p.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                p.kill()
        self.procs = []


def pool(n: int) -> WorkerPool:
    """This process's workers, started (or grown) to ``n``; stopped at exit."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            import atexit

            _POOL = WorkerPool(n)
            atexit.register(_POOL.close)
        else:
            _POOL.grow(n)
        return _POOL


def compile_in_workers(launches: list[tuple[Any, Any, tuple[Any, ...], dict[str, Any]]],
                       n: int, log: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Compile ``launches`` ``(kernel, grid, args, kwargs)`` on ``n`` workers into Triton's
    cache (see the module docstring); ``log`` gets a summary (tasks, failures, seconds)."""
    t0 = time.perf_counter()
    workers = pool(n)
    tasks, skipped = capture(launches)
    t1 = time.perf_counter()
    answers = workers.run(tasks)
    failed = [a.get("error", "") for a in answers if not a.get("ok")]
    if log is not None:
        log({"tasks": len(tasks), "already_or_skipped": skipped, "failed": len(failed),
             "first_error": failed[0] if failed else None,
             "capture_s": round(t1 - t0, 4), "workers_s": round(time.perf_counter() - t1, 4),
             "worker_compile_s": round(sum(a.get("s", 0.0) for a in answers), 3)})
