"""The Triton backend's side of an input distribution: :class:`TritonFamily`.

Each distribution the Triton kernels run has one module in this package holding its
``@triton.jit`` log-probability function (the ``LOGPROB`` of its ``input_fwd``, with the
signature of :func:`~.categorical.logprob_categorical`) and a subclass of
:class:`TritonFamily`, registered with ``@dists.implements("triton", name)``, that names it,
says whether its statistics kernel counts values, and lists the kernels of its own that a
plan's kernel table binds. :func:`family` finds it; :mod:`..codegen` reads it.
"""

from __future__ import annotations

from typing import ClassVar

from pccc.ir import dists


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

    @classmethod
    def module(cls) -> str:
        """The family module's name relative to ``pccc.backends.triton``
        (``families.gaussian``)."""
        return cls.__module__.removeprefix("pccc.backends.triton.")
