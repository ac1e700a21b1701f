"""Kernels wrapped by ``triton.jit`` at their first use.

``triton.jit`` reads each function's source back through ``inspect.getsource``, which
tokenizes it: a measurable part of a small plan's compile time when every kernel of the
backend is wrapped at import. The kernel modules (:mod:`.kernels_sum`, :mod:`.kernels_input`,
:mod:`.kernels_param`) decorate their launchable kernels (the functions other kernels do not
call) with :func:`kernel` instead, which keeps the function and its options and makes the
``JITFunction`` when the kernel is first launched, compiled or inspected. Helpers that kernels
call, and functions passed to kernels as constexpr arguments, stay ``@triton.jit``: Triton
resolves a callee through the caller's globals and needs the real object there.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import triton


class LazyKernel:
    """Stands for ``triton.jit(fn, **options)`` until first needed; every attribute and
    ``kernel[grid]`` go to the real one."""

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any]):
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]  # __name__, __doc__, ...
        self._fn = fn
        self._options = options
        self._jit: Any = None

    @property
    def jit(self) -> Any:
        """The ``JITFunction`` (or, under ``TRITON_INTERPRET=1``, Triton's interpreted one)."""
        if self.__dict__.get("_jit") is None:
            self._jit = triton.jit(self.__dict__["_fn"], **self.__dict__["_options"])
        return self._jit

    def __getitem__(self, grid: Any) -> Any:
        return self.jit[grid]

    def __getattr__(self, name: str) -> Any:
        # only public names go to the real function: private and special ones are looked up
        # by copy, pickle and hasattr probes, which must not wrap the kernel (nor recurse
        # through ``jit`` on an instance still being made); use :func:`resolve` for them
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.jit, name)

    def __repr__(self) -> str:
        return f"<lazy kernel {self.__name__}{' (wrapped)' if self._jit is not None else ''}>"


def kernel(fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """``@kernel`` / ``@kernel(do_not_specialize=[...])``: as ``@triton.jit``, made lazily."""
    if fn is None:
        return lambda f: LazyKernel(f, options)
    return LazyKernel(fn, options)


def resolve(obj: Any) -> Any:
    """The Triton function behind ``obj`` (``obj`` itself when it is not lazy)."""
    return obj.jit if isinstance(obj, LazyKernel) else obj


_KEYED = False
_KEYS_LOCK = threading.Lock()


def canonical_keys() -> int:
    """Compute the cache key of every Triton function of the backend's kernel modules, in one
    fixed order (module, then name), once per process; returns how many.

    A ``JITFunction``'s cache key depends on the order in which a process computes keys: a
    kernel's key adds the compile-time globals its callees use (``NARROW``), and a callee
    whose key an earlier kernel computed passes them on differently than one computed fresh
    (``sum_fwd``'s key differs depending on whether ``sum_bwd``'s was computed first). Two
    processes that launch kernels in different orders would then look up different entries
    of Triton's on-disk cache for the same binary. Computing every key in this order first
    (about 30 ms) gives every process the same keys: the compile workers, and a later
    process whose cache is warm."""
    global _KEYED
    with _KEYS_LOCK:  # (two threads interleaving would make the order theirs)
        if _KEYED:
            return 0
        count = _all_keys()
        _KEYED = True
    return count


def _all_keys() -> int:
    """:func:`canonical_keys`'s work, unguarded."""
    import importlib
    import pkgutil

    from pccc.backends.triton import families

    names = ["pccc.backends.triton.kernels_input", "pccc.backends.triton.kernels_param",
             "pccc.backends.triton.kernels_query", "pccc.backends.triton.kernels_sum"]
    names += [f"{families.__name__}.{m.name}" for m in pkgutil.iter_modules(families.__path__)]
    count = 0
    for name in sorted(names):
        mod = importlib.import_module(name)
        for attr in sorted(vars(mod)):
            obj = vars(mod)[attr]
            if getattr(obj, "__module__", None) != name:
                continue
            fn = resolve(obj)
            if hasattr(fn, "cache_key") and hasattr(fn, "used_global_vals"):
                fn.cache_key  # noqa: B018  (computed and kept by Triton)
                count += 1
    return count
