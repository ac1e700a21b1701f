"""``CompiledCircuit``: a :class:`~pccc.ir.plan.KernelPlan` as a ``torch.nn.Module``, one
class for every backend.

The module owns what the backends share: the parameters and their buffers, the EM statistics'
bookkeeping, the input layers' tables, reading the parameters back and saving, and the
autograd glue of input values fed from outside. It holds an executor (``model.executor``, see
:mod:`pccc.backends.executor`) that computes: the torch backend's
(:class:`~pccc.backends.torch.executor.TorchExecutor`, index tables and batched tensor ops)
or the Triton backend's (:class:`~pccc.backends.triton.compiled.TritonExecutor`, generated
kernels). Backends do not subclass the module.

Parametrization (what ``torch.optim`` sees; see ``docs/usage.md``):

- ``sum_logits``: flat ``nn.Parameter`` over the plan's weight buffer. The weight of edge ``p``
  in normalization group ``g`` (one source sum node) is
  ``exp(sum_logits[p]) / sum_{q in g} exp(sum_logits[q]) * Z_g`` with ``Z_g`` the buffer
  ``sum_norm`` (1 for normalized circuits; it keeps unnormalized weights exactly as written).
- ``input_raw``: flat ``nn.Parameter`` over the plan's input parameters, in per-family
  unconstrained coordinates (:mod:`pccc.backends.torch.inputs`); the buffer ``input_shift``
  holds one log-normalizer per input node (layer ``i``'s nodes from ``_in_node0[i]``: a
  categorical table's total mass, 0 for normalized tables).

The forward pass (input layers included) runs under one :class:`torch.autograd.Function`
with no autograd graph over the nodes; its backward pass computes flows
(:mod:`pccc.backends.torch.layers`) and returns the exact gradients: ``d log p / d log w`` is
an edge's flow, and the input parameters' gradients follow analytically from the input nodes'
flows (:func:`pccc.backends.torch.inputs.grad_and_stats`). Backward also accumulates the EM
statistics (``sum_flows``, ``input_counts``, ``input_stats``, ``input_missflow``) with a root
flow of 1 per example, until :meth:`CompiledCircuit.zero_flows` or an EM step.

A root vector of ``n > 1`` nodes makes the output ``[batch, n]``. Its EM statistics give every
root flow 1 per example (the sum of the roots' flows); its gradients follow the upstream
gradient of each root. Where that gradient is the same for every root of an example
(``ll.sum()``, ``ll.mean()``) one backward pass computes both; otherwise the gradients take a
pass per sign with the upstream gradients as the roots' flows
(:meth:`CompiledCircuit.root_grad_pieces`) and, when flows are tracked, the EM statistics a
pass of their own.

Reads of the parameters and of the buffers an EM step writes (``model.sum_logits``,
``state_dict()``, ``parameters()``, ...) first order the current stream after any EM step the
executor runs in flight (:meth:`Executor.settle`): the accessors of :mod:`pccc.backends.settled`,
properties and plain method overrides that call it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pccc.backends.batch import Batch
from pccc.backends.circuit_function import _CircuitFunction
from pccc.backends.executor import Executor
from pccc.backends.input_flows import InputFlowsMixin
from pccc.backends.params import ParamsMixin
from pccc.backends.reference.evaluate import Semiring
from pccc.backends.settled import SettledModule
from pccc.backends.torch import inputs as fam
from pccc.ir import dists
from pccc.ir.plan import KernelPlan
from pccc.ir.plan_verify import check_once

__all__ = ["Batch", "CompiledCircuit", "_CircuitFunction"]


class CompiledCircuit(ParamsMixin, InputFlowsMixin, SettledModule):
    """A compiled probabilistic circuit: ``model(x) -> log p(x)`` per example.

    Args:
        plan: the L3 plan (kept as ``model.plan``).
        device: where parameters and index tables live.
        dtype: float32 (default) or float64.
        executor: what computes (default: the torch backend's
            :class:`~pccc.backends.torch.executor.TorchExecutor`).

    Example::

        model = pccc.compile(circuit, backend="torch")
        ll = model(torch.tensor([[0, 1, -1]]))   # -1: missing, marginalized
        ll.mean().backward()                       # gradients + EM flows
    """

    # (the torch executor's index tables, registered on the module so that .to() moves them)
    product_layers: nn.ModuleList
    sum_layers: nn.ModuleList
    dead_nodes: Tensor
    flow_zero_rows: Tensor
    dense_idx: Tensor
    dense_pos: Tensor
    sum_group: Tensor
    group_size: Tensor

    def __init__(self, plan: KernelPlan, *, device: Any = None, dtype: Any = torch.float32,
                 executor: Executor | None = None):
        super().__init__()
        check_once(plan)  # (no table is read before the plan's structure is checked)
        if executor is None:
            from pccc.backends.torch.executor import TorchExecutor

            executor = TorchExecutor()
        self.executor = executor
        self.plan = plan
        self.root_slot = plan.root_slot
        self.num_roots = plan.num_roots
        self.track_flows = True
        #: keep the product layers' values from forward to backward (else recomputed)
        self.keep_elements = True
        #: compute the parameters' gradients in backward; EM-only training may turn this off
        #: (an executor then accumulates flows and statistics only, where it can)
        self.param_grads = True
        self.source_circuit: Any = None
        self.pipeline: str | None = None
        self.backend_name = executor.name
        self.num_vars = plan.num_vars
        self._continuous = any(dists.get(ly.dist).continuous for ly in plan.input_layers)
        #: the continuous variables, whose -1 is a value (missing: NaN only)
        self._cont_vars = np.zeros(plan.num_vars, dtype=bool)
        for il in plan.input_layers:
            if dists.get(il.dist).continuous:
                self._cont_vars[np.asarray(il.vars, dtype=np.int64)] = True
        executor.init_params(self, plan)
        self.to(device=device, dtype=dtype)

    @property
    def artifacts(self) -> dict[str, str]:
        """Text of each stage: the plan summary, and the executor's (options, kernels...)."""
        return {"plan": self.plan.summary(), **self.executor.artifacts(self)}

    @property
    def options(self) -> Any:
        """The backend's options value (the Triton backend's ``TritonOptions``; None for a
        backend without options)."""
        return self.executor.options

    @property
    def torch_layers(self) -> bool:
        """Whether the executor keeps the torch layers' index tables (see
        :meth:`layer_pairs`)."""
        return self.executor.torch_layers

    def layer_pairs(self) -> list[Any]:
        """The torch executor's (product layer, its sum partitions) in evaluation order."""
        return self.executor.layer_pairs(self)

    # (straight from nn.Module's table: reading the device and dtype waits for nothing)
    @property
    def dtype(self) -> torch.dtype:
        return self._parameters["sum_logits"].dtype  # type: ignore[union-attr]

    @property
    def device(self) -> torch.device:
        return self._parameters["sum_logits"].device  # type: ignore[union-attr]

    # ------------------------------------------------------------------ data
    def prepare(self, x: Tensor, missing: Tensor | None = None) -> Batch:
        """The batch as the input layers read it (see :class:`Batch`).

        Missing: NaN (float data), or ``-1`` on a discrete variable (on a continuous one
        ``-1.0`` is a value), unless ``missing`` is given.
        """
        x = torch.as_tensor(x, device=self.device)
        if x.dim() != 2 or x.shape[1] < self.num_vars:
            raise ValueError(f"expected data of shape [batch, {self.num_vars}], got "
                             f"{tuple(x.shape)}")
        if missing is None:
            miss = x == -1
            if self._continuous:
                cont = np.zeros(x.shape[1], dtype=bool)
                cont[: self.num_vars] = self._cont_vars
                miss = miss & ~torch.from_numpy(cont).to(x.device)
            if x.is_floating_point():
                miss = miss | torch.isnan(x)
        else:
            miss = torch.as_tensor(missing, device=self.device, dtype=torch.bool)
        any_missing = bool(miss.any())
        xt = x.t()
        xd = xt.to(torch.int64) if x.is_floating_point() else xt.long()
        xc = xt.to(self.dtype) if self._continuous else None
        if any_missing:
            mt = miss.t()
            xd = torch.where(mt, torch.zeros((), dtype=torch.int64, device=self.device), xd)
            if xc is not None:
                xc = torch.where(mt, torch.zeros((), dtype=self.dtype, device=self.device), xc)
        return Batch(xd.contiguous(), None if xc is None else xc.contiguous(),
                     miss.t().contiguous() if any_missing else None)

    # --------------------------------------------------------------- forward
    def forward(self, x: Tensor, missing: Tensor | None = None, *,
                input_logp: Tensor | None = None) -> Tensor:
        """``log p(x)`` per example, ``[batch]`` (``[batch, n]`` for a root vector of ``n > 1``
        nodes, one column per root); missing values are marginalized.

        Args:
            x: ``[batch, num_vars]`` int64 (``-1`` = missing) or float data (NaN = missing;
                ``-1`` too on a discrete variable, while on a continuous one it is a value).
            missing: optional bool mask overriding that convention.
            input_logp: optional ``[batch, num_input_nodes]`` log-probabilities fed from
                outside (e.g. a neural network), in the order of :meth:`input_nodes`; they
                replace the input distributions and receive gradients.
        """
        if input_logp is None:
            return self.executor.forward(self, x, missing)
        data = self.prepare(x, missing)
        logw = self.log_weights()
        return _CircuitFunction.apply(self, data, False, logw, *self._split_external(input_logp))

    def _split_external(self, input_logp: Tensor) -> list[Tensor]:
        cols = input_logp.to(self.dtype).t()
        out, start = [], 0
        for ly in self.plan.input_layers:
            out.append(cols[start: start + ly.n])
            start += ly.n
        if start != cols.shape[0]:
            raise ValueError(f"input_logp has {cols.shape[0]} columns; expected {start}")
        return out

    def input_nodes(self) -> list[tuple[str, int]]:
        """``(family, variable)`` of each input node, the column order of ``input_logp``."""
        return [(ly.dist, int(v)) for ly in self.plan.input_layers for v in ly.vars]

    def data_rows(self, data: Batch, i: int) -> tuple[Tensor, Tensor, Tensor | None]:
        group = self._in_group.get(i)
        if group is None:
            return data.rows(i, getattr(self, f"in_vars{i}"))
        return data.rows(i, getattr(self, f"in_vars{i}"), getattr(self, f"in_uvars{i}"),
                         group[1])

    def input_values(self, data: Batch) -> list[Tensor]:
        """Differentiable log-values ``[n, batch]`` of each input layer (0 where missing)."""
        out = []
        for i, ly in enumerate(self.plan.input_layers):
            xd, xc, m = self.data_rows(data, i)
            raw, shift = self.layer_raw(i)
            lp = fam.log_prob(ly.dist, dict(ly.attrs), raw, shift,
                              getattr(self, f"in_values{i}", None), xd, xc, saved=data.saved,
                              key=i)
            out.append(lp if m is None else torch.where(m, torch.zeros_like(lp), lp))
        return out

    def root_output(self, node: Tensor) -> Tensor:
        """The roots' rows of a node buffer ``[slots, batch]`` as the module's output (a new
        tensor): ``[batch]`` for one root, ``[batch, num_roots]`` for several."""
        if self.num_roots == 1:
            return node[self.root_slot].clone()
        return node[self.root_slot: self.root_slot + self.num_roots].t().contiguous()

    def root_grad_pieces(self, grad: Tensor) -> list[tuple[Tensor, Tensor | None]]:
        """The backward passes that the upstream gradient of :meth:`root_output` takes, as
        ``(scale, root_flow)``: the per-example weight of the flows ``[batch]`` and the roots'
        flows ``[num_roots, batch]`` (None: 1 for every root). The gradients of the passes
        add up. One pass with root flows 1 where the gradient is the same for every root of
        an example (``ll.sum()``, ``ll.mean()``); else one pass per sign (flows are never
        negative): the positive part with ``scale`` 1, the negative one with ``scale`` -1."""
        if grad.dim() == 1:
            return [(grad, None)]
        if bool((grad == grad[:, :1]).all()):  # (the usual case)
            return [(grad[:, 0].contiguous(), None)]
        pieces: list[tuple[Tensor, Tensor | None]] = []
        for sign in (1.0, -1.0):
            part = (grad * sign).clamp_min(0.0)
            if bool((part > 0).any()):
                pieces.append((torch.full_like(grad[:, 0], sign), part.t().contiguous()))
        return pieces

    def run_forward(self, logw: Tensor, in_vals: list[Tensor],
                    keep: list[Tensor] | None = None, semiring: Semiring = "sum") -> Tensor:
        """The node buffer ``[num_node_slots, batch]`` for the input layers' log-values
        ``in_vals`` (no autograd), computed by the executor.

        ``keep``: a list that receives each product layer's element buffer, so the backward
        pass need not recompute them (``keep_elements``; memory for time). ``semiring``:
        ``"sum"`` (log-likelihoods) or ``"max"`` (max-product, for MPE: sums take their
        largest weighted child; the input values are the caller's, see :mod:`pccc.query`).
        """
        return self.executor.run_forward(self, logw, in_vals, keep, semiring)

    def run_backward(self, node: Tensor, logw: Tensor, grad: Tensor, *, track_em: bool,
                     elems: list[Tensor] | None = None, root_flow: Tensor | None = None
                     ) -> tuple[Tensor, list[Tensor]]:
        """Node flows ``[slots, batch]`` (root flow 1) and parameter flows, computed by the
        executor.

        ``elems``: the element buffers kept by :meth:`run_forward` (else recomputed).
        ``grad``: ``[batch]`` weights of the examples in the gradient. ``root_flow``: the
        roots' flows ``[num_roots, batch]`` (default: 1 each; the EM flows follow them too).

        Returns ``(node_flow, [grad w.r.t. log-weights, EM flows])`` (the second only when
        ``track_em``).
        """
        return self.executor.run_backward(self, node, logw, grad, track_em=track_em,
                                          elems=elems, root_flow=root_flow)

    # ------------------------------------------------------------ parameters
    def log_weights(self) -> Tensor:
        """Flat log sum weights (differentiable; padding ``-inf``), per-group normalized."""
        return self.executor.log_weights(self)

    def group_sums(self, x: Tensor) -> Tensor:
        """``[num_groups + 1]`` per-group sums of flat weight values (last: padding)."""
        return self.executor.group_sums(self, x)

    def set_weights(self, w: Tensor) -> None:
        """Write linear sum weights (flat, padding ignored); logits stay consistent."""
        self.executor.set_weights(self, w)

    def current_weights(self) -> np.ndarray:
        """The flat linear sum weights as the module computes them (float64, on the host)."""
        return self.executor.current_weights(self)

    # -------------------------------------------------------------------- EM
    def em_step(self, step_size: float, pseudocount: float) -> None:
        """One EM step from the accumulated statistics (weights and inputs); then they are
        zeroed."""
        self.executor.em_step(self, float(step_size), float(pseudocount))

    def em_statistics(self) -> list[Tensor]:
        """The EM statistics accumulated since the last EM step, the tensors :meth:`em_step`
        reads: edits in place (a sum over processes, :mod:`pccc.distributed`) reach it."""
        return self.executor.em_statistics(self)

    def zero_flows(self) -> None:
        """Forget the EM statistics accumulated since the last EM step."""
        self.executor.zero_flows(self)

