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
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pccc.backends.executor import Executor
from pccc.backends.module import CompiledCircuit
from pccc.backends.reference.evaluate import Semiring
from pccc.backends.torch import inputs as fam
from pccc.backends.triton import state
from pccc.backends.triton.codegen import load_module
from pccc.backends.triton.inputs import (
    InputTables,
    em_update_inputs,
    kernel_tables,
    logistic_grads,
    native_params,
    raw_grads,
)
from pccc.backends.triton.options import TritonOptions
from pccc.backends.triton.overlap import EMStream
from pccc.backends.triton.prejit import enabled as prejit_enabled
from pccc.backends.triton.prejit import prejit
from pccc.backends.triton.runtime import DevicePlan, device_programs
from pccc.backends.triton.upload import start_upload
from pccc.ir.plan import KernelPlan
from pccc.passes.schedule_kernels import schedule_for

#: CUDA graphs kept per module (one per batch size and phase; the oldest is dropped)
MAX_GRAPHS = 12
#: values per slice when the uploaded input parameters are converted (bounds the float64
#: temporaries on the device)
INIT_CHUNK = 1 << 23


@dataclass
class _Buffers:
    """Static buffers of one column stride (the largest batch seen, rounded up)."""

    stride: int
    node: Tensor
    flow: Tensor
    xt: Tensor
    mt: Tensor
    scale: Tensor
    flag: Tensor
    ones: Tensor
    x_in: dict[Any, Tensor] = field(default_factory=dict)
    roots: Tensor | None = None
    """``[num_roots, stride]``: the roots' flows of a backward pass whose upstream gradient
    differs between the roots of an example (made on first need)"""


def _sum_weights(plan: KernelPlan, dp: DevicePlan, store: Tensor, dev: torch.device
                 ) -> tuple[Tensor, Tensor, Tensor]:
    """``(w, live, z)``: the plan's sum weights on the device in float32 (padding 0), which
    of them belong to a group of positive total, and the groups' totals (``[groups + 1]``,
    the last one for padding), from the uploaded weights ``store`` (see :func:`start_upload`,
    changed in place). Their groups come from the device plan's 64-weight tiles (a tile of
    one group, or a row of per-weight groups): the plan's per-weight group array (155M int64
    on PD-256) is never copied."""
    n, ng = len(plan.params), len(plan.group_size)
    tiles = dp.tiles.long()
    wt = store.view(-1, 64)
    mix = torch.nonzero(tiles <= -2).squeeze(1)
    gm = dp.mixed.long()[-2 - tiles[mix]]  # [mixed tiles, 64] group per weight, -1 padding
    wt[tiles == -1] = 0.0
    wm = torch.where(gm >= 0, wt[mix], 0.0)
    wt[mix] = wm
    uni = torch.nonzero(tiles >= 0).squeeze(1)
    z = torch.zeros(ng + 1, dtype=torch.float32, device=dev)
    z.index_add_(0, tiles[uni], wt[uni].sum(dim=1))
    z.index_add_(0, torch.where(gm >= 0, gm, ng).reshape(-1), wm.reshape(-1))
    z[ng] = 0.0
    live = torch.zeros(wt.shape, dtype=torch.bool, device=dev)
    live[uni] = (z[tiles[uni]] > 0)[:, None]
    live[mix] = (gm >= 0) & (z[gm.clamp_min(0)] > 0)
    return store[:n], live.view(-1)[:n], z


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


