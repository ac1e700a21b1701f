"""Compile a pass's kernels in parallel before its first run.

Triton compiles a kernel on its first launch, one after another: 20 to 30 kernels cost 9 to
17 s on a cold cache, most of the time until the first batch can run. :func:`prejit` instead
runs the pass once with a stand-in for the kernel module that records every launch (kernel,
grid, arguments) without running it, then hands each distinct specialization to
``kernel.warmup`` under Triton's public ``AsyncCompileMode`` with a thread pool, and waits.
The real run that follows finds every kernel compiled.

The recording run executes the pass's torch operations for real, so it is only for passes
whose torch operations touch scratch buffers (forward and backward); a pass that updates
parameters outside the kernels (the EM step) compiles as usual. The options ``parallel_jit``
turns this on or off and ``jit_threads`` sets the pool size (0: the CPU count, at most 16).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import torch

from pccc.backends.triton.lazyjit import resolve

Launch = tuple[Any, Any, tuple[Any, ...], dict[str, Any]]


class _Launcher:
    def __init__(self, fn: Any, calls: list[Launch]):
        self.fn, self.calls = fn, calls

    def __getitem__(self, grid: Any) -> Callable[..., None]:
        def record(*args: Any, **kwargs: Any) -> None:
            self.calls.append((self.fn, grid, args, kwargs))
        return record


class Recorder:
    """Stands in for a generated kernel module: ``rec.name[grid](*args)`` is recorded."""

    def __init__(self, module: ModuleType):
        self._module = module
        self.calls: list[Launch] = []

    def __getattr__(self, name: str) -> _Launcher:
        return _Launcher(resolve(getattr(self._module, name)), self.calls)


def _spec(a: Any) -> Any:
    """What Triton specializes an argument on (tensors: dtype; ints: % 16 and == 1)."""
    if isinstance(a, torch.Tensor):
        return ("t", a.dtype, a.data_ptr() % 16 == 0)
    if isinstance(a, bool):
        return ("b", a)
    if isinstance(a, int):
        return ("i", a % 16 == 0, a == 1, -2**31 <= a < 2**31)
    if isinstance(a, float):
        return ("f",)
    return ("o", a)


def unspecialized(fn: Any) -> set[int]:
    """Positions of ``fn``'s arguments that Triton does not specialize on (the decorator's
    ``do_not_specialize``); empty where the function does not say (every argument counts)."""
    names = getattr(fn, "arg_names", None) or [getattr(p, "name", None)
                                               for p in getattr(fn, "params", [])]
    dns = getattr(fn, "do_not_specialize", None)  # (the interpreter keeps the decorator's
    if dns is None:  # arguments as they were given)
        dns = (getattr(fn, "kwargs", None) or {}).get("do_not_specialize")
    out = set()
    for n in dns or ():
        if isinstance(n, int):
            out.add(n)
        elif n in names:
            out.add(names.index(n))
    return out


def specialization(fn: Any, args: tuple[Any, ...], kw: dict[str, Any]) -> tuple[Any, ...]:
    """What a launch of ``fn`` compiles to, as far as Triton tells launches apart: its
    arguments' specializations (those Triton does not specialize on, such as batch splits,
    do not count) and its constexpr and launch keywords."""
    skip = unspecialized(fn)
    return (tuple(("-",) if i in skip else _spec(a) for i, a in enumerate(args)),
            tuple(sorted(kw.items())))


def distinct(calls: list[Launch]) -> list[Launch]:
    """One launch per kernel specialization (the rest would compile the same binary)."""
    seen: dict[Any, Launch] = {}
    for fn, grid, args, kw in calls:
        seen.setdefault((id(fn),) + specialization(fn, args, kw), (fn, grid, args, kw))
    return list(seen.values())


def enabled() -> bool:
    """Whether this Triton has ``AsyncCompileMode`` (Triton 3.6 has it); without it kernels
    compile on their first launch."""
    import triton

    return hasattr(triton, "AsyncCompileMode")


def compile_parallel(calls: list[Launch], threads: int = 0) -> int:
    """Compile the launches' kernels on a pool of ``threads`` threads (0: the CPU count, at
    most 16); returns how many were submitted."""
    import triton

    todo = distinct(calls)
    if not todo:
        return 0
    threads = threads or min(16, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool, \
            triton.AsyncCompileMode(pool):
        for fn, grid, args, kw in todo:
            fn.warmup(*args, grid=grid, **kw)
    return len(todo)


def prejit(owner: Any, attr: str, run: Callable[[], None], *more: Callable[[], None],
           threads: int = 0) -> int:
    """Record ``run``'s launches (and those of the ``more`` passes, one after another) through
    ``owner.<attr>`` (the kernel module) and compile them all in parallel, in one pool: the
    passes' longest compiles overlap instead of adding up; ``owner.<attr>`` is restored
    whatever happens."""
    module = getattr(owner, attr)
    rec = Recorder(module)
    setattr(owner, attr, rec)
    try:
        for fn in (run, *more):
            fn()
    finally:
        setattr(owner, attr, module)
    return compile_parallel(rec.calls, threads)
