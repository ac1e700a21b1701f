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

Index tables are built once (:class:`InputTables`), so every step is a fixed sequence of
device operations (capturable in a CUDA graph).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pccc.backends.torch import inputs as fam
from pccc.ir.dists.discrete_logistic import bin_width
from pccc.ir.dists.masked_categorical import mask_rows
from pccc.ir.plan import InputLayer

#: categorical nodes per program of the ``cat_em`` kernel
CAT_BN = 8


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

        attrs, keep = dict(ly.attrs), None
        if ly.dist == "masked_categorical":
            keep = torch.from_numpy(mask_rows(attrs, ly.n)).to(device)
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
    """The two tables a layer's ``input_fwd`` reads (``theta``, ``logc``): ``input_raw`` and
    the per-node constants ``c`` of ``log theta = raw + c`` (categorical); ``input_raw`` and
    nothing (gaussian); ``input_raw`` and ``(card, low, bin width)`` (discrete logistic); the
    native copy ``theta`` and the binomial coefficients (the others)."""
    if ly.dist == "categorical":
        return raw, cnorm
    if ly.dist == "gaussian":
        return raw, logc
    if ly.dist == "discrete_logistic":
        at = dict(ly.attrs)
        return raw, torch.tensor([float(at["card"]), float(at["low"]), bin_width(at)],
                                 dtype=torch.float32, device=raw.device)
    return theta, logc


def raw_grads(tables: list[InputTables], raw: Tensor, shift: Tensor, counts: Tensor,
              nstats: list[Tensor]) -> Tensor:
    """``d loss / d input_raw`` from statistics weighted by the upstream gradient (discrete
    logistic layers: 0 here, see :func:`logistic_grads`)."""
    grad = torch.zeros_like(raw)
    for tb, ns in zip(tables, nstats):
        ly = tb.layer
        if not ly.param_size:
            continue
        obs = ns[:, 0] - ns[:, 1]
        r = tb.rows(raw)
        if ly.dist == "categorical":  # counts - softmax(raw) * observed flow, per node
            g = torch.softmax(r, dim=1) * -obs[:, None]
            if tb.span is not None:
                tb.rows(grad).copy_(tb.rows(counts) + g)
                continue
            grad.index_add_(0, tb.uidx.reshape(-1), counts[tb.uidx.reshape(-1)])
        elif ly.dist in ("bernoulli", "binomial"):
            total = 1.0 if ly.dist == "bernoulli" else float(dict(ly.attrs)["total"])
            g = (ns[:, 2] - torch.sigmoid(r[:, 0]) * total * obs)[:, None]
        elif ly.dist == "gaussian":
            g = gaussian_raw_grad(r, obs, ns[:, 2], ns[:, 3])
        elif ly.dist == "masked_categorical":  # as categorical, 0 at the masked-out values
            assert tb.keep is not None
            g = torch.where(tb.keep, masked_probs(r, tb.keep) * -obs[:, None], 0.0)
            cnt = torch.where(tb.ukeep, tb.urows(counts), 0.0)
            if tb.span is not None:
                tb.rows(grad).copy_(cnt + g)
                continue
            grad.index_add_(0, tb.uidx.reshape(-1), cnt.reshape(-1))
        else:
            continue
        if tb.span is not None:
            tb.rows(grad).add_(g.to(grad.dtype))
        else:
            grad.index_add_(0, tb.idx.reshape(-1), g.reshape(-1).to(grad.dtype))
    return grad


#: node rows and batch columns per program of the ``logistic_grad`` kernel
LOGISTIC_TILE = (16, 64)


