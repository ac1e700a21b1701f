"""Compile kernels in worker processes that fill Triton's cache.

Threads compile a pass's kernels only two to four times faster than one thread: Triton's
compiler holds the GIL for part of its work. Worker processes do not share a GIL. A worker
imports the plan's kernel table (the file :func:`.codegen.load_module` wrote), calls the named
kernel's public ``warmup`` with stand-ins for the launch's tensors, and returns; Triton writes
the compiled kernel to its cache folder. The parent's own warm-up of the same launch then
finds it there and only loads it.

A launch travels as a :class:`LaunchSpec`: the table's file and name in it, the grid, the
keywords, and the positional arguments with each tensor replaced by :class:`PointerArg` (its
dtype and whether its address is a multiple of 16, the two facts Triton specializes a pointer
on). Scalars travel as they are; a launch with any other argument is not sent (the parent
compiles it).

The pool starts when a CUDA executor with parallel compiles is made (:func:`start`, before
the first batch needs it: a worker's start, importing torch and Triton and compiling one
tiny kernel, takes a second or two) and lives as long as the process. Workers hold no CUDA
context: a warm-up compiles without loading the kernel. The option ``jit_processes`` of
:class:`~pccc.backends.triton.options.TritonOptions` chooses processes over threads.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import sys
import threading
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import torch
import triton
import triton.language as tl

#: the process's pool and its size (one pool per process, grown never)
_pool: ProcessPoolExecutor | None = None
_size = 0
_lock = threading.Lock()


@dataclass(frozen=True)
class PointerArg:
    """A tensor argument as Triton's specialization sees it: its dtype (``"float32"``) and
    whether its address is a multiple of 16 bytes."""

    dtype: str
    aligned: bool


class _Pointer:
    """Stands for a tensor in a worker's warm-up: the dtype, and an address of the same
    alignment (no memory behind it: nothing is launched)."""

    def __init__(self, arg: PointerArg):
        self.dtype = getattr(torch, arg.dtype)
        self._address = 0 if arg.aligned else 4

    def data_ptr(self) -> int:
        return self._address


@dataclass(frozen=True)
class LaunchSpec:
    """One launch to compile in a worker (see the module docstring)."""

    table_path: str
    table_name: str
    kernel: str
    grid: tuple[int, ...]
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...]


_SCALARS = (bool, int, float, str, type(None))


def _portable(value: Any) -> Any:
    """``value`` as it travels to a worker, or raises ``TypeError``."""
    if isinstance(value, torch.Tensor):
        return PointerArg(str(value.dtype).removeprefix("torch."), value.data_ptr() % 16 == 0)
    if isinstance(value, _SCALARS):
        return value
    raise TypeError(type(value).__name__)


def launch_spec(table: Any, kernel: str, grid: Any, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> LaunchSpec | None:
    """The spec of a launch of ``table.<kernel>`` (None where an argument cannot travel or
    the table is not a module file)."""
    path = getattr(table, "__file__", None)
    if path is None:
        return None
    try:
        return LaunchSpec(path, table.__name__, kernel,
                          tuple(grid) if isinstance(grid, tuple)
                          and all(isinstance(g, int) for g in grid) else (1,),
                          tuple(_portable(a) for a in args),
                          tuple((k, _portable(v)) for k, v in sorted(kwargs.items())))
    except TypeError:
        return None


def _table(path: str, name: str) -> Any:
    mod = sys.modules.get(name)
    if mod is None:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return mod


def compile_spec(spec: LaunchSpec) -> str:
    """A worker's job: warm up the launch (Triton compiles it into its cache); returns the
    kernel's name."""
    fn = getattr(_table(spec.table_path, spec.table_name), spec.kernel)
    args = [_Pointer(a) if isinstance(a, PointerArg) else a for a in spec.args]
    kwargs = {k: _Pointer(v) if isinstance(v, PointerArg) else v for k, v in spec.kwargs}
    fn.warmup(*args, grid=spec.grid, **kwargs)
    return spec.kernel


@triton.jit
def _warm(x, n, BLOCK: tl.constexpr):
    i = tl.arange(0, BLOCK)
    tl.store(x + i, tl.zeros([BLOCK], dtype=tl.float32), mask=i < n)


def _init_worker(cache_dir: str | None) -> None:
    """A worker's start: Triton's cache folder as the parent's, then one tiny compile (the
    compiler's one-time start-up, off the first real job's path)."""
    if cache_dir:
        os.environ["TRITON_CACHE_DIR"] = cache_dir
    try:
        _warm.warmup(_Pointer(PointerArg("float32", True)), 1, grid=(1,), BLOCK=128)
    except Exception:  # noqa: BLE001  (a failed warm start only costs the first job its time)
        pass


def _cache_dir() -> str | None:
    knobs = getattr(triton, "knobs", None)
    cache = getattr(knobs, "cache", None)
    return getattr(cache, "dir", None) or os.environ.get("TRITON_CACHE_DIR")


def start(workers: int) -> ProcessPoolExecutor:
    """The process's pool of ``workers`` processes (made and started on first call; a later
    call for more workers makes a larger one)."""
    global _pool, _size
    with _lock:
        if _pool is None or _size < workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            ctx = multiprocessing.get_context("spawn")
            _pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                        initializer=_init_worker, initargs=(_cache_dir(),))
            _size = workers
            for _ in range(workers):  # spawn them all now, not at the first real job
                _pool.submit(int)
        return _pool


def compile_specs(specs: list[LaunchSpec], workers: int) -> list[Future[str]]:
    """Hand ``specs`` to the pool; the futures end when each kernel is in Triton's cache."""
    pool = start(workers)
    return [pool.submit(compile_spec, s) for s in specs]


def wait_all(jobs: list[Future[str]]) -> None:
    """Wait for ``jobs``; a pool whose worker died is dropped (the next :func:`start` makes a
    new one). A failed job only means the parent compiles that kernel itself."""
    wait(jobs)
    if any(isinstance(j.exception(), BrokenProcessPool) for j in jobs):
        shutdown()


def shutdown() -> None:
    """Stop the process's pool (the next :func:`start` makes a new one)."""
    global _pool, _size
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
        _pool, _size = None, 0
