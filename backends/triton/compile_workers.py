"""Compile a pass's kernels in worker processes before the parallel JIT loads them (option
``jit_workers``).

Threads share one interpreter, and Triton's compiler holds the GIL for part of its work, so
16 threads compile a first batch's kernels only about 4x faster than one (docs/backends.md).
Worker processes compile without that limit. With Triton's public API only:

1. **Specialization, in this process.** Each distinct launch's ``warmup`` runs under
   ``triton.knobs.runtime.jit_cache_hook``; the hook receives Triton's own specialization of
   the launch (signature, constexpr values, alignment hints, and the compile options inside
   its ``specialization_data``) and returns True, so nothing is compiled here.
2. **Compiles, in the workers.** Each worker (:mod:`.jit_worker`'s loop in a child forked
   from this process by the first module that asks for workers, kept for the process's
   life) has this process's modules, Triton's cache folder and cache keys from the fork: no
   import, no start-up. It rebuilds ``ASTSource(fn, signature, constexprs, attrs)`` and
   calls ``triton.compile`` for this process's GPU target; the result lands in Triton's
   on-disk cache under the key this process's JIT computes for the same launch. A worker
   never touches the GPU (a forked child must not use the parent's CUDA context) and leaves
   through ``os._exit`` (no exit handlers of this process run twice). Without ``os.fork``
   (not POSIX) there are no workers and the thread pool compiles everything.
3. **Loading, here.** The thread-pool warm-ups of :mod:`.prejit` then find every binary in the
   cache and only load it.

A worker that fails on a task costs time only: the warm-up compiles what the cache lacks.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any, TextIO

#: seconds a parallel compile waits for its workers before compiling the rest itself (a
#: first batch's longest compile takes 1-2 s on the H100's host)
WAIT_S = 60.0
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
            ) -> tuple[list[dict[str, Any]], int, list[bool]]:
    """Triton's specialization of each launch ``(kernel, grid, args, kwargs)`` (its
    ``warmup`` under a ``jit_cache_hook`` that stops before compiling): the tasks for the
    workers, how many launches gave none (already compiled here, or a constexpr the
    workers cannot rebuild) and, per launch, whether a task covers it."""
    from triton import knobs
    from triton.runtime import driver

    t = driver.active.get_current_target()
    target = {"backend": t.backend, "arch": t.arch, "warp_size": t.warp_size}
    tasks: list[dict[str, Any]] = []
    widths: list[int] = []
    seen: set[str] = set()
    skipped, called = 0, 0
    handed: list[bool] = []

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
            n, before_skipped = called, skipped
            try:
                kernel.warmup(*args, grid=grid, **kwargs)
            except TypeError:  # Triton's JSON of the launch before the hook: left to us
                skipped += 1  # (a Triton function as a constexpr argument, Triton 3.6)
            else:
                if called == n:  # compiled already: the hook was not called
                    skipped += 1
            handed.append(skipped == before_skipped)
    finally:
        knobs.runtime.jit_cache_hook = before
    order = sorted(range(len(tasks)), key=lambda i: -widths[i])  # (stable among equals)
    return [tasks[i] for i in order], skipped, handed


class Forked:
    """A compile worker forked from this process: its task pipe (``stdin``), its answer pipe
    (``stdout``) and ``poll``/``wait``/``kill``, as a ``subprocess.Popen`` has them; the
    child closes its ``siblings``' pipes (else a sibling would never see its tasks end)."""

    stdin: TextIO
    stdout: TextIO

    def __init__(self, siblings: list[Forked]) -> None:
        from pccc.backends.triton.jit_worker import serve  # (imported before the fork)

        tasks_r, tasks_w = os.pipe()
        answers_r, answers_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()  # (nothing buffered here is written twice)
        with warnings.catch_warnings():  # the child runs no thread of this process's: below
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the worker: compiles only, then leaves without this process's exit
            code = 0
            try:
                os.close(tasks_w)
                os.close(answers_r)
                for sib in siblings:  # (a sibling sees the end of its tasks when we exit)
                    for f in (sib.stdin, sib.stdout):
                        try:
                            os.close(f.fileno())
                        except (OSError, ValueError):
                            pass
                serve(inp=os.fdopen(tasks_r, "r"), out=os.fdopen(answers_w, "w"))
            except BaseException:  # noqa: BLE001  (a child never returns to the caller)
                code = 1
            finally:
                os._exit(code)
        os.close(tasks_r)
        os.close(answers_w)
        self.pid: int = pid
        self.returncode: int | None = None
        self.stdin = os.fdopen(tasks_w, "w", buffering=1)
        self.stdout = os.fdopen(answers_r, "r")

    def poll(self) -> int | None:
        """The exit status once the worker has exited (and been reaped), else None."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for the worker to exit (TimeoutError past it)."""
        end = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > end:
                raise TimeoutError(f"compile worker {self.pid} did not exit")
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        """Stop the worker now."""
        try:
            os.kill(self.pid, 9)
        except ProcessLookupError:
            pass
        self.poll()


