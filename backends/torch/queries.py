"""Queries on a compiled module: conditionals from its flows pass, and the top-down decoding
pass of sampling and MPE over the plan's layers.

- :func:`conditional` runs the module's own forward pass with the evidence and its backward
  flows pass (:meth:`CompiledCircuit.run_forward` / ``run_backward``: the Triton kernels for a
  Triton module), then adds up ``flow_i * p_i(k)`` over the input nodes ``i`` of each variable
  (see :mod:`pccc.backends.reference.queries` for why that is ``p(e, X_v = k) / p(e)``).
- :func:`decode` is the top-down pass: from the root, each reached sum node of a block picks
  one element column, drawn with probability ``w_c * value_c / value`` (Gumbel-max) or the
  first largest ``log w_c + value_c`` (MPE, on max-product values); the product layers pass
  the choice to every child with the flows pass's own scatter
  (:meth:`TorchProductLayer.backward_flows`). Reached nodes hold 1 in a ``[slots, batch]``
  buffer, all others 0. It reads the torch layers' index tables; a Triton module samples and
  decodes in its own kernels (:mod:`pccc.backends.triton.queries`).
- :func:`complete` gives each missing variable the value of the input node its row reached: a
  draw from the node's distribution, or its mode.

Every function here runs under ``torch.no_grad`` and leaves the module's EM statistics alone.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pccc.backends.module import Batch, CompiledCircuit
from pccc.backends.params import _var_groups
from pccc.backends.reference.evaluate import Semiring
from pccc.backends.torch import inputs as fam
from pccc.backends.torch.layers import TorchSumPartition
from pccc.ir import dists

#: values of the largest temporary of a choice or of a conditional's accumulation
CHUNK_VALUES = 1 << 24


def layer_card(model: CompiledCircuit, i: int) -> int | None:
    """The number of values of input layer ``i``'s variables (None: continuous)."""
    ly = model.plan.input_layers[i]
    return dists.get(ly.dist).cardinality(dict(ly.attrs))


def leaf_table(model: CompiledCircuit, i: int) -> Tensor:
    """``log p(X = k)`` of each node of discrete input layer ``i`` at every value ``k``:
    ``[n, card]``, by the family's own log-probability."""
    ly = model.plan.input_layers[i]
    card = layer_card(model, i)
    assert card is not None, "a continuous input layer has no table"
    raw, shift = model.layer_raw(i)
    xd = torch.arange(card, device=model.device).expand(ly.n, card).contiguous()
    return fam.log_prob(ly.dist, dict(ly.attrs), raw.detach(), shift,
                        getattr(model, f"in_values{i}", None), xd, xd.to(model.dtype))


def leaf_modes(model: CompiledCircuit, i: int) -> tuple[Tensor, Tensor]:
    """``(mode, log p(mode))`` of each node of input layer ``i``, ``[n]`` each: the first
    largest value of a discrete node, a Gaussian's mean (with its density there)."""
    ly = model.plan.input_layers[i]
    if layer_card(model, i) is not None:
        value, mode = leaf_table(model, i).max(dim=1)
        return mode, value
    raw, shift = model.layer_raw(i)
    mu = fam.to_native(ly.dist, raw.detach(), shift)[:, :1]
    lp = fam.log_prob(ly.dist, dict(ly.attrs), raw.detach(), shift, None,
                      torch.zeros_like(mu, dtype=torch.int64), mu)
    return mu[:, 0], lp[:, 0]


def forward_inputs(model: CompiledCircuit, x: Tensor, semiring: Semiring = "sum"
                   ) -> tuple[Batch, Tensor, list[Tensor]]:
    """``(batch, log-weights, input layers' log-values)`` of a forward pass over ``x`` in
    ``semiring``. In max-product an input node over a missing variable takes its mode's
    value, not 1."""
    data = model.prepare(x)
    logw = model.log_weights().detach()
    vals = [v.detach() for v in model.input_values(data)]
    if semiring == "max" and data.miss is not None:
        for i in range(len(vals)):
            miss = model.data_rows(data, i)[2]
            if miss is not None:
                vals[i] = torch.where(miss, leaf_modes(model, i)[1][:, None], vals[i])
    return data, logw, vals


def forward(model: CompiledCircuit, x: Tensor, semiring: Semiring = "sum"
            ) -> tuple[Batch, Tensor, Tensor]:
    """``(batch, log-weights, node buffer)`` of a forward pass over ``x`` in ``semiring``
    (input values as :func:`forward_inputs` gives them)."""
    data, logw, vals = forward_inputs(model, x, semiring)
    return data, logw, model.run_forward(logw, vals, None, semiring)


