"""Compile a pass's kernels in parallel before its first run.

Triton compiles a kernel on its first launch, one after another: a pass's 20 to 30 kernels
take most of the time until the first batch can run. :func:`prejit` instead runs the pass once
with a stand-in for the kernel table that records every launch (the table's name of the
kernel, grid, arguments) without running it, then hands each distinct launch to the kernel's
``warmup`` under Triton's public ``triton.AsyncCompileMode`` with a thread pool, and waits.
The real run that follows finds every kernel compiled.

Launches are told apart by :func:`launch_key`: the kernel's spec (its name in the table, which
fixes its constexpr values) and the launch's own keywords and arguments. Launches that Triton
compiles to one binary may have different keys; their warm-ups after the first find it in
Triton's cache (a compile in flight included), so only the binder runs again.

The recording run executes the pass's torch operations for real, so it is only for passes
whose torch operations touch scratch buffers (forward and backward); a pass that updates
parameters outside the kernels (the EM step) compiles as usual. The options ``parallel_jit``
turns this on or off and ``jit_threads`` sets the pool size (0: the CPU count, at most 16);
``jit_workers`` adds worker processes that compile first (:mod:`.compile_workers`). The same
pool then builds the kernels' host launchers (:func:`build_launchers`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import torch

#: a recorded launch: (name in the kernel table, the table's kernel, grid, args, keywords)
Launch = tuple[str, Any, Any, tuple[Any, ...], dict[str, Any]]


class _Launcher:
    def __init__(self, name: str, fn: Any, calls: list[Launch]):
        self.name, self.fn, self.calls = name, fn, calls

    def __getitem__(self, grid: Any) -> Callable[..., None]:
        def record(*args: Any, **kwargs: Any) -> None:
            self.calls.append((self.name, self.fn, grid, args, kwargs))
        return record


class Recorder:
    """Stands in for a kernel table: ``rec.name[grid](*args)`` is recorded, not launched."""

    def __init__(self, table: ModuleType):
        self._table = table
        self.calls: list[Launch] = []

    def __getattr__(self, name: str) -> _Launcher:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Launcher(name, getattr(self._table, name), self.calls)


def _arg_key(a: Any) -> Hashable:
    if isinstance(a, torch.Tensor):
        return ("tensor", a.dtype)
    if isinstance(a, (bool, int, float, str)) or a is None:
        return (type(a).__name__, a)
    return ("object", id(a))


def launch_key(name: str, args: tuple[Any, ...], kw: dict[str, Any]) -> Hashable:
    """What tells two launches apart for compiling: the kernel (its name in the table), the
    launch's keywords (constexpr tiles and modes, warps), its scalar arguments' values and its
    tensors' dtypes."""
    return (name, tuple(sorted((k, _arg_key(v)) for k, v in kw.items())),
            tuple(_arg_key(a) for a in args))


def distinct(calls: list[Launch]) -> list[Launch]:
    """The first launch of each :func:`launch_key`, in order."""
    seen: dict[Hashable, Launch] = {}
    for call in calls:
        name, _, _, args, kw = call
        seen.setdefault(launch_key(name, args, kw), call)
    return list(seen.values())


#: the thread of :func:`hash_triton_early` (one per process)
_KEY_THREAD: threading.Thread | None = None
_KEY_LOCK = threading.Lock()


def hash_triton_early() -> threading.Thread | None:
    """Start computing, on a thread of its own, the hash of Triton's own sources and library
    that every Triton cache key includes (``triton.runtime.cache.triton_key``, computed once
    per process and kept). The process's first kernel lookup otherwise pays it on the
    calling thread, about 0.2-0.4 s even when every binary is already in the cache; hashing
    releases the GIL, so this overlaps the module's set-up. None where this Triton has no
    such function (the lookup then pays it as before)."""
    global _KEY_THREAD
    try:
        from triton.runtime.cache import triton_key
    except ImportError:
        return None
    with _KEY_LOCK:
        if _KEY_THREAD is None:
            _KEY_THREAD = threading.Thread(target=triton_key, name="pccc-triton-key",
                                           daemon=True)
            _KEY_THREAD.start()
    return _KEY_THREAD


def fork_workers_early(n: int) -> threading.Thread:
    """Fork this process's ``n`` compile workers (:func:`.compile_workers.pool`) on a thread
    of their own, once :func:`hash_triton_early`'s hash is computed (the workers inherit it),
    while the module's set-up goes on; the first parallel compile finds them started."""
    def fork() -> None:
        _triton_hashed()
        from pccc.backends.triton import compile_workers

        compile_workers.pool(n)

    th = threading.Thread(target=fork, name="pccc-compile-workers-fork", daemon=True)
    th.start()
    return th