class WorkerPool:
    """``n`` compile workers (:class:`Forked`) fed from one task queue."""

    def __init__(self, n: int):
        self.procs: list[Forked] = []
        self.grow(n)

    def grow(self, n: int) -> None:
        """Fork workers until there are ``n`` (none without ``os.fork``)."""
        if not hasattr(os, "fork"):
            return
        while len(self.procs) < n:
            self.procs.append(Forked(self.procs))

    def run(self, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Compile ``tasks`` in the order given (:func:`capture` puts the widest sum kernels,
        the longest compiles, first), each worker taking the next one when done; the answers
        (``ok``, ``s``, ``error``) in task order. A worker that died is
        dropped and its task answered as failed."""
        todo: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue()
        for i, task in enumerate(tasks):
            todo.put((i, dict(task, id=i)))
        answers: list[dict[str, Any]] = [{} for _ in tasks]

        def feed(proc: Forked) -> None:
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
            except (OSError, TimeoutError):
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
                       n: int, log: Callable[[dict[str, Any]], None] | None = None
                       ) -> list[bool]:
    """Compile ``launches`` ``(kernel, grid, args, kwargs)`` on ``n`` workers into Triton's
    cache (see the module docstring) and wait; ``log`` gets a summary (tasks, failures,
    seconds). Returns, per launch, whether the workers took it."""
    handed, wait = start_in_workers(launches, n, log)
    wait()
    return handed


def start_in_workers(launches: list[tuple[Any, Any, tuple[Any, ...], dict[str, Any]]],
                     n: int, log: Callable[[dict[str, Any]], None] | None = None
                     ) -> tuple[list[bool], Callable[[], None]]:
    """:func:`compile_in_workers` without the wait: the workers compile on while the caller
    compiles the launches they did not take. Returns, per launch, whether the workers took
    it, and the function that waits for them (then ``log`` has the summary)."""
    t0 = time.perf_counter()
    workers = pool(n)
    tasks, skipped, handed = capture(launches)
    t1 = time.perf_counter()

    given_up = threading.Event()

    def work() -> None:
        answers = workers.run(tasks)
        failed = [a.get("error", "") for a in answers if not a.get("ok")]
        if log is not None and not given_up.is_set():
            log({"tasks": len(tasks), "already_or_skipped": skipped, "failed": len(failed),
                 "first_error": failed[0] if failed else None,
                 "capture_s": round(t1 - t0, 4),
                 "workers_s": round(time.perf_counter() - t1, 4),
                 "worker_compile_s": round(sum(a.get("s", 0.0) for a in answers), 3),
                 "longest_s": round(max((a.get("s", 0.0) for a in answers), default=0.0), 3)})

    th = threading.Thread(target=work, name="pccc-compile-workers", daemon=True)
    th.start()

    def wait() -> None:
        th.join(WAIT_S)
        if th.is_alive():  # (the warm-ups compile what is missing)
            given_up.set()
            if log is None:
                return
            log({"tasks": len(tasks), "already_or_skipped": skipped, "failed": len(tasks),
                 "first_error": f"no answer within {WAIT_S:g} s", "capture_s":
                 round(t1 - t0, 4), "workers_s": WAIT_S, "worker_compile_s": 0.0})
    return handed, wait