def _add_posterior(out: Tensor, flow: Tensor, prob: Tensor, vars_: np.ndarray,
                   var_t: Tensor) -> None:
    """``out[v, b, k] += sum over nodes i of v of flow[i, b] * prob[i, k]`` (``out``:
    ``[V, batch, card]``): one batched product where the nodes come in runs of one variable,
    else over batch chunks."""
    n, batch = flow.shape
    card = prob.shape[1]
    groups = _var_groups(vars_)
    if groups is not None:
        g, u = groups
        part = torch.bmm(flow.view(g, u, batch).transpose(1, 2), prob.view(g, u, card))
        out.index_add_(0, var_t[::u].contiguous(), part)
        return
    step = max(1, CHUNK_VALUES // max(n * card, 1))
    for b in range(0, batch, step):
        part = flow[:, b: b + step, None] * prob[:, None, :]  # [n, chunk, card]
        out[:, b: b + step].index_add_(0, var_t, part)


@torch.no_grad()
def conditional(model: CompiledCircuit, x: Tensor, num_values: int) -> Tensor:
    """``log p(X_v = k | e)``: ``[batch, V, num_values]`` in the module's dtype (see
    :mod:`pccc.query` for the conventions)."""
    data, logw, node = forward(model, x)
    batch = node.shape[1]
    live = torch.isfinite(node[model.root_slot]).clone()
    ones = torch.ones(batch, dtype=node.dtype, device=node.device)
    flow, _ = model.run_backward(node, logw, ones, track_em=False)
    out = torch.zeros((model.num_vars, batch, num_values), dtype=flow.dtype, device=flow.device)
    for i, ly in enumerate(model.plan.input_layers):
        card = layer_card(model, i)
        assert card is not None, "conditionals of continuous variables are refused earlier"
        f = flow[ly.node_start: ly.node_start + ly.n]
        _add_posterior(out[:, :, :card], f, torch.exp(leaf_table(model, i)).to(f.dtype),
                       ly.vars, getattr(model, f"in_vars{i}"))
    total = out.sum(dim=2, keepdim=True)
    ok = total > 0
    res = torch.where(ok, torch.log(out) - torch.log(torch.where(ok, total, 1.0)), -math.inf)
    res = res.permute(1, 0, 2).contiguous()  # [batch, V, K]
    obs = torch.ones_like(res[:, :, 0], dtype=torch.bool) if data.miss is None else \
        ~data.miss.t()
    b, v = torch.nonzero(obs, as_tuple=True)
    res[b, v] = -math.inf
    res[b, v, data.xd[v, b]] = 0.0
    res[~live] = -math.inf
    return res


def _gumbel_argmax(scores: Tensor, gen: torch.Generator | None) -> Tensor:
    """Per row of ``scores`` ``[P, m]``: a column drawn in proportion to ``exp(score)``
    (``gen`` given), or the first largest one."""
    if gen is None:
        return scores.argmax(dim=1)
    u = torch.rand(scores.shape, generator=gen, dtype=scores.dtype, device=scores.device)
    return (scores - torch.log(-torch.log(u))).argmax(dim=1)


def _choose(part: TorchSumPartition, elem: Tensor, logw: Tensor, sel: Tensor, esel: Tensor,
            gen: torch.Generator | None) -> None:
    """Each reached node of the partition marks one element column in ``esel``."""
    rows = part.nb * part.B
    s = part._take(sel, "node_idx", rows).view(part.nb, part.B, -1)
    idx = torch.nonzero(s > 0)  # [P, 3]: block, row, example
    if idx.shape[0] == 0:
        return
    lw = part.weights(logw)  # [nb, B, K] (padding -inf)
    e = part.elements(elem)  # [nb, K, batch]
    eidx = part.elem_idx.view(part.nb, part.K)
    step = max(1, CHUNK_VALUES // part.K)
    for a in range(0, idx.shape[0], step):
        blk, row, b = idx[a: a + step].unbind(1)
        scores = lw[blk, row] + e[blk, :, b]  # [p, K]
        if not part.all_real:
            scores = torch.where(part.real_col[blk], scores, -math.inf)
        col = _gumbel_argmax(scores, gen)
        esel[eidx[blk, col], b] = 1.0


@torch.no_grad()
def decode(model: CompiledCircuit, node: Tensor, logw: Tensor, gen: torch.Generator | None
           ) -> Tensor:
    """The reached nodes ``[slots, batch]`` (1 or 0) of the top-down pass over ``node``:
    sum-product values with the evidence (``gen`` given: sampling) or max-product values
    (``gen`` None: MPE). Rows whose root value is ``-inf`` reach nothing."""
    assert model.torch_layers, "decoding reads the torch layers' index tables"
    sel = torch.zeros_like(node)
    sel[model.root_slot] = torch.isfinite(node[model.root_slot]).to(node.dtype)
    pairs = model.layer_pairs()
    for k in range(len(pairs) - 1, -1, -1):
        prod, parts = pairs[k]
        elem = prod(node)
        esel = torch.zeros_like(elem)
        for part in parts:
            _choose(part, elem, logw, sel, esel, gen)
        prod.backward_flows(esel, sel)
    return sel


def _leaf_values(model: CompiledCircuit, i: int, nodes: Tensor, gen: torch.Generator | None
                 ) -> Tensor:
    """A value for each reached node of input layer ``i`` (``nodes``: node per pair)."""
    if gen is None:
        return leaf_modes(model, i)[0][nodes]
    ly = model.plan.input_layers[i]
    if layer_card(model, i) is None:
        native = fam.to_native(ly.dist, *model.layer_raw(i)).detach()[nodes]
        z = torch.randn(nodes.shape, generator=gen, dtype=native.dtype, device=native.device)
        return native[:, 0] + native[:, 1] * z
    table = leaf_table(model, i)
    step = max(1, CHUNK_VALUES // table.shape[1])
    return torch.cat([_gumbel_argmax(table[nodes[a: a + step]], gen)
                      for a in range(0, nodes.shape[0], step)])


@torch.no_grad()
def complete(model: CompiledCircuit, x: Tensor, data: Batch, sel: Tensor,
             gen: torch.Generator | None) -> Tensor:
    """``x`` with each missing value set by the input node its row reached: int64, or
    float64 where the circuit has a continuous variable (missing: NaN). Values no row
    reached (impossible evidence, variables outside the circuit) stay missing."""
    continuous = any(layer_card(model, i) is None for i in range(len(model.plan.input_layers)))
    out = x.to(torch.float64 if continuous else torch.int64, copy=True)
    if data.miss is None:
        return out
    miss = data.miss
    if continuous:
        out[miss.t()] = math.nan
    for i, ly in enumerate(model.plan.input_layers):
        nodes, b = torch.nonzero(sel[ly.node_start: ly.node_start + ly.n] > 0, as_tuple=True)
        v = getattr(model, f"in_vars{i}")[nodes]
        free = miss[v, b]
        nodes, b, v = nodes[free], b[free], v[free]
        if nodes.shape[0]:
            out[b, v] = _leaf_values(model, i, nodes, gen).to(out.dtype)
    return out


@torch.no_grad()
def sample(model: CompiledCircuit, evidence: Tensor, gen: torch.Generator,
           values: CompiledCircuit | None = None) -> tuple[Tensor, Tensor]:
    """One exact draw from ``p(x | e)`` per row of ``evidence``, and ``log p(e)`` per row.
    ``values``: the module whose forward pass gives the node values (a Triton module of the
    same plan: its kernels), decoded with ``model``'s layers; default ``model``."""
    src = model if values is None else values
    data, logw, node = forward(src, evidence)
    ll = node[model.root_slot].clone()
    sel = decode(model, node, logw, gen)
    if src is not model:
        data = model.prepare(evidence)
    return complete(model, evidence, data, sel, gen), ll


@torch.no_grad()
def mpe(model: CompiledCircuit, x: Tensor) -> tuple[Tensor, Tensor]:
    """The max-product completion of each row and its ``log p`` (a sum-product pass)."""
    data, logw, node = forward(model, x, "max")
    out = complete(model, x, data, decode(model, node, logw, None), None)
    _, _, node = forward(model, out)
    return out, node[model.root_slot].clone()


#: the torch module of each module without torch layers, made at its first query
_TWINS: weakref.WeakKeyDictionary[Any, CompiledCircuit] = weakref.WeakKeyDictionary()


def twin(model: Any) -> CompiledCircuit:
    """A torch module of ``model``'s plan holding its current state, for a module whose own
    kernels lack a query's passes (the Triton one's top-down pass and max-product forward):
    made once per module and device, its state refreshed at every call."""
    out = _TWINS.get(model)
    if out is None or out.device != model.device:
        out = CompiledCircuit(model.plan, device=model.device, dtype=model.dtype)
        _TWINS[model] = out
    if not out.load_exact_state(model.exact_state()):
        raise AssertionError("the module's state does not fit a torch module of its plan")
    return out
