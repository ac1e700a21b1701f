"""A Triton kernel with some of its ``tl.constexpr`` parameters fixed.

The generated kernel table of a plan (:mod:`.codegen`) names each kernel variant it launches,
``sum_fwd_b32_c64_f2_n4 = specialize(kernels_sum.sum_fwd, B=32, C=64, ...)``; the runtime
launches it as any Triton kernel, ``table.sum_fwd_b32_c64_f2_n4[grid](*args, BT=64)``, and
Triton's own specialization compiles one binary per distinct set of constexpr values. Only
Triton's public launch API is used (``kernel[grid](...)``, ``kernel.warmup(...)``).

Example::

    fwd = specialize(kernels_sum.sum_fwd, B=32, C=32, F=2, NC=1, BP=32, CP=32, MIX="tf32",
                     TRANS=True)
    fwd[(blocks, tiles)](node, w, children, row, ..., batch, stride, BT=64, num_warps=4)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any


class Specialized:
    """``kernel`` with the constexpr values ``constexprs`` bound; launched and warmed up as a
    Triton kernel, the bound values added to every call's keywords."""

    def __init__(self, kernel: Any, name: str, constexprs: Mapping[str, Any]):
        self.kernel = kernel
        """the Triton kernel (``@triton.jit`` or :func:`.lazyjit.kernel`)"""
        self.__name__ = name
        self.constexprs: Mapping[str, Any] = MappingProxyType(dict(constexprs))
        """the bound constexpr values, by parameter name"""

    def __getitem__(self, grid: Any) -> Callable[..., Any]:
        launch = self.kernel[grid]
        consts = self.constexprs

        def run(*args: Any, **kwargs: Any) -> Any:
            return launch(*args, **consts, **kwargs)
        return run

    def warmup(self, *args: Any, grid: Any, **kwargs: Any) -> Any:
        """Compile for these arguments without launching (``JITFunction.warmup``)."""
        return self.kernel.warmup(*args, grid=grid, **self.constexprs, **kwargs)

    def __repr__(self) -> str:
        consts = ", ".join(f"{k}={v!r}" for k, v in self.constexprs.items())
        return f"<kernel {self.__name__}: {getattr(self.kernel, '__name__', self.kernel)}" \
               f"({consts})>"


def specialize(kernel: Any, name: str = "", **constexprs: Any) -> Specialized:
    """``kernel`` with ``constexprs`` fixed, called ``name`` (default: the kernel's name)."""
    return Specialized(kernel, name or getattr(kernel, "__name__", "kernel"), constexprs)
