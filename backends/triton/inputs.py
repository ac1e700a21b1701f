"""Input layers of the Triton backend between the kernels' statistics and the parameters.

The statistics kernels leave, per input layer, ``nstats [n, 4]`` = (sum f, sum f over missing
values, sum f x, sum f x^2 over observed values; the last two left 0 for categorical and
masked categorical layers, which do not use them) and, for those, the value counts
in ``counts`` (laid out like the native parameters, tied nodes merged by the atomics). From them
this module computes the gradients with respect to the torch backend's raw (unconstrained)
input parameters and the EM update in native coordinates.

A masked categorical layer's kernels read its native table (``theta``, 0 at the values its
mask leaves out, which every update here keeps 0); a discrete logistic's EM statistics are
its bins' midpoint moments, affine in the integer values' (``sum f x``, ``sum f x^2``), and
its gradients, which no moment gives, are summed over the examples by a kernel of their own
(``logistic_grad``, :func:`logistic_grads`).

What each distribution does here is its family's (:mod:`.families`): the tables its forward
kernel reads, its gradient, EM statistics, update and refresh; this module runs them per
layer. Index tables are built once (:class:`InputTables`), so every step is a fixed sequence
of device operations (capturable in a CUDA graph).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pccc.backends.torch import inputs as fam
from pccc.backends.triton.families import family
from pccc.ir.plan import InputLayer


@dataclass
class InputTables:
    """One input layer's parameter offsets on the device."""

    layer: InputLayer
    idx: Tensor
    """``[n, size]`` offsets of each node's parameters (empty when ``span`` is set)"""
    uidx: Tensor
    """``[u, size]`` offsets of each distinct parameter row (tied nodes share one)"""
    inv: Tensor
    """``[n]`` row of ``uidx`` each node uses"""
    span: tuple[int, int] | None
    """``(start, length)`` when the rows are one contiguous untied block (no gathers)"""
    node0: int
    """the layer's first node in the module's per-node arrays (``input_shift``)"""
    first: Tensor
    """``[u]`` a node that uses each distinct parameter row"""
    keep: Tensor | None = None
    """masked categorical layers: bool ``[n, size]``, the values each node may take"""
    attrs: dict[str, Any] | None = None
    """the layer's attributes (its family's EM update reads them)"""

    @staticmethod
    def build(ly: InputLayer, device: torch.device, node0: int = 0) -> InputTables:
        size = max(ly.param_size, 1)
        ps = np.asarray(ly.param_start, dtype=np.int64)
        span = None
        if ly.param_size and ly.n and np.array_equal(ps, ps[0] + np.arange(ly.n) * size):
            span = (int(ps[0]), ly.n * size)  # rows are views: no index tables on the device
            first, inv = np.arange(ly.n), np.arange(ly.n)
            idx = uidx = np.zeros((0, size), np.int64)
        else:
            uniq, first, inv = np.unique(ps, return_index=True, return_inverse=True)
            idx = ps[:, None] + np.arange(size)[None, :]
            uidx = uniq[:, None] + np.arange(size)[None, :]

        def t(a: np.ndarray) -> Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(device)

        attrs = dict(ly.attrs)
        rows = family(ly.dist).keep(attrs, ly.n)
        keep = None if rows is None else torch.from_numpy(rows).to(device)
        return InputTables(ly, t(idx), t(uidx), t(inv.reshape(-1)), span, int(node0), t(first),
                           keep, attrs)

    @property
    def ukeep(self) -> Tensor:
        """``[u, size]`` allowed values of the distinct parameter rows (masked layers)."""
        assert self.keep is not None
        return self.keep if self.span is not None else self.keep[self.first]

    def per_node(self, urow: Tensor) -> Tensor:
        """``[n, ...]``: each node's entry of a per-distinct-row tensor."""
        return urow if self.span is not None else urow[self.inv]

    def rows(self, flat: Tensor) -> Tensor:
        """``[n, size]`` rows of a flat parameter-layout tensor (a view when contiguous)."""
        if self.span is not None:
            return flat[self.span[0]: self.span[0] + self.span[1]].view(self.layer.n, -1)
        return flat[self.idx]

    def urows(self, flat: Tensor) -> Tensor:
        """``[u, size]`` distinct parameter rows of ``flat`` (a view when contiguous)."""
        return self.rows(flat) if self.span is not None else flat[self.uidx]

    @property
    def num_rows(self) -> int:
        """Distinct parameter rows."""
        return self.layer.n if self.span is not None else self.uidx.shape[0]

    def nodes(self, per_node: Tensor) -> Tensor:
        """``[n]`` view of this layer's nodes in a per-node array (``input_shift``)."""
        return per_node[self.node0: self.node0 + self.layer.n]

    def ushift(self, shift: Tensor) -> Tensor:
        """``[u, 1]`` log-normalizers of the distinct parameter rows."""
        s = self.nodes(shift)
        return (s if self.span is not None else s[self.first]).unsqueeze(1)

    def put(self, flat: Tensor, rows: Tensor) -> None:
        """Write ``[u, size]`` rows (one per distinct parameter row) into ``flat``."""
        if self.span is not None:
            flat[self.span[0]: self.span[0] + self.span[1]].copy_(rows.reshape(-1))
        else:
            flat.index_copy_(0, self.uidx.reshape(-1), rows.reshape(-1).to(flat.dtype))