class TritonExecutor(Executor):
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

    @property
    def overlap_em(self) -> bool:
        """Whether EM steps run on a stream of their own (see ``overlap.py``)."""
        return self.em.enabled

    @overlap_em.setter
    def overlap_em(self, on: bool) -> None:
        self.em.enabled = on and self.device.type == "cuda"

    def _zeros(self, *shape: int) -> Tensor:
        return torch.zeros(shape, dtype=torch.float32, device=self.device)

    def artifacts(self, m: CompiledCircuit) -> dict[str, str]:
        """Text of each stage: the plan summary (with the precision), the options in use
        (:meth:`TritonOptions.to_text`), the kernel schedule and the kernel source."""
        return {"plan": m.plan.summary() + f"\n  precision: {self.precision}",
                "options": self.options.to_text(),
                "schedule": self.dp.schedule_text(),
                "kernels": self.source, "kernels_path": str(self.source_path)}

    # ------------------------------------------------------------ parameters
    def _init_sums(self, m: CompiledCircuit, plan: KernelPlan, store: Tensor) -> None:
        """The module's sum parameters from the uploaded weights ``store``, on the device in
        float32 (the numpy float64 path costs seconds on a PD-256's 155M weights); the
        kernels' linear weights ``_w`` start as the plan gives them (no refresh, and no JIT
        of the refresh kernels, before the parameters first change)."""
        dev = self.device
        w, live, z = _sum_weights(plan, self.dp, store, dev)
        # an all-zero group keeps raw 0 and a -inf normalizer (weights 0, never NaN)
        m.sum_logits = nn.Parameter(torch.where(live, torch.log(torch.where(live, w, 1.0)), 0.0))
        self._w = w
        del live
        m.register_buffer("sum_norm", torch.where(z > 0, torch.log(torch.where(
            z > 0, z, 1.0)), -math.inf))
        m.register_buffer("group_size", torch.from_numpy(
            np.append(plan.group_size, 1).astype(np.float32)).to(dev), persistent=False)
        m.register_buffer("sum_flows", torch.zeros_like(w), persistent=False)

    def input_values(self, m: CompiledCircuit, plan: KernelPlan) -> tuple[Tensor, Tensor]:
        """The module's ``input_raw`` and ``input_shift``, computed on the device from the
        uploaded native values (float64, see :func:`start_upload`; on the host, HCLT-256's
        51M categorical parameters cost 0.2 s of logarithms alone), in slices of at most
        ``INIT_CHUNK`` values; float32 results, as the module keeps them."""
        dev = self.device
        native = self._inputs_f64
        assert native is not None
        q = len(plan.input_params)
        raw = torch.zeros(max(q, 1), dtype=torch.float32, device=dev)
        shift = torch.zeros(max(sum(ly.n for ly in plan.input_layers), 1),
                            dtype=torch.float32, device=dev)
        for i, ly in enumerate(plan.input_layers):
            if not ly.param_size:
                continue
            size, span, n0 = m._in_size[i], m._in_span[i], int(m._in_node0[i])
            if span is None:  # tied rows: one gather (small in every workload seen)
                pidx = np.asarray(ly.param_start, np.int64)[:, None] + np.arange(size)
                pt = torch.from_numpy(pidx).to(dev)
                r, s = fam.to_raw_tensor(ly.dist, native[pt])
                raw[pt] = r.float()
                shift[n0: n0 + ly.n] = s[:, 0]
                continue
            step = max(1, INIT_CHUNK // size)
            for k in range(0, ly.n, step):  # whole rows per slice (a row's sum is its shift)
                rows = min(step, ly.n - k)
                a = span[0] + k * size
                r, s = fam.to_raw_tensor(ly.dist, native[a: a + rows * size].view(rows, size))
                raw[a: a + rows * size] = r.reshape(-1)
                shift[n0 + k: n0 + k + rows] = s[:, 0]
        return raw, shift

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

    # ----------------------------------------------------------------- buffers
    def _static(self, m: CompiledCircuit, batch: int) -> _Buffers:
        """Buffers wide enough for ``batch`` (grown, never shrunk; growing drops the graphs)."""
        b = self._sbufs
        if b is None or b.stride < batch:
            stride = self.dp.stride_for(batch)
            self._graphs.clear()
            self._sbufs = None
            v = max(m.num_vars, 1)
            b = _Buffers(stride, self.dp.new_node_buffer(stride),
                         self._zeros(self.dp.rows, stride), self._zeros(v, stride),
                         torch.ones(v, stride, dtype=torch.int8, device=self.device),
                         self._zeros(stride),
                         torch.zeros(1, dtype=torch.int32, device=self.device),
                         torch.ones(stride, dtype=torch.float32, device=self.device))
            self._sbufs = b
        return b

    def _run(self, m: CompiledCircuit, key: Any, fn: Callable[[], None],
             scratch_only: bool = True,
             also: Callable[[], list[tuple[Any, Callable[[], None]]]] | None = None) -> None:
        """Run ``fn`` (a fixed sequence of launches on static buffers): eagerly, or on a GPU
        through a CUDA graph recorded on its first call (after one eager run: Triton's JIT).
        On a GPU the first call of a ``key`` compiles its kernels in parallel first, where
        ``fn``'s torch operations touch scratch buffers only (``scratch_only``); ``also``:
        makes later passes ``[(key, fn)]`` (the backwards a forward predicts) whose kernels
        join the same parallel compile (called only then: not on every forward)."""
        if key not in self._prejitted and self.parallel_jit:
            self._prejitted.add(key)
            if scratch_only and prejit_enabled():
                more = []
                for later, later_fn in also() if also is not None else []:
                    if later not in self._prejitted:
                        self._prejitted.add(later)
                        more.append(later_fn)
                prejit(self.dp, "k", fn, *more, threads=self.options.jit_threads)
        if not self.use_graphs:
            fn()
            return
        graph = self._graphs.get(key)
        if graph is None:
            dev = self.device
            side = torch.cuda.Stream(dev)
            side.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(side):
                fn()  # the call's own run, on a side stream as capture requires; Triton's JIT
            torch.cuda.current_stream(dev).wait_stream(side)
            if len(self._graphs) >= MAX_GRAPHS:
                self._graphs.pop(next(iter(self._graphs)))
            # an EM step in flight on the EM stream: wait for it here, so that the recording
            # issues no wait on an event recorded outside it (which would invalidate the
            # capture)
            self.settle(m, deferred=True)
            self.em.drain()
            graph = torch.cuda.CUDAGraph()
            try:
                # thread-local: the parallel JIT's and the upload's threads may still load
                # kernels or copy on their own streams while this thread records
                with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                    fn()  # recorded, not run
            except RuntimeError as e:  # this call's results stand (the run above)
                warnings.warn(f"pccc: CUDA graph capture failed ({e}); running eagerly",
                              RuntimeWarning, stacklevel=2)
                self.use_graphs = False
                return
            self._graphs[key] = graph
            return
        graph.replay()

    # ----------------------------------------------------------------- forward
    def forward(self, m: CompiledCircuit, x: Tensor, missing: Tensor | None) -> Tensor:
        """``log p(x)`` per example (see :meth:`CompiledCircuit.forward`)."""
        x = torch.as_tensor(x, device=self.device)
        if x.dim() != 2 or x.shape[1] < m.num_vars:
            raise ValueError(f"expected data of shape [batch, {m.num_vars}], got "
                             f"{tuple(x.shape)}")
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
        # (where EM steps leave flows to be stored, the backwards after them store: both)
        also = (lambda: [self._em_backward(m, batch, st) for st in
                         dict.fromkeys((self._flows_owed, True))]) \
            if self._em_next else None
        self._run(m, ("fwd", batch) + xkey, run, also=also)
        self._stamp += 1
        self._batch = batch
        return m.root_output(b.node[:, :batch])

    def _em_backward(self, m: CompiledCircuit, batch: int, store: bool | None = None
                     ) -> tuple[Any, Callable[[], None]]:
        """The backward pass of EM statistics only, as ``(key, fn)``: scale 1, flows and
        input statistics added straight into the accumulators (no scratch buffers; its torch
        operations touch the static buffers only, so the forward can record it for the
        parallel compile before it runs). ``store``: the EM flows of the weights an EM step
        left void are stored (default: whether the last step did)."""
        b = self._static(m, batch)
        dp = self.dp
        flows = m._buffers["sum_flows"]
        assert flows is not None
        store = self._flows_owed if store is None else store

        def direct() -> None:
            b.flag.zero_()
            b.ones.fill_(1.0)
            dp.sum_backward(b.node, b.flow, b.ones, b.flag, batch, self._w, flows, flows,
                            em_direct=True, inplace=True, store=store)
            dp.input_backward(b.flow, b.xt, b.mt, b.ones, b.flag, batch, self.em_counts,
                              self.em_nstats, self.em_counts, self.em_nstats, zero=False,
                              em=False)

        return ("bwd-em", batch, store), direct

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

        def run() -> None:
            s = b.scale[:batch]
            if track:  # EM flows need their own sums unless every example weighs the same
                b.flag.copy_((s != s[:1]).any() | (s[0] == 0))
            else:
                b.flag.zero_()
            dp.sum_backward(b.node, b.flow, b.scale, b.flag, batch, self._w, pgrad, flows,
                            inplace=True, root_flow=roots)
            dp.input_backward(b.flow, b.xt, b.mt, b.scale, b.flag, batch, counts, nstats,
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
            logistic_grads(self.kernels, self.tables, dp.inputs, self._input_args(m), b.flow,
                           b.xt, b.mt, b.scale, batch, dr)
        return dl, dr

    def node_values(self, batch: int) -> Tensor:
        """Node log-values ``[slots, batch]`` of the last forward pass (until a backward pass:
        it overwrites the sum rows with its flow ratios)."""
        assert self._sbufs is not None
        return self._sbufs.node[: self.slots, :batch]

    def node_flows(self, batch: int) -> Tensor:
        """Node flows ``[slots, batch]`` of the last backward (root flow 1 per example, or
        the roots' upstream gradients: see :meth:`fused_backward`)."""
        assert self._sbufs is not None
        return self._sbufs.flow[: self.slots, :batch]

    # --------------------------------------------------------------------- EM
    @torch.no_grad()
    def em_step(self, m: CompiledCircuit, step_size: float, pseudocount: float) -> None:
        """One EM step from the accumulated flows (weights and inputs); flows are zeroed."""
        eta, alpha = step_size, pseudocount
        self.sync_params(m)
        self._clear_owed(m)  # no backward since the last step: its flows are zero
        # (straight from nn.Module's tables: no settling of the void flows)
        rawp, shift = m._parameters["input_raw"], m._buffers["input_shift"]
        logits, flows = m._parameters["sum_logits"], m._buffers["sum_flows"]
        norm = m._buffers["sum_norm"]
        assert rawp is not None and shift is not None and logits is not None
        assert flows is not None and norm is not None
        raw = rawp.detach()

        def run() -> None:
            gsum = self.dp.em_weights(self._w, flows, logits.detach(), eta, alpha, True)
            z = norm[:-1]
            z.copy_(torch.where(gsum + alpha > 0, torch.log((1 - eta) * torch.exp(z) + eta), z))
            em_update_inputs(self.tables, self._theta, raw, shift, self._cnorm,
                             self.em_counts, self.em_nstats, eta, alpha, self.kernels)
            if self._em_zero_counts:  # the cat_em kernel zeroes the rows it updates
                self.em_counts.zero_()
            for ns in self.em_nstats:
                ns.zero_()

        # (on a stream of its own in EM-only training: with gradients, a torch optimizer may
        # hold the parameters, and its in-place updates would not wait; see overlap.py)
        self.em.launch(lambda: self._run(m, ("em", eta, alpha), run, scratch_only=False),
                       overlap=not m.param_grads)
        self._synced = self._param_key(m)  # both sides were updated together
        # the weights whose next backward stores their flows keep them: void until then
        self._flows_owed = True

    def settle(self, m: CompiledCircuit, deferred: bool = False) -> None:
        """Order the current stream after the EM step in flight (once per stream and step, no
        host wait); ``deferred``: also zero the EM flows it left void (see ``_flows_owed``)."""
        self.em.wait()
        if deferred:
            self._clear_owed(m)

    def _clear_owed(self, m: CompiledCircuit) -> None:
        """Zero the EM flows an EM step left void (see ``_flows_owed``), on the current
        stream."""
        if self._flows_owed:
            self._flows_owed = False
            self.em.wait()
            m._buffers["sum_flows"].zero_()  # type: ignore[union-attr]

    def em_statistics(self, m: CompiledCircuit) -> list[Tensor]:
        """The EM statistics accumulated since the last EM step, the tensors :meth:`em_step`
        reads (void flows zeroed first): edits in place on the current stream reach it."""
        self._clear_owed(m)
        self.em.wait()
        return [m._buffers["sum_flows"], self.em_counts, *self.em_nstats]  # type: ignore

    def zero_flows(self, m: CompiledCircuit) -> None:
        """Forget the EM statistics accumulated since the last EM step."""
        self.em.wait()
        self._flows_owed = False
        m._buffers["sum_flows"].zero_()  # type: ignore[union-attr]
        self.em_counts.zero_()
        for ns in self.em_nstats:
            ns.zero_()

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

    # ------------------------------------------------- input values fed from outside
    def run_forward(self, m: CompiledCircuit, logw: Tensor, in_vals: list[Tensor],
                    keep: list[Tensor] | None = None, semiring: Semiring = "sum") -> Tensor:
        """The node buffer view ``[slots, batch]`` for input values fed from outside. The
        kernels compute the sum-product semiring only: :mod:`pccc.query` runs max-product
        (MPE) and sampling of a Triton module through the torch backend on the same plan."""
        if semiring != "sum":
            raise NotImplementedError("the Triton kernels compute sum-product only")
        batch = in_vals[0].shape[1] if in_vals else 1
        b = self._static(m, batch)
        for ly, v in zip(m.plan.input_layers, in_vals):
            b.node[ly.node_start: ly.node_start + ly.n, :batch] = v
        self._ext_w = torch.exp(logw.float())
        self.dp.sum_forward(b.node, batch, self._ext_w)
        self._stamp += 1
        self._batch = batch
        return b.node[: m.plan.num_node_slots, :batch]

    def run_backward(self, m: CompiledCircuit, node: Tensor, logw: Tensor, grad: Tensor, *,
                     track_em: bool, elems: list[Tensor] | None = None,
                     root_flow: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        batch = node.shape[1]
        b = self._static(m, batch)
        w = self._ext_w
        b.scale[:batch] = grad
        uniform = bool((grad == grad[0]).all()) and float(grad[0]) != 0.0
        b.flag.fill_(int(track_em and not uniform))
        em = torch.zeros_like(w)
        pgrad = torch.zeros_like(w)
        self.dp.sum_backward(b.node, b.flow, b.scale, b.flag, batch, w, pgrad, em,
                             root_flow=None if root_flow is None else root_flow.float())
        dlogw = w * pgrad
        out = [dlogw.to(logw.dtype)]
        if track_em:
            out.append(em if not uniform else dlogw / float(grad[0]))
        return b.flow[: m.plan.num_node_slots, :batch], out


class _Fused(torch.autograd.Function):
    """``(sum_logits, input_raw) -> log p(x)`` through the fused kernels."""

    @staticmethod
    def forward(ctx: Any, m: CompiledCircuit, ex: TritonExecutor,  # type: ignore[override]
                x: Tensor, missing: Tensor | None, logits: Tensor, raw: Tensor) -> Tensor:
        ex.sync_params(m)
        ll = ex.fused_forward(m, x, missing)
        ctx.m, ctx.ex, ctx.x, ctx.missing, ctx.stamp = m, ex, x, missing, ex._stamp
        return ll

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        m: CompiledCircuit = ctx.m
        ex: TritonExecutor = ctx.ex
        if ex._stamp != ctx.stamp:  # another forward ran since: recompute this one
            ex.sync_params(m)
            ex.fused_forward(m, ctx.x, ctx.missing)
        grads = m.param_grads
        want_l, want_r = grads and ctx.needs_input_grad[4], grads and ctx.needs_input_grad[5]
        pieces = m.root_grad_pieces(grad)
        if pieces[0][1] is None:
            dl, dr = ex.fused_backward(m, pieces[0][0].contiguous().float(), want_l, want_r)
            return None, None, None, None, dl, dr
        # the roots weigh differently: the gradients with the upstream gradients as the
        # roots' flows (a pass per sign), then (when tracked) the EM statistics with root
        # flow 1 each; each pass after the first recomputes the forward values it overwrote
        dl = dr = None
        passes = 0
        for scale, root_grad in pieces if want_l or want_r else []:
            if passes:
                ex.sync_params(m)
                ex.fused_forward(m, ctx.x, ctx.missing)
            assert root_grad is not None
            gl, gr = ex.fused_backward(m, scale.float(), want_l, want_r,
                                       root_grad=root_grad.float(), track=False)
            dl = gl if dl is None or gl is None else dl + gl
            dr = gr if dr is None or gr is None else dr + gr
            passes += 1
        if m.track_flows:
            if passes:
                ex.sync_params(m)
                ex.fused_forward(m, ctx.x, ctx.missing)
            ex.fused_backward(m, torch.ones_like(pieces[0][0]).float(), False, False)
        return None, None, None, None, dl, dr


class _LogWeights(torch.autograd.Function):
    """``sum_logits -> log w`` per group: ``log_softmax + log Z_g``; backward
    ``g - softmax * (sum of g over the group)``."""

    @staticmethod
    def forward(ctx: Any, raw: Tensor, m: CompiledCircuit,  # type: ignore[override]
                ex: TritonExecutor) -> Tensor:
        ex.sync_params(m)
        w = ex._w.clone()
        ctx.m, ctx.ex = m, ex
        ctx.save_for_backward(w)
        real = (ex.dp.group_ids() >= 0) & (w > 0)
        return torch.where(real, torch.log(torch.where(real, w, 1.0)), -math.inf)

    @staticmethod
    def backward(ctx: Any, g: Tensor):  # type: ignore[override]
        m, ex = ctx.m, ctx.ex
        (w,) = ctx.saved_tensors
        g = torch.where(w > 0, g.float(), 0.0)
        gs = ex.group_sums(m, g).float()
        group = ex.dp.group_ids().clamp_min(0)
        z = m.sum_norm.float()[group]
        prob = torch.where(w > 0, w * torch.exp(-z), 0.0)
        return (g - prob * gs[group]).to(m.sum_logits.dtype), None, None
