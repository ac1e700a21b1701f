"""The Triton backend's side of an input distribution: :class:`TritonFamily`.

Each distribution the Triton kernels run has one module in this package holding its
``@triton.jit`` log-probability function (the ``LOGPROB`` of its ``input_fwd``, with the
signature of :func:`~.categorical.logprob_categorical`) and a subclass of
:class:`TritonFamily`, registered with ``@dists.implements("triton", name)``, that names it,
says whether its statistics kernel counts values, lists the kernels of its own that a plan's
kernel table binds, and turns the statistics kernels' output into gradients and EM updates
(the host side, :mod:`..inputs`). :func:`family` finds it; :mod:`..codegen` reads it.

The host methods' defaults suit a family whose kernels read the native parameters
(``theta``) and whose EM update is the torch family's; the statistics they read are
``nstats [n, 4]`` = (sum f, sum f over missing values, sum f x, sum f x^2 over observed
values) and, for counted families, the value counts ``counts``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from pccc.backends.torch import inputs as fam
from pccc.ir import dists

if TYPE_CHECKING:
    from pccc.backends.triton.inputs import InputTables
    from pccc.ir.plan import InputLayer


def family(name: str) -> type[TritonFamily]:
    """The Triton implementation of distribution ``name`` (a ``PcccError`` names one the
    Triton backend lacks)."""
    fam: type[TritonFamily] = dists.implementation("triton", name)
    return fam


class TritonFamily:
    """One input distribution on the Triton backend (stateless class attributes)."""

    #: the name of the family module's log-probability function (``input_fwd``'s ``LOGPROB``)
    logprob: ClassVar[str]
    #: the statistics kernel counts values (``input_bwd``'s ``CAT``) instead of summing moments
    counted: ClassVar[bool] = False
    #: kernels of the family module that a plan using the distribution binds as they are
    kernels: ClassVar[tuple[str, ...]] = ()
    #: EM updates the family's parameters (False: EM leaves them as they are)
    learns: ClassVar[bool] = True

    @classmethod
    def module(cls) -> str:
        """The family module's name relative to ``pccc.backends.triton``
        (``families.gaussian``)."""
        return cls.__module__.removeprefix("pccc.backends.triton.")

    @classmethod
    def keep(cls, attrs: dict[str, Any], n: int) -> np.ndarray | None:
        """``[n, size]`` bool: the values each node may take, or None (every value)."""
        return None

    @classmethod
    def kernel_tables(cls, ly: InputLayer, raw: Tensor, theta: Tensor, cnorm: Tensor,
                      logc: Tensor) -> tuple[Tensor, Tensor]:
        """The two tables the layer's ``input_fwd`` reads as ``theta`` and ``logc``: by
        default the native copy ``theta`` and the layer's constants ``logc``."""
        return theta, logc

    @classmethod
    def add_raw_grad(cls, tb: InputTables, ns: Tensor, raw: Tensor, counts: Tensor,
                     grad: Tensor) -> None:
        """Add the layer's ``d loss / d input_raw`` into ``grad`` from its statistics
        weighted by the upstream gradient (default: nothing)."""

    @classmethod
    def grad_kernel(cls, kernels: Any, tb: InputTables, inp: Any, theta: Tensor, aux: Tensor,
                    flow: Tensor, xt: Tensor, mt: Tensor, scale: Tensor, batch: int,
                    grad: Tensor) -> None:
        """Add the layer's gradient that no statistic gives into ``grad`` by a kernel of the
        family's own (default: none); arguments as
        :func:`~pccc.backends.triton.inputs.logistic_grads`'s."""

    @classmethod
    def em_kernel(cls, kernels: Any, tb: InputTables, raw: Tensor, shift: Tensor, c: Tensor,
                  counts: Tensor, ns: Tensor, step: float, pseudocount: float) -> bool:
        """Run the layer's EM step (statistics zeroed too) by a kernel of the family's own
        and say so; default: no such kernel (False)."""
        return False

    @classmethod
    def em_stats(cls, tb: InputTables, ns: Tensor, fm: Tensor, theta: Tensor, raw: Tensor,
                 shift: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
        """``(native, stats)`` of the layer's distinct rows for its EM update: the
        statistics with the missing values' posterior share (flow ``fm [u]``) added."""
        raise NotImplementedError

    @classmethod
    def em_new(cls, tb: InputTables, native: Tensor, stats: Tensor, step: float,
               pseudocount: float) -> Tensor:
        """New native parameters of the distinct rows: the torch family's EM update."""
        return fam.em_update(tb.layer.dist, native, stats, step, pseudocount, attrs=tb.attrs)

    @classmethod
    def em_write(cls, tb: InputTables, r: Tensor, s: Tensor, new: Tensor, theta: Tensor,
                 c: Tensor, shift: Tensor) -> None:
        """Write an EM update's kernel copies (``r``, ``s``: its raw coordinates and
        log-normalizers, already in ``input_raw``): by default the native ``new`` into
        ``theta``."""
        tb.put(theta, new)

    @classmethod
    def refresh(cls, tb: InputTables, raw: Tensor, shift: Tensor, theta: Tensor, c: Tensor
                ) -> None:
        """The kernels' copies from the raw coordinates: by default the native parameters
        into ``theta``."""
        tb.put(theta, fam.to_native(tb.layer.dist, tb.urows(raw), tb.ushift(shift)))


def add_rows(tb: InputTables, grad: Tensor, g: Tensor) -> None:
    """Add per-node rows ``g [n, size]`` into the flat ``grad`` (tied nodes add into one)."""
    if tb.span is not None:
        tb.rows(grad).add_(g.to(grad.dtype))
    else:
        grad.index_add_(0, tb.idx.reshape(-1), g.reshape(-1).to(grad.dtype))


def moment_em_stats(tb: InputTables, st: Tensor, theta: Tensor) -> Tensor:
    """Per-node statistics ``st [n, k]`` summed onto the layer's distinct rows."""
    return st if tb.span is not None else torch.zeros(
        (tb.num_rows, st.shape[1]), dtype=theta.dtype, device=theta.device).index_add_(
            0, tb.inv, st)