def kernel_tables(ly: InputLayer, raw: Tensor, theta: Tensor, cnorm: Tensor, logc: Tensor
                  ) -> tuple[Tensor, Tensor]:
    """The two tables a layer's ``input_fwd`` reads (``theta``, ``logc``): its family's
    choice among ``input_raw``, the native copy ``theta``, the per-node constants ``cnorm``
    and the layer's constants ``logc`` (:meth:`~.families.TritonFamily.kernel_tables`)."""
    return family(ly.dist).kernel_tables(ly, raw, theta, cnorm, logc)


def raw_grads(tables: list[InputTables], raw: Tensor, shift: Tensor, counts: Tensor,
              nstats: list[Tensor]) -> Tensor:
    """``d loss / d input_raw`` from statistics weighted by the upstream gradient, each
    layer's from its family (discrete logistic layers: 0 here, see
    :func:`logistic_grads`)."""
    grad = torch.zeros_like(raw)
    for tb, ns in zip(tables, nstats):
        if tb.layer.param_size:
            family(tb.layer.dist).add_raw_grad(tb, ns, raw, counts, grad)
    return grad


def logistic_grads(kernels: Any, tables: list[InputTables], inputs: list[Any],
                   args: list[tuple[Tensor, Tensor]], flow: Tensor, xt: Tensor, mt: Tensor,
                   scale: Tensor, batch: int, grad: Tensor) -> None:
    """Add the gradients that no statistic gives (the discrete logistic layers'
    ``d loss / d input_raw``) into ``grad``: each family's kernel of its own
    (``logistic_grad``) over the flows ``flow [rows, stride]`` of the last backward pass, the
    values ``xt``, missing flags ``mt`` and upstream gradients ``scale`` of its ``batch``
    examples; ``inputs``: the device plan's input layers (their ``vars`` and ``pstart``
    tables), ``args``: the forward kernels' tables (:func:`kernel_tables`)."""
    for tb, inp, (theta, aux) in zip(tables, inputs, args):
        if tb.layer.param_size:
            family(tb.layer.dist).grad_kernel(kernels, tb, inp, theta, aux, flow, xt, mt,
                                              scale, batch, grad)


def _em_stats(tb: InputTables, ns: Tensor, theta: Tensor, raw: Tensor, shift: Tensor,
              counts: Tensor) -> tuple[Tensor, Tensor]:
    """``(native, stats)`` of a layer's distinct rows for its family's EM update: the
    statistics with the missing values' posterior share added."""
    fm = ns[:, 1]
    if tb.span is None:
        fm = torch.zeros(tb.num_rows, dtype=raw.dtype, device=raw.device).index_add_(
            0, tb.inv, fm)
    return family(tb.layer.dist).em_stats(tb, ns, fm, theta, raw, shift, counts)


def em_update_inputs(tables: list[InputTables], theta: Tensor, raw: Tensor, shift: Tensor,
                     cnorm: list[Tensor], counts: Tensor, nstats: list[Tensor], step: float,
                     pseudocount: float, kernels: Any = None) -> None:
    """One EM step of every input layer from EM statistics (root flow 1 per example), in place:
    the raw coordinates (``raw``, per-node ``shift``), and the kernels' copies: ``theta``
    (native parameters of non-categorical layers) and ``cnorm`` (per categorical node, the
    constant ``c`` of ``log theta = raw + c``; categorical layers keep no native copy).
    A family may run a layer's step by a kernel of its own when ``kernels`` is given
    (contiguous categorical layers: the generated ``cat_em``, which also zeroes their
    statistics); the caller zeroes the rest."""
    updates = []
    for tb, ns, c in zip(tables, nstats, cnorm):
        ly = tb.layer
        fm = family(ly.dist)
        if not ly.param_size or not fm.learns:
            continue
        if fm.em_kernel(kernels, tb, raw, shift, c, counts, ns, step, pseudocount):
            continue
        native, stats = _em_stats(tb, ns, theta, raw, shift, counts)
        updates.append((tb, c, fm.em_new(tb, native, stats, step, pseudocount)))
    for tb, c, new in updates:  # write after reading: tied rows update once
        r, s = fam.to_raw_tensor(tb.layer.dist, new)
        tb.put(raw, r)
        family(tb.layer.dist).em_write(tb, r, s, new, theta, c, shift)


def native_params(tables: list[InputTables], raw: Tensor, shift: Tensor, theta: Tensor,
                  cnorm: list[Tensor]) -> None:
    """The kernels' copies from the raw coordinates, in place: ``theta`` (native, linear) of
    non-categorical layers, ``cnorm`` of categorical ones (each family's
    :meth:`~.families.TritonFamily.refresh`)."""
    for tb, c in zip(tables, cnorm):
        if tb.layer.param_size:
            family(tb.layer.dist).refresh(tb, raw, shift, theta, c)