def _triton_hashed() -> None:
    """Wait for :func:`hash_triton_early`'s thread, if one runs (computing the hash again
    beside it would only take longer)."""
    th = _KEY_THREAD
    if th is not None:
        th.join()


def enabled() -> bool:
    """Whether this Triton has ``AsyncCompileMode`` (Triton 3.6 has it); without it kernels
    compile on their first launch."""
    import triton

    return hasattr(triton, "AsyncCompileMode")


def compile_parallel(calls: list[Launch], threads: int = 0, workers: int = 0,
                     log: Callable[[dict[str, Any]], None] | None = None) -> int:
    """Warm up the launches' kernels on a pool of ``threads`` threads (0: the CPU count, at
    most 16), after ``workers`` worker processes (0: none) compiled them into Triton's cache
    (:mod:`.compile_workers`; ``log`` gets their summary); returns how many distinct
    launches were handed over."""
    import triton

    todo = distinct(calls)
    if not todo:
        return 0
    _triton_hashed()
    handed, wait = [False] * len(todo), (lambda: None)
    if workers > 0:
        from pccc.backends.triton.compile_workers import start_in_workers

        try:
            handed, wait = start_in_workers(
                [(fn, grid, args, kw) for _, fn, grid, args, kw in todo], workers, log)
        except Exception as e:  # (only time is lost: the warm-ups below compile the rest)
            if log is not None:
                log({"tasks": 0, "already_or_skipped": 0, "failed": len(todo),
                     "first_error": f"{type(e).__name__}: {e}", "capture_s": 0.0,
                     "workers_s": 0.0, "worker_compile_s": 0.0})
    threads = threads or min(16, os.cpu_count() or 1)
    compiled = []
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        # what the workers did not take compiles here meanwhile; theirs then only loads
        for took in (False, True):
            if took:
                wait()
            with triton.AsyncCompileMode(pool):
                compiled += [fn.warmup(*args, grid=grid, **kw)
                             for (_, fn, grid, args, kw), h in zip(todo, handed) if h == took]
        build_launchers(compiled, pool)
    return len(todo)


def _launcher_key(kernel: Any) -> Hashable:
    src = kernel.src
    return (repr(sorted(src.signature.items(), key=repr)),
            repr(sorted(getattr(src, "constants", {}).items(), key=repr)))


def build_launchers(compiled: list[Any], pool: ThreadPoolExecutor) -> int:
    """Build the host launchers of the warm-ups' kernels (``compiled``: what ``warmup``
    returned, compiled or still compiling) on ``pool``, one per distinct signature; returns
    how many were built. Triton 3.6's launcher of a kernel signature is a C module that its
    driver (``triton.runtime.driver.active.launcher_cls``) compiles with the host compiler on
    the kernel's first launch, 0.2-0.3 s each, one after another on the launching thread
    (2 s of HCLT-32's start-up, 0.7 s of its first EM step: notes log 102); built here they
    overlap, and the first launch finds them in Triton's cache. Where the driver has no
    ``launcher_cls`` (or there is no driver, or a build fails) nothing is built: the first
    launch builds as before."""
    import triton

    try:
        make = getattr(triton.runtime.driver.active, "launcher_cls", None)
    except RuntimeError:  # no active driver (the interpreter on a machine without a GPU)
        return 0
    if make is None:
        return 0
    kernels: dict[Hashable, Any] = {}
    for c in compiled:
        k = c.result(ignore_errors=True) if hasattr(c, "result") else c
        if k is not None and hasattr(k, "src") and hasattr(k, "metadata"):
            kernels.setdefault(_launcher_key(k), k)

    def build(k: Any) -> bool:
        try:
            make(k.src, k.metadata)
            return True
        except Exception:  # (only time is lost: the first launch builds it)
            return False

    return sum(pool.map(build, kernels.values()))


def prejit(owner: Any, attr: str, run: Callable[[], None], *more: Callable[[], None],
           threads: int = 0, workers: int = 0,
           log: Callable[[dict[str, Any]], None] | None = None) -> int:
    """Record ``run``'s launches (and those of the ``more`` passes, one after another) through
    ``owner.<attr>`` (the kernel table) and compile them all in parallel, in one pool: the
    passes' longest compiles overlap instead of adding up; ``owner.<attr>`` is restored
    whatever happens."""
    table = getattr(owner, attr)
    rec = Recorder(table)
    setattr(owner, attr, rec)
    try:
        for fn in (run, *more):
            fn()
    finally:
        setattr(owner, attr, table)
    return compile_parallel(rec.calls, threads, workers, log)
