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

import atexit
import importlib.util
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from concurrent.futures import Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
import triton
import triton.language as tl

#: the process's pool (one per process)
_pool: Pool | None = None
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


def _send(stream: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError("the other side closed")
    (size,) = struct.unpack("<Q", head)
    return pickle.loads(stream.read(size))


def worker_main() -> None:
    """A worker process (``python -m pccc.backends.triton.jit_worker``): one tiny compile
    (the compiler's one-time start-up, off the first real job's path), then jobs from stdin,
    one answer each on stdout, until stdin closes."""
    inp = sys.stdin.buffer
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything else written to stdout goes to the parent's stderr
    try:
        _warm.warmup(_Pointer(PointerArg("float32", True)), 1, grid=(1,), BLOCK=128)
    except Exception:  # noqa: BLE001  (a failed warm start only costs the first job its time)
        pass
    while True:
        try:
            spec = _receive(inp)
        except EOFError:
            return
        try:
            _send(out, ("ok", compile_spec(spec)))
        except Exception as e:  # noqa: BLE001  (the parent compiles this kernel itself)
            _send(out, ("error", f"{type(e).__name__}: {e}"))


class _Worker:
    """One worker process and the thread that feeds it jobs from the pool's queue."""

    def __init__(self, jobs: queue.Queue[tuple[LaunchSpec, Future[str]] | None],
                 env: dict[str, str]):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pccc.backends.triton.jit_worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env=env)
        self.jobs = jobs
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        while (job := self.jobs.get()) is not None:
            spec, fut = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                _send(self.proc.stdin, spec)
                status, value = _receive(self.proc.stdout)
            except (OSError, EOFError) as e:  # the worker died: its jobs go to the parent
                fut.set_exception(BrokenPipeError(f"jit worker exited ({e})"))
                self._drain()
                return
            if status == "ok":
                fut.set_result(value)
            else:
                fut.set_exception(RuntimeError(value))

    def _drain(self) -> None:
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                return
            if job is None:
                return
            job[1].set_exception(BrokenPipeError("jit worker exited"))

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # the worker's loop ends at end of input


class Pool:
    """``size`` worker processes fed from one queue (see the module docstring)."""

    def __init__(self, size: int):
        root = str(Path(__file__).resolve().parents[2])  # the folder holding ``pccc``'s code
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [root, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
        cache = _cache_dir()
        if cache:
            env["TRITON_CACHE_DIR"] = cache
        self.size = size
        self.jobs: queue.Queue[tuple[LaunchSpec, Future[str]] | None] = queue.Queue()
        self.workers = [_Worker(self.jobs, env) for _ in range(size)]

    def submit(self, spec: LaunchSpec) -> Future[str]:
        fut: Future[str] = Future()
        self.jobs.put((spec, fut))
        return fut

    def broken(self) -> bool:
        return any(w.proc.poll() is not None for w in self.workers)

    def close(self) -> None:
        for _ in self.workers:
            self.jobs.put(None)
        for w in self.workers:
            w.close()


def _cache_dir() -> str | None:
    knobs = getattr(triton, "knobs", None)
    cache = getattr(knobs, "cache", None)
    return getattr(cache, "dir", None) or os.environ.get("TRITON_CACHE_DIR")


def start(workers: int) -> Pool:
    """The process's pool of ``workers`` processes (made and started on first call; a later
    call for more workers, or after a worker died, makes a new one)."""
    global _pool
    with _lock:
        if _pool is None or _pool.size < workers or _pool.broken():
            if _pool is not None:
                _pool.close()
            _pool = Pool(workers)
        return _pool


def compile_specs(specs: list[LaunchSpec], workers: int) -> list[Future[str]]:
    """Hand ``specs`` to the pool; the futures end when each kernel is in Triton's cache."""
    pool = start(workers)
    return [pool.submit(s) for s in specs]


#: seconds to wait for the workers before the parent compiles what is left itself
WAIT_S = 300.0


def wait_all(jobs: list[Future[str]], timeout: float = WAIT_S) -> None:
    """Wait for ``jobs`` (at most ``timeout`` seconds). A failed or unfinished job only means
    the parent compiles that kernel itself."""
    wait(jobs, timeout=timeout)


def shutdown() -> None:
    """Stop the process's pool (the next :func:`start` makes a new one)."""
    global _pool
    with _lock:
        if _pool is not None:
            _pool.close()
        _pool = None


atexit.register(shutdown)