def logistic_grads(kernels: Any, tables: list[InputTables], inputs: list[Any],
                   args: list[tuple[Tensor, Tensor]], flow: Tensor, xt: Tensor, mt: Tensor,
                   scale: Tensor, batch: int, grad: Tensor) -> None:
    """Add the discrete logistic layers' ``d loss / d input_raw`` into ``grad``: the
    ``logistic_grad`` kernel over the flows ``flow [rows, stride]`` of the last backward
    pass, the values ``xt``, missing flags ``mt`` and upstream gradients ``scale`` of its
    ``batch`` examples; ``inputs``: the device plan's input layers (their ``vars`` and
    ``pstart`` tables), ``args``: the forward kernels' tables (:func:`kernel_tables`)."""
    bn, bt = LOGISTIC_TILE
    for tb, inp, (theta, aux) in zip(tables, inputs, args):
        ly = tb.layer
        if ly.dist != "discrete_logistic" or not ly.param_size:
            continue
        kernels.logistic_grad[(-(-ly.n // bn), -(-batch // bt))](
            flow, xt, mt, inp.vars, inp.pstart, theta, aux, scale, grad, ly.node_start, ly.n,
            batch, flow.shape[1], BN=bn, BT=bt)


def masked_probs(raw: Tensor, keep: Tensor) -> Tensor:
    """``softmax`` of each row of ``raw`` over the values ``keep`` allows (0 elsewhere)."""
    return torch.softmax(raw.masked_fill(~keep, -torch.inf), dim=1)


def masked_em(keep: Tensor, native: Tensor, stats: Tensor, step: float, pseudocount: float
              ) -> Tensor:
    """The torch family's masked categorical EM step (pseudocount over the allowed values
    only, 0 at the others) with the mask ``keep [u, size]`` already on the device: no
    host-to-device copy, so that the step can be captured in a CUDA graph."""
    k = keep.sum(dim=1, keepdim=True).to(native.dtype)
    stats = torch.where(keep, stats, 0.0)
    tot = stats.sum(1, keepdim=True)
    ok = (tot + pseudocount) > 0
    target = (stats + pseudocount / k) / torch.where(ok, tot + pseudocount, 1.0)
    new = torch.where(ok, (1 - step) * native + step * target, native)
    return torch.where(keep, new, 0.0)


def logistic_stats(tb: InputTables, ns: Tensor) -> Tensor:
    """``[n, 3]`` float64 EM statistics of a discrete logistic layer, as the torch family's:
    (sum f, sum f m, sum f m^2), ``m = low + (x + 1/2) w`` the observed values' bin midpoints,
    from ``nstats`` (the moments of ``x``)."""
    attrs = dict(tb.layer.attrs)
    w = bin_width(attrs)
    lo = float(attrs["low"]) + 0.5 * w
    d = ns.double()
    obs, sx, sxx = d[:, 0] - d[:, 1], d[:, 2], d[:, 3]
    return torch.stack([d[:, 0], lo * obs + w * sx,
                        lo * lo * obs + 2.0 * lo * w * sx + w * w * sxx], dim=1)


def gaussian_raw_grad(raw: Tensor, obs: Tensor, sx: Tensor, sxx: Tensor) -> Tensor:
    """``(d/d mu, d/d log_sd)`` of ``sum_b f_b log N(x_b)`` from the observed statistics
    ``obs = sum f``, ``sx = sum f x``, ``sxx = sum f x^2``: ``(sx - mu obs) / sd^2`` and
    ``sum f (x - mu)^2 / sd^2 - obs``, in float64 with the divisions by ``sd^2`` done in log
    space and ``sum f (x - mu)^2`` as the spread about the data's mean plus ``obs (m - mu)^2``
    (no ``mu^2`` to overflow): infinite where the dtype cannot hold them, never NaN."""
    mu, lsd = raw[:, 0].double(), raw[:, 1].double()
    o, sx, sxx = obs.double(), sx.double(), sxx.double()

    def times(u: Tensor, v: Tensor) -> Tensor:  # u v, 0 where either is 0 (even with inf)
        return torch.where((u == 0) | (v == 0), torch.zeros_like(u), u * v)

    a = sx - times(mu, o)
    some = o != 0
    m = sx / torch.where(some, o, torch.ones_like(o))
    dev2 = torch.where(some, (sxx - o * m * m) + times(o, (m - mu) ** 2),
                       sxx - 2 * times(mu, sx))

    def over_var(t: Tensor) -> Tensor:
        return torch.sign(t) * torch.exp(torch.log(torch.abs(t)) - 2 * lsd)

    return torch.stack([over_var(a), over_var(dev2) - o], dim=1).to(raw.dtype)


def _em_stats(tb: InputTables, ns: Tensor, theta: Tensor, raw: Tensor, shift: Tensor,
              counts: Tensor) -> tuple[Tensor, Tensor]:
    """``(native, stats)`` of a layer's distinct rows for its family's EM update: the
    statistics with the missing values' posterior share added."""
    ly = tb.layer
    u = tb.num_rows
    fm = ns[:, 1]
    if tb.span is None:
        fm = torch.zeros(u, dtype=raw.dtype, device=raw.device).index_add_(0, tb.inv, fm)
    if ly.dist == "categorical":  # a missing value adds its posterior: f * theta
        native = fam.to_native(ly.dist, tb.urows(raw), tb.ushift(shift))
        stats = tb.urows(counts) + fm[:, None] * native
    elif ly.dist == "masked_categorical":  # theta: the masked native table
        native = tb.urows(theta)
        stats = tb.urows(counts) + fm[:, None] * native
    elif ly.dist == "discrete_logistic":
        native = tb.urows(theta)
        st = logistic_stats(tb, ns)
        if tb.span is None:
            st = torch.zeros((u, 3), dtype=st.dtype, device=st.device).index_add_(
                0, tb.inv, st)
        stats = fam.complete_stats(ly.dist, tb.attrs or {}, native, st, fm.double())
    else:
        native = tb.urows(theta)  # [u, size]
        if ly.dist in ("bernoulli", "binomial"):
            st = torch.zeros((ly.n, 3), dtype=theta.dtype, device=theta.device)
            nat = tb.rows(theta)
            total = 1.0 if ly.dist == "bernoulli" else float(dict(ly.attrs)["total"])
            st[:, 0] = ns[:, 2] + ns[:, 1] * total * nat[:, 0]
            st[:, 1] = ns[:, 0] * total
        else:  # (S0, observed S1, S2, missing flow): see fam.gaussian_em
            st = ns[:, [0, 2, 3, 1]].to(theta.dtype)
        stats = st if tb.span is not None else torch.zeros(
            (u, st.shape[1]), dtype=theta.dtype, device=theta.device).index_add_(
                0, tb.inv, st)
    return native, stats


def em_update_inputs(tables: list[InputTables], theta: Tensor, raw: Tensor, shift: Tensor,
                     cnorm: list[Tensor], counts: Tensor, nstats: list[Tensor], step: float,
                     pseudocount: float, kernels: Any = None) -> None:
    """One EM step of every input layer from EM statistics (root flow 1 per example), in place:
    the raw coordinates (``raw``, per-node ``shift``), and the kernels' copies: ``theta``
    (native parameters of non-categorical layers) and ``cnorm`` (per categorical node, the
    constant ``c`` of ``log theta = raw + c``; categorical layers keep no native copy).
    Contiguous categorical layers go through the generated ``cat_em`` kernel (one pass, which
    also zeroes their statistics) when ``kernels`` is given; the caller zeroes the rest."""
    updates = []
    for tb, ns, c in zip(tables, nstats, cnorm):
        ly = tb.layer
        if not ly.param_size or ly.dist == "indicator":
            continue
        if kernels is not None and ly.dist == "categorical" and tb.span is not None:
            K = ly.param_size
            kernels.cat_em[(-(-ly.n // CAT_BN),)](
                raw, tb.nodes(shift), c, counts, ns, tb.span[0], ly.n, float(step),
                float(pseudocount), K=K, KP=1 << max(0, (K - 1).bit_length()), BN=CAT_BN)
            continue
        native, stats = _em_stats(tb, ns, theta, raw, shift, counts)
        if ly.dist == "masked_categorical":
            new = masked_em(tb.ukeep, native, stats, step, pseudocount)
        else:
            new = fam.em_update(ly.dist, native, stats, step, pseudocount, attrs=tb.attrs)
        updates.append((tb, c, new))
    for tb, c, new in updates:  # write after reading: tied rows update once
        r, s = fam.to_raw_tensor(tb.layer.dist, new)
        tb.put(raw, r)
        if tb.layer.dist == "categorical":
            _categorical_norm(tb, r, s[:, 0], c, shift)
        else:
            tb.put(theta, new)
            if tb.layer.dist == "masked_categorical":  # (a table EM normalizes: shift 0)
                tb.nodes(shift).copy_(tb.per_node(s[:, 0]))


def _categorical_norm(tb: InputTables, r: Tensor, s: Tensor, c: Tensor,
                      shift: Tensor | None = None) -> None:
    """Per-node ``c = shift - logsumexp(raw row)`` from the distinct rows' raw coordinates
    ``r [u, size]`` and log-normalizers ``s [u]``; also the per-node ``shift`` when given
    (after an EM update; a refresh leaves it as it is)."""
    lse = torch.logsumexp(r, dim=1)
    cu = torch.where(torch.isfinite(lse) & (s > -torch.inf), s - lse, -torch.inf)
    per_node = (lambda v: v) if tb.span is not None else (lambda v: v[tb.inv])
    if shift is not None:
        tb.nodes(shift).copy_(per_node(s))
    c.copy_(per_node(cu))


def native_params(tables: list[InputTables], raw: Tensor, shift: Tensor, theta: Tensor,
                  cnorm: list[Tensor]) -> None:
    """The kernels' copies from the raw coordinates, in place: ``theta`` (native, linear) of
    non-categorical layers, ``cnorm`` of categorical ones."""
    for tb, c in zip(tables, cnorm):
        ly = tb.layer
        if not ly.param_size:
            continue
        if ly.dist == "categorical":
            _categorical_norm(tb, tb.urows(raw), tb.ushift(shift)[:, 0], c)
        elif ly.dist == "masked_categorical":
            tb.put(theta, masked_probs(tb.urows(raw), tb.ukeep) * torch.exp(tb.ushift(shift)))
        else:
            tb.put(theta, fam.to_native(ly.dist, tb.urows(raw), tb.ushift(shift)))
