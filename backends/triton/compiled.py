"""``TritonExecutor``: a :class:`~pccc.backends.module.CompiledCircuit` run end to end by
generated Triton kernels (the Triton backend's executor, see :mod:`pccc.backends.executor`).

Parameters are the module's (``sum_logits``, ``input_raw``: what ``torch.optim`` and
``state_dict`` see). The kernels read linear copies, ``w`` (sum weights) and ``theta`` (native
parameters of non-categorical input layers; categorical tables are read from ``input_raw``
itself as ``log theta = raw + c``, ``c`` one constant per node), refreshed from the parameters
only when those change (their version
counter: any in-place update through torch, an optimizer step or ``load_state_dict``, is seen;
writes through ``.data`` are not: call ``model.params_changed()`` after them). An EM step
updates both sides at once; in EM-only training on a GPU it runs on a stream of its own
(``overlap.py``).

``model(x)`` runs the input kernels and the sum kernels (products fused in) into a node buffer;
``.backward()`` runs the flow kernels once: node flows, weight gradients, input statistics, and
(when ``track_flows``) the EM flows with root flow 1 per example, whatever the loss's weights
(a uniform loss, ``ll.mean()``, needs no second pass: a device-side flag picks the path, never
a host sync). A circuit of several roots gives each root flow 1 per example in the EM flows;
where the loss weighs the roots of an example differently, the gradients take a pass per sign
with the upstream gradients as the roots' flows, and the EM flows a pass of their own, each
pass after the first after a forward pass again (telling the cases apart costs host syncs, for
circuits of several roots only). Gradients of ``sum_logits`` and ``input_raw`` follow in closed
form. On a GPU each of forward, backward and EM step is recorded once per batch size as a CUDA
graph and replayed (``use_graphs``). ``model.param_grads = False`` skips the parameters'
gradients (EM training reads flows only: two weight-sized passes and the gradients' memory
saved). Buffers
are ``[slots + 1, stride]`` (the extra row holds ``-inf``) for the largest batch seen; smaller
batches use them too.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pccc.backends.executor import Executor
from pccc.backends.module import CompiledCircuit
from pccc.backends.triton import state
from pccc.backends.triton.autograd import _Fused, _LogWeights
from pccc.backends.triton.codegen import load_module
from pccc.backends.triton.em_step import EMSteps
from pccc.backends.triton.external import ExternalInputs
from pccc.backends.triton.graphs import MAX_GRAPHS, PassRunner, _Buffers
from pccc.backends.triton.inputs import (
    InputTables,
    kernel_tables,
    logistic_grads,
    native_params,
    raw_grads,
)
from pccc.backends.triton.lazyjit import canonical_keys
from pccc.backends.triton.options import TritonOptions
from pccc.backends.triton.overlap import EMStream
from pccc.backends.triton.param_init import INIT_CHUNK, ParamInit
from pccc.backends.triton.prejit import enabled as prejit_enabled
from pccc.backends.triton.prejit import fork_workers_early, hash_triton_early
from pccc.backends.triton.runtime import DevicePlan, device_programs
from pccc.backends.triton.upload import start_upload
from pccc.ir.plan import KernelPlan
from pccc.passes.schedule_kernels import schedule_for

__all__ = ["INIT_CHUNK", "MAX_GRAPHS", "TritonCompiledCircuit", "TritonExecutor"]


def TritonCompiledCircuit(plan: KernelPlan, *, device: Any = "cuda",  # noqa: N802
                          options: TritonOptions | None = None, **changes: Any
                          ) -> CompiledCircuit:
    """A :class:`CompiledCircuit` of ``plan`` run by a :class:`TritonExecutor` (the Triton
    backend's factory, without the registry's checks).

    Args:
        plan: the L3 plan.
        device: ``"cuda"`` (or ``"cpu"`` under ``TRITON_INTERPRET=1``).
        options: the backend's options (default: :class:`TritonOptions`' defaults).
        changes: options changed from ``options`` (``precision="fp32"``, ...), validated the
            same way. Buffers and accumulation are float32 whatever the ``precision``.
    """
    opts = options or TritonOptions()
    opts = opts.replace(**changes) if changes else opts
    return CompiledCircuit(plan, device=device, dtype=torch.float32,
                           executor=TritonExecutor(opts, device))


class TritonExecutor(PassRunner, ParamInit, EMSteps, ExternalInputs, Executor):
    """The Triton backend's executor (see the module docstring): the kernels, their device
    tables (``dp``), their copies of the parameters and their static buffers.

    Args:
        options: the backend's options (``artifacts["options"]`` shows them).
        device: ``"cuda"`` (or ``"cpu"`` under ``TRITON_INTERPRET=1``).
    """

    name = "triton"
    dp: DevicePlan

    def __init__(self, options: TritonOptions, device: Any = "cuda"):
        self.options = options
        self.precision = options.precision
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        #: the EM step's stream (CUDA, EM-only training: see ``overlap.py``)
        self.em = EMStream(self.device, options.overlap_em)
        #: the first call of each pass compiles its kernels in parallel first (GPU only:
        #: the interpreter compiles nothing)
        self.parallel_jit = self.device.type == "cuda" and options.parallel_jit
        if self.device.type == "cuda":
            canonical_keys()  # (the same cache keys in every process: see lazyjit)
        if self.parallel_jit:
            hash_triton_early()
        #: compile workers of this module's parallel compiles (0: threads only; see
        #: :meth:`init_params`)
        self.jit_workers = 0
        #: replay each pass as a CUDA graph (see :meth:`_run`)
        self.use_graphs = self.device.type == "cuda" and options.cuda_graphs

    def init_params(self, m: CompiledCircuit, plan: KernelPlan) -> None:
        """The device tables, then the module's parameters, computed on the device in float32
        from the plan's values (uploaded on background threads while the kernels load), then
        the kernels' copies of them and the EM accumulators."""
        opts, dev = self.options, self.device
        upload = start_upload(plan, dev, threads=opts.upload_threads)
        schedule = schedule_for(plan, opts, opts.programs or device_programs(dev))
        # the kernel table from the schedule's parts (their shapes are not grouped again)
        kernels, source, source_path = load_module(plan, opts.precision, schedule.parts)
        if self.parallel_jit and opts.jit_workers and prejit_enabled() and \
                getattr(kernels, "MADE_FRESH", True):
            # a new kernel table: its binaries are not in Triton's cache either, so the
            # workers are worth their forks; a table made before (a warm cache) loads its
            # binaries faster on the threads alone
            self.jit_workers = min(opts.jit_workers, os.cpu_count() or 1)
            fork_workers_early(self.jit_workers)
        self.dp = DevicePlan(plan, kernels, dev, opts, schedule=schedule)
        self.kernels, self.source, self.source_path = kernels, source, source_path
        self.slots = plan.num_node_slots
        m.keep_elements = False
        store, inputs = upload.result()
        self._init_sums(m, plan, store)
        self._inputs_f64: Tensor | None = inputs
        m.init_inputs(plan)  # (reads _inputs_f64 through input_values)
        self._inputs_f64 = None
        self.tables = [InputTables.build(ly, dev, n0)
                       for ly, n0 in zip(plan.input_layers, m._in_node0)]
        raw = m._parameters["input_raw"]
        assert raw is not None
        q = raw.numel()
        # EM statistics in the kernels' layout (the module's are left 1 long)
        self.em_counts = self._zeros(q)
        self.em_nstats = [self._zeros(ly.n, 4) for ly in plan.input_layers]
        # native parameters for the input kernels of non-categorical layers (categorical
        # ones read log theta = raw + c, c per node: no second copy of the largest tables)
        native = any(ly.param_size and ly.dist != "categorical" for ly in plan.input_layers)
        self._theta = self._zeros(q if native else 1)
        if native:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                self._theta.copy_(torch.from_numpy(np.ascontiguousarray(plan.input_params)))
        self._cnorm = [self._zeros(ly.n if ly.dist == "categorical" else 1)
                       for ly in plan.input_layers]
        native_params([tb for tb in self.tables if tb.layer.dist == "categorical"],
                      raw.detach(), m.input_shift,
                      self._theta, [c for c, ly in zip(self._cnorm, plan.input_layers)
                                    if ly.dist == "categorical"])
        #: per-pass gradients and weighted input statistics, made on first need (EM training
        #: without parameter gradients adds straight into the EM accumulators instead)
        self._grad_bufs: tuple[Tensor, Tensor, list[Tensor]] | None = None
        self._sbufs: _Buffers | None = None
        self._graphs: dict[Any, Any] = {}
        self._in_args: list[tuple[Tensor, Tensor]] = []
        self._raw_ptr = -1
        self._input_args(m)
        self._prejitted: set[Any] = set()
        #: each pass's first call: its parallel compile, first run and graph recording (s)
        self.startup_log: list[dict[str, Any]] = []
        self._first_done: set[Any] = set()
        #: the compile workers' summaries, one per parallel compile (option ``jit_workers``)
        self.worker_log: list[dict[str, Any]] = []
        #: in EM training the first forward also compiles the backward it predicts
        self._jit_with_backward = opts.jit_with_backward
        self._em_next = False
        self._stamp = 0
        self._batch = 0
        self._synced: tuple[int, ...] | None = self._param_key(m)
        #: EM steps leave the flows of the weights whose next EM-direct backward stores them
        #: (``DevicePlan.em_zero_tiles``) as they are; ``_flows_owed``: such flows are void
        #: now (zeroed by ``_clear_owed`` before anything else reads or adds to them)
        self._flows_owed = False
        self._em_zero_counts = any(
            tb.layer.param_size and (tb.layer.dist != "categorical" or tb.span is None)
            for tb in self.tables)

    def _scratch(self) -> tuple[Tensor, Tensor, list[Tensor]]:
        """``(pgrad, counts, nstats)`` of one backward pass."""
        if self._grad_bufs is None:
            self._grad_bufs = (torch.zeros_like(self._w), torch.zeros_like(self.em_counts),
                               [self._zeros(ns.shape[0], 4) for ns in self.em_nstats])
        return self._grad_bufs

    def artifacts(self, m: CompiledCircuit) -> dict[str, str]:
        """Text of each stage: the plan summary (with the precision), the options in use
        (:meth:`TritonOptions.to_text`), the kernel schedule and the kernel source."""
        return {"plan": m.plan.summary() + f"\n  precision: {self.precision}",
                "options": self.options.to_text(),
                "schedule": self.dp.schedule_text(),
                "kernels": self.source, "kernels_path": str(self.source_path)}

    # ------------------------------------------------------------ parameters
    def _param_key(self, m: CompiledCircuit) -> tuple[int, ...]:
        # (straight from nn.Module's tables: no wait for an EM step in flight, see overlap.py)
        a, b = m._parameters["sum_logits"], m._parameters["input_raw"]
        assert a is not None and b is not None
        norm, shift = m._buffers["sum_norm"], m._buffers["input_shift"]
        assert norm is not None and shift is not None
        return (a.data_ptr(), a._version, b.data_ptr(), b._version, norm._version,
                shift._version)

    def params_changed(self, m: CompiledCircuit) -> None:
        """Re-read the parameters before the next pass (after writes through ``.data``)."""
        self._synced = None

    def _input_args(self, m: CompiledCircuit) -> list[tuple[Tensor, Tensor]]:
        """Per input layer, the tables its forward kernel reads (see
        :func:`~pccc.backends.triton.inputs.kernel_tables`). When
        ``input_raw`` has new storage (``.data`` replaced) they are rebuilt and the CUDA
        graphs, which hold the old address, dropped."""
        if m.input_raw.data_ptr() != self._raw_ptr:
            raw = m.input_raw.detach()
            self._in_args = [kernel_tables(ly, raw, self._theta, c, inp.logc)
                             for ly, c, inp in zip(m.plan.input_layers, self._cnorm,
                                                   self.dp.inputs)]
            self._raw_ptr = m.input_raw.data_ptr()
            self._graphs.clear()
        return self._in_args

    @torch.no_grad()
    def sync_params(self, m: CompiledCircuit) -> None:
        """Refresh the kernels' linear copies ``w`` and ``theta`` if the parameters changed
        (after the EM step in flight, on the current stream: every reader of ``w`` comes here)."""
        self.em.wait()
        key = self._param_key(m)
        if key == self._synced:
            return
        self._input_args(m)
        if self.owes_logits(m) and (self._synced is None or key[4] != self._synced[4]):
            self.materialize(m)  # (sum_norm was written: w follows it and the logits)
        if not self.owes_logits(m):  # (owed logits were read by no one: w is current)
            self.dp.weights_from_logits(m.sum_logits.detach(), m.sum_norm, self._w)
        native_params(self.tables, m.input_raw.detach(), m.input_shift, self._theta,
                      self._cnorm)
        self._synced = self._param_key(m)

    def log_weights(self, m: CompiledCircuit) -> Tensor:
        """Flat log sum weights (differentiable; padding ``-inf``)."""
        return _LogWeights.apply(m.sum_logits, m, self)

    def group_sums(self, m: CompiledCircuit, x: Tensor) -> Tensor:
        """``[num_groups + 1]`` per-group sums of flat weight values (last: padding, 0)."""
        out = torch.zeros(self.dp.num_groups + 1, dtype=torch.float32, device=self.device)
        self.dp.group_reduce(0, x.float().contiguous(), out)
        return out.to(m.sum_norm.dtype)

    @torch.no_grad()
    def set_weights(self, m: CompiledCircuit, w: Tensor) -> None:
        """Write linear sum weights (flat, padding ignored); logits stay consistent."""
        group = self.dp.group_ids()
        real = group >= 0
        w = torch.where(real, w.to(torch.float32), 0.0)
        z = self.group_sums(m, w)
        gz = z[group.clamp_min(0)]
        m.sum_logits.copy_(torch.where(real & (gz > 0), torch.log(w), 0.0))
        m.sum_norm.copy_(torch.where(z > 0, torch.log(torch.where(z > 0, z, 1.0)), -math.inf))

    # ----------------------------------------------------------------- forward
    def forward(self, m: CompiledCircuit, x: Tensor, missing: Tensor | None) -> Tensor:
        """``log p(x)`` per example (see :meth:`CompiledCircuit.forward`)."""
        x = torch.as_tensor(x, device=self.device)
        if x.dim() != 2 or x.shape[1] < m.num_vars:
            raise ValueError(f"expected data of shape [batch, {m.num_vars}], got "
                             f"{tuple(x.shape)}")
        if m.param_grads and torch.is_grad_enabled():  # (autograd records the logits)
            self.materialize(m)
        # (straight from nn.Module's table; sync_params below waits for an EM step in flight)
        logits, raw = m._parameters["sum_logits"], m._parameters["input_raw"]
        assert logits is not None and raw is not None
        # (read by fused_forward, where autograd has turned grad mode off)
        self._em_next = torch.is_grad_enabled() and m.track_flows and not \
            m.param_grads and (logits.requires_grad or raw.requires_grad) \
            and self._jit_with_backward
        return _Fused.apply(m, self, x, missing, logits, raw)

    def fused_forward(self, m: CompiledCircuit, x: Tensor, missing: Tensor | None) -> Tensor:
        """Fill the node buffer for ``x``; the roots' log-values (:meth:`root_output`)."""
        batch = x.shape[0]
        b = self._static(m, batch)
        xkey = (x.dtype, x.shape[1], missing is not None)
        xin = b.x_in.get(xkey)
        if xin is None:
            xin = b.x_in[xkey] = torch.zeros((b.stride, x.shape[1]), dtype=x.dtype,
                                             device=self.device)
            if missing is not None:
                b.x_in[xkey + ("mask",)] = torch.zeros((b.stride, x.shape[1]), dtype=torch.bool,
                                                       device=self.device)
        xin[:batch].copy_(x)
        mask = None
        if missing is not None:
            mask = b.x_in[xkey + ("mask",)]
            mask[:batch].copy_(torch.as_tensor(missing, device=self.device))

        def run() -> None:
            self.dp.prepare_inputs(xin[:batch], None if mask is None else mask[:batch], b.xt,
                                   b.mt)
            self.dp.forward(b.xt, b.mt, batch, self._w, self._input_args(m), b.node)

        # the backward this forward will be followed by, where it is the EM-only one
        # (where EM steps leave flows to be stored, the backwards after them store: both),
        # and the EM step's kernels
        also = (lambda: [*(self._em_backward(m, batch, st) for st in
                           dict.fromkeys((self._flows_owed, True))), self._em_kernels(m)]) \
            if self._em_next else None
        self._run(m, ("fwd", batch) + xkey, run, also=also)
        self._stamp += 1
        self._batch = batch
        return m.root_output(b.node[:, :batch])

    def fused_backward(self, m: CompiledCircuit, grad: Tensor, want_logits: bool,
                       want_raw: bool, *, root_grad: Tensor | None = None,
                       track: bool | None = None) -> tuple[Tensor | None, Tensor | None]:
        """Flows for the last forward pass under upstream gradient ``grad [batch]``; returns
        the gradients of ``sum_logits`` and ``input_raw`` (None where not wanted).
        ``root_grad``: the roots' flows ``[num_roots, batch]`` (default: 1 each; with them,
        ``grad`` should be 1). ``track``: add the EM statistics (default: ``track_flows``;
        they need the default root flows)."""
        self.em.wait()
        batch = self._batch
        b = self._static(m, batch)
        b.scale[:batch].copy_(grad)
        track = m.track_flows if track is None else track
        roots = None
        if root_grad is not None:
            if b.roots is None:
                b.roots = self._zeros(m.num_roots, b.stride)
            b.roots[:, :batch].copy_(root_grad)
            roots = b.roots[:, :batch]
        dp = self.dp
        if track and not (want_logits or want_raw):  # EM statistics only
            self._run(m, *self._em_backward(m, batch))
            self._flows_owed = False
            self._stamp += 1  # the node buffer now holds flow ratios: a new backward recomputes
            return None, None
        self._clear_owed(m)  # (this pass adds to the EM flows)
        pgrad, counts, nstats = self._scratch()
        flows = m._buffers["sum_flows"]  # (no settling of deferred logits)
        assert flows is not None
        flow = self._training_flow(b)
        fin = b.node if flow is None else flow  # the input nodes' flows

        def run() -> None:
            s = b.scale[:batch]
            if track:  # EM flows need their own sums unless every example weighs the same
                b.flag.copy_((s != s[:1]).any() | (s[0] == 0))
            else:
                b.flag.zero_()
            dp.sum_backward(b.node, flow, b.scale, b.flag, batch, self._w, pgrad, flows,
                            inplace=True, root_flow=roots)
            dp.input_backward(fin, b.xt, b.mt, b.scale, b.flag, batch, counts, nstats,
                              self.em_counts, self.em_nstats)
            if track:
                dp.finish_backward(self._w, pgrad, b.scale, b.flag, flows, m.sum_norm,
                                   None)
                inv = torch.where(b.flag != 0, 0.0, 1.0 / b.scale[:1])
                self.em_counts.addcmul_(counts, inv)
                for acc, ns in zip(self.em_nstats, nstats):
                    acc.addcmul_(ns, inv)

        self._run(m, ("bwd", batch, track, roots is not None), run)
        self._stamp += 1  # the node buffer now holds flow ratios: a new backward recomputes
        dl = dr = None
        if want_logits:
            dl = torch.zeros_like(self._w)
            dp.finish_backward(self._w, pgrad, b.scale, b.flag, None, m.sum_norm, dl)
        if want_raw:
            dr = raw_grads(self.tables, m.input_raw.detach(), m.input_shift, counts,
                           nstats)
            logistic_grads(self.kernels, self.tables, dp.inputs, self._input_args(m), fin,
                           b.xt, b.mt, b.scale, batch, dr)
        return dl, dr

    def node_values(self, batch: int) -> Tensor:
        """Node log-values ``[slots, batch]`` of the last forward pass (until a backward pass:
        it overwrites the sum rows with its flow ratios)."""
        assert self._sbufs is not None
        return self._sbufs.node[: self.slots, :batch]

    def node_flows(self, batch: int) -> Tensor:
        """Node flows ``[slots, batch]`` of the last backward (root flow 1 per example, or
        the roots' upstream gradients: see :meth:`fused_backward`), where it used the flow
        buffer (option ``flows_in_nodes`` off, or a schedule that does not allow it)."""
        assert self._sbufs is not None
        if self.dp.in_nodes or self._sbufs.flow is None:
            raise RuntimeError("node_flows: the last backward kept its flows in the node rows "
                               "(compile with flows_in_nodes=False to read them)")
        return self._sbufs.flow[: self.slots, :batch]
    # ------------------------------------------------------------ exact state
    def current_weights(self, m: CompiledCircuit) -> np.ndarray:
        return state.current_weights(self, m)

    def own_inputs(self, m: CompiledCircuit, native: np.ndarray) -> None:
        state.own_inputs(self, m, native)

    def exact_state(self, m: CompiledCircuit) -> dict[str, Tensor]:
        return state.exact_state(self, m)

    def load_exact_state(self, m: CompiledCircuit, st: dict[str, Tensor], loaded: bool
                         ) -> bool:
        return state.load_exact_state(self, m, st, loaded)
