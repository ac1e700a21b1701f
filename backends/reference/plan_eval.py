"""Reference evaluation of an L3 :class:`~pccc.ir.plan.KernelPlan` (float64 numpy).

A literal reading of the semantics in :mod:`pccc.ir.plan`, block by block: the oracle that
checks the lowering passes and that the torch and Triton backends are compared with.
"""

from __future__ import annotations

import numpy as np

from pccc.backends.reference.evaluate import _logsumexp, continuous_vars, missing_mask
from pccc.ir import dists
from pccc.ir.plan import InputLayer, KernelPlan, ProductLayer, SumLayer


def _input_values(plan: KernelPlan, ly: InputLayer, x: np.ndarray, miss: np.ndarray
                  ) -> np.ndarray:
    cls = dists.get(ly.dist)
    attrs = dict(ly.attrs)
    out = np.empty((ly.n, x.shape[0]))
    for i in range(ly.n):
        v = int(ly.vars[i])
        col = np.where(miss[:, v], 0, x[:, v])
        if ly.dist == "indicator":
            assert ly.values is not None
            a = dict(attrs, values=(int(ly.values[i]),))
            lp = cls.log_prob(None, a, col, 1)[:, 0]
        else:
            p = plan.input_params[ly.param_start[i]: ly.param_start[i] + ly.param_size]
            own = cls.node_attrs(attrs, i)  # (a hyperparameter with one entry per node)
            shape = cls.param_shape(1, own)
            assert shape is not None
            lp = cls.log_prob(p.reshape(shape), own, col, 1)[:, 0]
        out[i] = np.where(miss[:, v], 0.0, lp)
    return out


def plan_node_values(plan: KernelPlan, x: np.ndarray, missing: np.ndarray | None = None
                     ) -> np.ndarray:
    """The whole node buffer ``[num_node_slots, N]`` after the forward pass."""
    x = np.asarray(x)
    if missing is None:
        pairs = ((int(v), ly.dist) for ly in plan.input_layers for v in ly.vars)
        missing = missing_mask(x, continuous_vars(pairs, x.shape[1]))
    miss = missing
    node = np.full((plan.num_node_slots, x.shape[0]), -np.inf)
    node[0] = 0.0
    for ly in plan.input_layers:
        node[ly.node_start: ly.node_start + ly.n] = _input_values(plan, ly, x, miss)
    elem = np.zeros((0, x.shape[0]))
    with np.errstate(divide="ignore"):
        logw = np.log(plan.params)
    for layer in plan.layers:
        if isinstance(layer, ProductLayer):
            elem = np.full((layer.num_elem_slots, x.shape[0]), -np.inf)
            for pp in layer.partitions:
                elem[pp.elem_start: pp.elem_start + pp.num_elems] = node[pp.children].sum(axis=1)
            continue
        assert isinstance(layer, SumLayer)
        for sp in layer.partitions:
            B, C = sp.block_size, sp.chunk_size
            for b in range(sp.num_blocks):
                kids = np.concatenate([elem[s: s + C] for s in sp.chunk_start[b]])  # [nc*C, N]
                w = np.concatenate([logw[p: p + B * C].reshape(B, C)
                                    for p in sp.param_start[b]], axis=1)  # [B, nc*C]
                s0 = sp.node_start[b]
                node[s0: s0 + B] = _logsumexp(w[:, :, None] + kids[None, :, :], axis=1)
    return node


def plan_log_likelihood(plan: KernelPlan, x: np.ndarray, missing: np.ndarray | None = None
                        ) -> np.ndarray:
    """``log p(x)`` per example computed from the plan: float64 ``[N]``, or ``[N, num_roots]``
    for a plan of several roots."""
    node = plan_node_values(plan, x, missing)
    if plan.num_roots == 1:
        return node[plan.root_slot]
    return node[plan.root_slot: plan.root_slot + plan.num_roots].T.copy()
